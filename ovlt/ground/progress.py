"""The progress bar of every ovlt loop: tqdm's text bar, with tqdm's widget warning silenced once, here.

`tqdm.auto` picks the widget bar inside a Jupyter kernel and, where ipywidgets is missing, warns once, when it is
first imported, on the kernel's stderr: "TqdmWarning: IProgress not found. Please update jupyter and ipywidgets".
Whoever imports it first (ovlt, or a library: datasets, huggingface_hub, transformers) makes every stage notebook
show that warning. This module imports it first, with that warning silenced, so no later import repeats it; ovlt's
study layer imports this module before anything else (`ovlt.study.notebooks`).

ovlt's own loops use the text bar (`tqdm.std.tqdm`) in every process, not the widget: in JupyterLab its frames, each
after a carriage return, redraw one live line; `ovlt reproduce` reads the same frames for its terminal line
(`ovlt.study.terminal`), and drops them from the notebooks it saves (`ovlt.study.notebooks.clean_outputs`).
"""

from __future__ import annotations

import warnings

from tqdm.std import TqdmWarning, tqdm

WIDGET_WARNING = "IProgress not found"


def _import_auto_quietly() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=WIDGET_WARNING, category=TqdmWarning)
        import tqdm.auto  # noqa: F401  (imports tqdm.autonotebook, which warns at its first import only)


_import_auto_quietly()

__all__ = ["tqdm"]
