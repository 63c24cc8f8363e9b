"""The data (notebook 00): the training pool's first problems and the held-out synthetic set's chance accuracy."""

from __future__ import annotations

import pandas as pd
from IPython.display import HTML
from matplotlib.figure import Figure

from ovlt.ground.artifacts import Run, load_dataset_dir
from ovlt.stages.registry import output
from ovlt.stages.report.common import note, percent


def problem_grid(run: Run, n: int = 8) -> Figure:
    """The first n problems of the training pool: image, question, gold answer."""
    from ovlt.ground.preview import show_problems  # loads datasets: imported where a grid is drawn

    return show_problems(load_dataset_dir(output(run, "data", "train")), n=n)


def _heldout_chance(run: Run, by_kind: bool = False) -> dict[str, float] | None:
    """`ovlt.ground.procedural.majority_baseline` of the run's held-out synthetic set; None where the run has none."""
    # imported here, not with the report: it loads datasets (and torch), which the other sections may not need
    from ovlt.ground.procedural import majority_baseline

    folder = output(run, "data", "heldout")
    if not folder.is_dir():
        return None
    return majority_baseline(load_dataset_dir(folder), by_kind=by_kind)


def majority_baselines(run: Run) -> pd.DataFrame | HTML:
    """Majority-answer (chance) accuracy of the held-out synthetic benchmark, per family and overall."""
    baseline = _heldout_chance(run)
    if baseline is None:
        return note("No held-out synthetic benchmark in this run (no procedural source configured).")
    return pd.DataFrame({"majority-answer accuracy (%)": [percent(v) for v in baseline.values()]},
                        index=pd.Index(list(baseline), name="source"))
