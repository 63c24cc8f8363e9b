"""What every section of the report shares: the run opened and read (summary.json, config, student, evaluated
checkpoints, their results), and the pieces of its figures and HTML (percent, notes, thumbnails, escaped text)."""

from __future__ import annotations

import base64
import html
import io
import json
import random
import re
from pathlib import Path

from IPython.display import HTML
from matplotlib.figure import Figure
from PIL import Image

from ovlt.ground.artifacts import METRICS, ArtifactError, Run, load_dataset_dir
from ovlt.ground.config import StudyConfig, load_config
from ovlt.ground.layout import checkpoint_order, parse_checkpoint
from ovlt.ground.schema import format_question
from ovlt.stages.registry import output

FIGURE_DPI = 80  # the embedded default's HTML must stay well under 10 MB
THUMBNAIL_PX = 112
STAGE_COLORS = {"base": "#7f7f7f", "sft": "#1f77b4", "grpo": "#d62728"}

STYLE = """<style>
.ovlt-note{color:#555;font-style:italic}
.ovlt-cards td,.ovlt-cards th{vertical-align:top;text-align:left !important;padding:4px 6px;border:1px solid #ddd}
.ovlt-text{white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;font-family:monospace;font-size:11px;
max-height:14em;overflow:auto;margin:0;text-align:left}
.ovlt-ok{color:#1a7f37;font-weight:bold}.ovlt-bad{color:#c62828;font-weight:bold}
.ovlt-cards del{background:#ffd6d6;color:#8a1c1c}
</style>"""


# --------------------------------------------------------------------------------------------------------
# figures display as PNG in any IPython kernel, without pyplot or %matplotlib


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, bbox_inches="tight")
    return buffer.getvalue()


def _register_png_formatter() -> None:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


_register_png_formatter()


# --------------------------------------------------------------------------------------------------------
# reading the run


def load(run_dir: str | Path) -> Run:
    """The run folder of a finished study (with summary.json), as every report function takes it."""
    run = Run(Path(run_dir).resolve())
    if not run.root.is_dir():
        raise ArtifactError(f"run folder {run.root} does not exist: pass the run_dir of a study (runs/<run>)")
    if not run.summary_path.exists():
        raise ArtifactError(f"{run.summary_path} does not exist: finish the study (ovlt reproduce) before the report")
    summary(run)  # a corrupt one is named here, not by whichever cell reads it first
    return run


def summary(run: Run) -> dict | None:
    """summary.json, None if there is none; an ArtifactError naming it if it is no JSON object."""
    if not run.summary_path.exists():
        return None
    try:
        found = json.loads(run.summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{run.summary_path}: not readable JSON ({exc}); rerun `ovlt reproduce` to rewrite it "
                            "from the run's stages") from None
    if not isinstance(found, dict):
        raise ArtifactError(f"{run.summary_path}: expected a JSON object, got {type(found).__name__}")
    return found


def study_config(run: Run) -> StudyConfig | None:
    """The run's resolved config (runs/<run>/config.yaml, else the path summary.json names), or None."""
    path = run.root / "config.yaml"
    if not path.exists():
        path = Path((summary(run) or {}).get("config") or "")
    return load_config(path) if path.is_file() else None


def student(run: Run) -> str:
    """The student whose numbers the report gives: its hub id, or the name of its local folder."""
    cfg = study_config(run)
    if cfg is None:
        return "student unknown (the run has no config)"
    name = cfg.models.student.name
    if name == "tiny":
        return "tiny Qwen2.5-VL (built locally)"
    return name if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists() else Path(name).name


def iterations(run: Run, stage: str) -> list[int]:
    """Iterations whose `stage` has finished."""
    found = [int(p.parent.parent.name[4:]) for p in run.root.glob(f"iter*/{stage}/manifest.json")]
    return sorted(found)


def _wanted(run: Run, stage: str, iteration: int | None) -> list[int]:
    done = iterations(run, stage)
    return done if iteration is None else [i for i in done if i == iteration]


def _in(iteration: int | None) -> str:
    return "" if iteration is None else f" in iteration {iteration}"


def evaluated_checkpoints(run: Run) -> list[str]:
    """Checkpoints whose evaluation has finished, in stage order."""
    names = [p.parent.name for p in (run.root / "eval").glob("*/manifest.json")]
    return sorted(names, key=checkpoint_order)


def results(run: Run, checkpoints: list[str] | None = None) -> dict[tuple[str, str], dict[str, dict]]:
    """{(entry, protocol): {checkpoint: result}} for the evaluated checkpoints, from each entry's metrics.json (the
    numbers summary.json copies). A result names its benchmark, entry, prompt, protocol and scorer beside its
    accuracy, ci95, n and breakdowns; entries and protocols in the config's order."""
    out: dict[tuple[str, str], dict[str, dict]] = {}
    cfg = study_config(run)
    entries = [b.key for b in cfg.evaluation.benchmarks] if cfg else []
    for name in checkpoints or evaluated_checkpoints(run):
        paths = sorted(run.eval_dir(name).glob(f"*/{METRICS}"),
                       key=lambda path: (entries.index(path.parent.name) if path.parent.name in entries else len(entries),
                                         path.parent.name))
        for path in paths:
            metrics = json.loads(path.read_text())
            for result in metrics["results"]:
                out.setdefault((metrics["entry"], result["protocol"]), {})[name] = {
                    "benchmark": metrics["benchmark"], "entry": metrics["entry"], "prompt": metrics["prompt"], **result}
    return out


def _protocol_label(result: dict) -> str:
    """A protocol as the report names it: as configured, with the rules that ran it where they differ
    (official -> mathvista)."""
    protocol, scorer = result["protocol"], result.get("scorer", result["protocol"])
    return protocol if scorer == protocol else f"{protocol} ({scorer})"


def _pool(run: Run):
    """The decontaminated training pool (problem schema); every iteration's problems are rows of it."""
    return load_dataset_dir(output(run, "decontaminate", "train"))


def _problems_by_id(dataset, ids: list[str]) -> dict[str, dict]:
    index = {problem_id: k for k, problem_id in enumerate(dataset["id"])}
    missing = [i for i in ids if i not in index]
    if missing:
        raise KeyError(f"problem ids not in the data set: {', '.join(missing[:5])}")
    return {row["id"]: row for row in dataset.select([index[i] for i in ids])}


def _sample(items, n: int, seed: str):
    """A fixed sample (same run, same rows) of a list or a data set, in the items' order; data sets are cut
    before anything is read, so a paper-scale stage costs only the sampled rows."""
    chosen = sorted(random.Random(seed).sample(range(len(items)), min(n, len(items))))
    return items.select(chosen) if hasattr(items, "select") else [items[k] for k in chosen]


# --------------------------------------------------------------------------------------------------------
# the pieces of figures and HTML


def percent(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def note(text: str) -> HTML:
    return HTML(f'<p class="ovlt-note">{html.escape(text)}</p>{STYLE}')


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")


def _color(checkpoint: str) -> str:
    return STAGE_COLORS[parse_checkpoint(checkpoint)[0]]


def _thumbnail(image) -> str:
    """A small inline PNG (<img> with base64 data) of a PIL image or an image path."""
    image = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="problem image" width="{image.width}" height="{image.height}">'


def _text(text: str) -> str:
    return f'<pre class="ovlt-text">{html.escape(text)}</pre>'


def _verdict(correct: bool, extracted: str) -> str:
    mark = '<span class="ovlt-ok">&#10003;</span>' if correct else '<span class="ovlt-bad">&#10007;</span>'
    return f"{mark} extracted: <code>{html.escape(extracted or '(none)')}</code>"


def _problem_cell(problem: dict) -> str:
    return (f"{_thumbnail(problem['image'])}<br><code>{html.escape(problem['id'])}</code>"
            f"{_text(format_question(problem))}gold: <b>{html.escape(problem['answer'])}</b>")
