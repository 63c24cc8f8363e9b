"""The figures and tables of the study, for the report notebook (notebooks/08_report.ipynb) and the stage notebooks.

Every function takes the run (`ovlt.ground.artifacts.Run`; `load(run_dir)` opens one) and reads only what the stages
wrote: stage manifests, data sets, `eval/<checkpoint>/<entry>/{predictions.jsonl,metrics.json}`, the training
logs and `summary.json`. Figures are `matplotlib.figure.Figure` objects (no pyplot state); tables are pandas
DataFrames; composite views (traces, provenance) are `IPython.display.HTML` with every piece of model or data text
escaped. Where a run lacks something (no GRPO yet, no summary) a function returns a short note instead of failing,
so a half-finished study still renders. `iteration=None` means every iteration the run has.

Accuracies are shown in percent with one decimal (`percent`), the same format in every table, each with the
protocol that scored it and the prompt its responses answered; the paper's figures (`PAPER`) stand beside
ours only under the `authors` protocol, the harness they were measured with.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import json
import os
import platform
import random
import re
import warnings
from pathlib import Path

import pandas as pd
from IPython.display import HTML
from matplotlib.figure import Figure
from PIL import Image

from ovlt.ground.artifacts import METRICS, ArtifactError, Run, load_dataset_dir
from ovlt.ground.config import StudyConfig, load_config
from ovlt.ground.layout import checkpoint_order, parse_checkpoint

FIGURE_DPI = 80  # the embedded default's HTML must stay well under 10 MB
THUMBNAIL_PX = 112
STAGE_COLORS = {"base": "#7f7f7f", "sft": "#1f77b4", "grpo": "#d62728"}

# Published numbers (percent) of OpenVLThinker-7B (arXiv 2503.17352) per stage, where our benchmark is theirs.
# Base (Qwen2.5-VL-7B in the authors' harness) and final model: Table 1 (MathVista 68.5 -> 70.2, MathVerse
# 46.8 -> 47.9, MathVision test 24.0 -> 25.3, testmini 27.6 -> 29.6). The per-stage MathVista curve (SFT-1 62.5,
# GRPO-1 65.6, SFT-2 66.1, GRPO-2 69.4) is the paper's iteration figure; the released model ends iteration 3,
# so its numbers map to grpo-3, and sft-3 has no published value.
PAPER = {
    "mathvista_testmini": {"base": 68.5, "sft-1": 62.5, "grpo-1": 65.6, "sft-2": 66.1, "grpo-2": 69.4, "grpo-3": 70.2},
    "mathverse_testmini": {"base": 46.8, "grpo-3": 47.9},
    "mathvision_test": {"base": 24.0, "grpo-3": 25.3},
    "mathvision_testmini": {"base": 27.6, "grpo-3": 29.6},
}
# OpenVLThinker-7B-v1.2 (the paper's second version), final model, on the benchmarks its figure shows: only MathVision's
# is printed as a number; the others are read off its bar chart, and the figure does not say which MathVision split,
# MMMU-Pro setting or EMMA subset it measured. They stand in the reference table, not beside our stages.
PAPER_V12 = {"mathvista_testmini": (72.3, True), "mathverse_testmini": (50.3, True),
             "mathvision (split not stated)": (25.9, False), "mmmu_pro (setting not stated)": (42.9, True),
             "emma (subset not stated)": (26.8, True), "hallusionbench": (69.2, True)}  # (value, approximate)
# Those numbers come from the authors' harness (evaluation/eval_qwen.py: their prompt, near-greedy decoding,
# mathruler's grade_answer on the \boxed{} answer; MathVerse re-checked by GPT-4), which the `authors` protocol
# reproduces; so they are set beside ours only under it (and under `authors+judge`, its judged variant).
PAPER_PROTOCOL = "authors"
PAPER_STUDENT = "Qwen2.5-VL-7B"
PAPER_COLUMN = f"paper, {PAPER_STUDENT} (%)"  # the published numbers are of the paper's student, whatever the run's
PAPER_HARNESS = ("the authors' harness (eval_qwen.py): the benchmark's instruction + their think/boxed suffix, "
                 "near-greedy decoding, 2,048 new tokens, mathruler's grade_answer on the \\boxed{} answer; "
                 "MathVerse re-checked by GPT-4")
SEED_NUMBERS = ("The news article many readers meet first states base MathVista 50.2, MathVerse 46.8 -> 68.5, "
                "MathVision test 24.0 -> 29.6, testmini 25.3 -> 30.4. The paper's Table 1, which these rows use, "
                "has MathVista 68.5 -> 70.2, MathVerse 46.8 -> 47.9, MathVision test 24.0 -> 25.3, testmini "
                "27.6 -> 29.6; 50.2 is GPT-4o's MathVerse score there.")
# Self-reflection phrases counted in chains and responses (case-insensitive, whole words). The reflection
# filter cuts at the config's own markers (filter.markers); these are the words the paper's analysis counts.
REFLECTION_PHRASES = ("wait", "but wait", "let me check", "let me double-check", "hold on", "hmm", "verify")
TEXTS_PER_STAGE = 2000  # rows read per data set for the reflection and length statistics (a fixed sample)
GRPO_CURVES = (("reward", "reward (total)"), ("rewards/accuracy_reward/mean", "accuracy reward"),
               ("kl", "KL to the reference"), ("completions/mean_length", "completion length (tokens)"))
SFT_CURVES = (("loss", "training loss"), ("mean_token_accuracy", "token accuracy"))

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


def compared_with_paper(protocol: str) -> bool:
    """Whether a protocol's numbers stand beside the paper's: only the authors' own (and its judged variant)."""
    return protocol.split("+")[0] == PAPER_PROTOCOL


def paper_values(benchmark: str, protocol: str = PAPER_PROTOCOL) -> dict[str, float]:
    """The paper's published accuracies (percent) per stage for a benchmark name or family, under a protocol
    whose numbers compare with them (`compared_with_paper`); else {}."""
    from ovlt.scoring.benchmarks import get_benchmark

    if not compared_with_paper(protocol):
        return {}
    try:
        return PAPER.get(get_benchmark(benchmark).name, {})
    except KeyError:
        return {}


def reference_table() -> pd.DataFrame:
    """The paper's figures as the report compares them: benchmark, stage, value, and the protocol they were measured
    under (the authors' harness), with the second version's (v1.2) marked where they are read off its figure; the note
    beside it sets the news article's numbers against Table 1's."""
    rows = [{"benchmark": benchmark, "stage": stage, PAPER_COLUMN: f"{value:.1f}", "protocol": PAPER_PROTOCOL,
             "source": "Table 1" if stage in ("base", "grpo-3") else "iteration figure"}
            for benchmark, by_stage in PAPER.items() for stage, value in by_stage.items()]
    rows += [{"benchmark": benchmark, "stage": "v1.2 final", PAPER_COLUMN: f"{value:.1f}", "protocol": PAPER_PROTOCOL,
              "source": "v1.2 figure, approximate: read from its bar chart" if approximate else "v1.2 figure, printed"}
             for benchmark, (value, approximate) in PAPER_V12.items()]
    return pd.DataFrame(rows).set_index(["benchmark", "stage"])


def reference_note() -> HTML:
    """What the reference figures are (shown beside `reference_table`): the harness they were measured with, and the
    numbers that circulate in their place."""
    return HTML(f'<p class="ovlt-reference">Reference figures: measured with {html.escape(PAPER_HARNESS)}; set beside '
                f"ours only under our <code>{PAPER_PROTOCOL}</code> protocol. {html.escape(SEED_NUMBERS)}</p>")


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


def _pool(run: Run):
    """The decontaminated training pool (problem schema); every iteration's problems are rows of it."""
    return load_dataset_dir(run.stage_dir("decontaminate") / "train")


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


def _problem_cell(problem: dict) -> str:
    from ovlt.ground.schema import format_question

    return (f"{_thumbnail(problem['image'])}<br><code>{html.escape(problem['id'])}</code>"
            f"{_text(format_question(problem))}gold: <b>{html.escape(problem['answer'])}</b>")


# --------------------------------------------------------------------------------------------------------
# data (00) and teachers (01, 02)


def problem_grid(run: Run, n: int = 8) -> Figure:
    """The first n problems of the training pool: image, question, gold answer."""
    from ovlt.ground.preview import show_problems

    return show_problems(load_dataset_dir(run.stage_dir("data") / "train"), n=n)


def _import_quietly(module: str):
    """Import a module whose imports load tqdm.auto, which warns on stderr in a kernel without ipywidgets: a
    message about the environment, not report content."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def _heldout_chance(run: Run, by_kind: bool = False) -> dict[str, float] | None:
    """`ovlt.ground.procedural.majority_baseline` of the run's held-out synthetic set; None where the run has none."""
    folder = run.stage_dir("data") / "heldout"
    if not folder.is_dir():
        return None
    return _import_quietly("ovlt.ground.procedural").majority_baseline(load_dataset_dir(folder), by_kind=by_kind)


def majority_baselines(run: Run) -> pd.DataFrame | HTML:
    """Majority-answer (chance) accuracy of the held-out synthetic benchmark, per family and overall."""
    baseline = _heldout_chance(run)
    if baseline is None:
        return note("No held-out synthetic benchmark in this run (no procedural source configured).")
    return pd.DataFrame({"majority-answer accuracy (%)": [percent(v) for v in baseline.values()]},
                        index=pd.Index(list(baseline), name="source"))


def caption_samples(run: Run, iteration: int = 1, n: int = 4) -> HTML:
    """A fixed sample of captions beside the image and question they describe."""
    folder = run.stage_dir("caption", iteration) / "captions"
    if not folder.is_dir():
        return note(f"Iteration {iteration} has no captions (captioning runs in iteration 1 only).")
    captions = list(_sample(load_dataset_dir(folder), n, f"captions-{iteration}"))
    problems = _problems_by_id(_pool(run), [c["id"] for c in captions])
    rows = "".join(f"<tr><td>{_problem_cell(problems[c['id']])}</td><td>{_text(c['caption'])}</td></tr>"
                   for c in captions)
    return HTML(f'{STYLE}<table class="ovlt-cards"><tr><th>problem</th><th>caption</th></tr>{rows}</table>')


def _chains_stage(run: Run, iteration: int) -> str:
    return "distill" if (run.stage_dir("distill", iteration) / "chains").is_dir() else "self_generate"


def chain_samples(run: Run, iteration: int = 1, n: int = 3) -> HTML:
    """A fixed sample of problems with all their sampled chains, each scored by the one answer scorer."""
    from ovlt.scoring.answers import score

    stage = _chains_stage(run, iteration)
    folder = run.stage_dir(stage, iteration) / "chains"
    if not folder.is_dir():
        return note(f"Iteration {iteration} has no chains yet (distill / self_generate has not run).")
    items = list(_sample(load_dataset_dir(folder), n, f"chains-{iteration}"))
    problems = _problems_by_id(_pool(run), [item["id"] for item in items])
    rows = []
    for item in items:
        p = problems[item["id"]]
        chains = []
        for chain in item["chains"]:
            v = score(chain, p["answer"], p["answer_type"], p["choices"], p["precision"])
            chains.append(f"{_verdict(v.correct, v.extracted)}{_text(chain)}")
        rows.append(f"<tr><td>{_problem_cell(p)}</td><td>{'<hr>'.join(chains)}</td></tr>")
    return HTML(f'{STYLE}<p>{html.escape(stage)}, iteration {iteration}</p><table class="ovlt-cards">'
                f"<tr><th>problem</th><th>chains</th></tr>{''.join(rows)}</table>")


# --------------------------------------------------------------------------------------------------------
# curation (03, 05): the funnel, the reflection filter, difficulty


def funnel_table(run: Run, iteration: int | None = None) -> pd.DataFrame | HTML:
    """Problems left at each curation step (problems -> captioned -> with chains -> with a correct chain ->
    selected -> kept), per iteration and source; from the filter stage's manifest. Where the schedule sets
    `sft_examples`, the row "all" also shows the target, the problems not drawn once it was met, and any shortfall."""
    rows = []
    for i in _wanted(run, "filter", iteration):
        manifest = run.manifest("filter", i)
        table, target = manifest["funnel"], manifest.get("target")
        for source, steps in [("all", table["total"]), *table["by_source"].items()]:
            row = {"iteration": i, "source": source, **{s["step"]: s["count"] for s in steps}}
            if target and source == "all":
                row.update(target=target["examples"], not_drawn=target["not_drawn"], shortfall=target["shortfall"])
            rows.append(row)
    if not rows:
        return note(f"No finished filter stage{_in(iteration)} yet: no data funnel to show.")
    frame = pd.DataFrame(rows).set_index(["iteration", "source"])
    return frame.astype("Int64").astype(str).replace("<NA>", "")


def funnel_figure(run: Run) -> Figure | HTML:
    """The funnel as stacked bars per step (one panel per iteration, one colour per source)."""
    done = iterations(run, "filter")
    if not done:
        return note("No finished filter stage yet: no data funnel to show.")
    figure = _figure(5.5 * len(done), 3.6)
    for k, i in enumerate(done):
        table = run.manifest("filter", i)["funnel"]
        axes = figure.add_subplot(1, len(done), k + 1)
        steps = [s["step"] for s in table["total"]]
        bottom = [0] * len(steps)
        for source, counts in table["by_source"].items():
            values = [s["count"] for s in counts]
            axes.bar(steps, values, bottom=bottom, label=source)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, total in enumerate(bottom):
            axes.annotate(str(total), (x, total), ha="center", va="bottom", fontsize=8)
        axes.set_title(f"iteration {i}")
        axes.set_ylabel("problems")
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    figure.axes[-1].legend(fontsize=7)
    return figure


def filter_examples(run: Run, iteration: int | None = None, n: int = 3) -> HTML:
    """Selected teacher chains before and after the reflection filter; the cut part is struck through."""
    cards = []
    for i in _wanted(run, "filter", iteration):
        cut = [json.loads(line) for line in (run.stage_dir("filter", i) / "cut.jsonl").read_text().splitlines()
               if line.strip()]
        if not cut:
            continue
        chosen = _sample(cut, n, f"filter-{i}")
        selected = load_dataset_dir(run.stage_dir("select", i) / "selected").select_columns(["id", "chain"])
        before = {row["id"]: row["chain"] for row in _problems_by_id(selected, [c["id"] for c in chosen]).values()}
        for c in chosen:
            # mark the removed span inside the original chain (escaped first, so the markup is ours alone)
            shown = html.escape(before[c["id"]]).replace(html.escape(c["removed"]), f"<del>{html.escape(c['removed'])}</del>", 1)
            after = _text(c["kept"]) if c["kept"] else note("nothing left before the first marker: dropped").data
            cards.append(f"<tr><td>iter {i}<br><code>{html.escape(c['id'])}</code><br>{html.escape(c['source'])}</td>"
                         f'<td><pre class="ovlt-text">{shown}</pre></td><td>{after}</td></tr>')
    if not cards:
        return note(f"No chain was cut by the reflection filter{_in(iteration)} (or the filter stage has not run).")
    return HTML(f'{STYLE}<table class="ovlt-cards"><tr><th>problem</th><th>selected chain (cut part struck '
                f"through)</th><th>in the SFT set</th></tr>{''.join(cards)}</table>")


def difficulty_histogram(run: Run, iteration: int | None = None) -> Figure | HTML:
    """Pass rates of the GRPO candidates under the SFT model, per source; the kept band(s) shaded."""
    done = _wanted(run, "select_hard", iteration)
    if not done:
        return note(f"No finished select_hard stage{_in(iteration)} yet: no pass-rate histogram.")
    figure = _figure(5 * len(done), 3.2)
    for k, i in enumerate(done):
        manifest = run.manifest("select_hard", i)
        axes = figure.add_subplot(1, len(done), k + 1)
        rates = sorted({float(r) for source, h in manifest["histogram"].items() if source != "all" for r in h})
        bottom = [0] * len(rates)
        width = 0.8 / max(1, manifest["k"])
        for source, histogram in manifest["histogram"].items():
            if source == "all":
                continue
            values = [histogram.get(f"{r:.3f}", 0) for r in rates]
            axes.bar(rates, values, width=width, bottom=bottom, label=source)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for low, high in manifest["params"]["select_hard"]["bands"]:
            axes.axvspan(low, high, color="#2ca02c", alpha=0.12, label="kept band")
        rate = "pass rate above chance" if manifest.get("banded_on") == "above_chance" else "pass rate"
        axes.set_xlabel(f"{rate} of {manifest['model']} over {manifest['k']} samples")
        axes.set_ylabel("problems")
        axes.set_title(f"iteration {i}: {manifest['counts']['out']} of {manifest['counts']['in']} kept")
        axes.legend(fontsize=7)
    return figure


# --------------------------------------------------------------------------------------------------------
# training (04, 06)


def _log(run: Run, kind: str, iteration: int) -> list[dict]:
    path = run.stage_dir(kind, iteration) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def training_curves(run: Run, kind: str, iteration: int | None = None) -> Figure | HTML:
    """Per-step training curves from `<stage>/log.jsonl`: SFT loss and token accuracy; GRPO reward, accuracy
    reward, KL and completion length. One line per iteration."""
    if kind not in ("sft", "grpo"):
        raise ValueError(f"training_curves: kind must be 'sft' or 'grpo', got {kind!r}")
    logs = {i: _log(run, kind, i) for i in _wanted(run, kind, iteration)}
    logs = {i: rows for i, rows in logs.items() if rows}
    if not logs:
        return note(f"No {kind.upper()} training log{_in(iteration)} yet.")
    curves = GRPO_CURVES if kind == "grpo" else SFT_CURVES
    figure = _figure(3.4 * len(curves), 2.8)
    for k, (key, title) in enumerate(curves):
        axes = figure.add_subplot(1, len(curves), k + 1)
        for i, rows in logs.items():
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                axes.plot(*zip(*points, strict=True), marker="." if len(points) < 30 else None, label=f"{kind}-{i}")
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("step")
        if axes.lines:
            axes.legend(fontsize=7)
        else:
            axes.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axes.transAxes)
    return figure


# --------------------------------------------------------------------------------------------------------
# evaluation (07) and the report's results


def _protocol_label(result: dict) -> str:
    """A protocol as the report names it: as configured, with the rules that ran it where they differ
    (official -> mathvista)."""
    protocol, scorer = result["protocol"], result.get("scorer", result["protocol"])
    return protocol if scorer == protocol else f"{protocol} ({scorer})"


def accuracy_table(run: Run, checkpoints: list[str] | None = None) -> pd.DataFrame | HTML:
    """Accuracy (%) of the student with its 95% interval and n per benchmark entry, protocol and stage, with the prompt that
    produced the responses; beside it, where the study sampled, accuracy under sampling and pass@k with theirs; the
    paper's number beside ours only under the authors' protocol (the one its figures were measured with); plus each
    entry's majority-answer baseline, which no protocol scores."""
    found = results(run, checkpoints)
    if not found:
        return note("No evaluated checkpoint yet.")
    baselines = (summary(run) or {}).get("baselines", {})
    rows, entries, name = [], [], student(run)
    for (entry, protocol), by_stage in found.items():
        paper = paper_values(next(iter(by_stage.values()))["benchmark"], protocol)
        for stage, m in by_stage.items():
            rows.append({"benchmark": entry, "protocol": _protocol_label(m), "stage": stage, "student": name,
                         "accuracy (%)": percent(m["accuracy"]),
                         "95% CI (%)": f"[{percent(m['ci95'][0])}, {percent(m['ci95'][1])}]", "n": str(m["n"]),
                         **_sampled_cells(m), **_benchmark_cells(m),
                         "prompt": m["prompt"], PAPER_COLUMN: f"{paper[stage]:.1f}" if stage in paper else ""})
        if entry not in entries:
            entries.append(entry)
    rows += [{"benchmark": entry, "protocol": "-", "stage": "majority answer", "accuracy (%)": percent(baselines[entry])}
             for entry in entries if entry in baselines]
    frame = pd.DataFrame(rows).set_index(["benchmark", "protocol", "stage"]).fillna("")
    return frame if (frame[PAPER_COLUMN] != "").any() else frame.drop(columns=PAPER_COLUMN)


def _benchmark_cells(result: dict) -> dict:
    """A benchmark's own aggregates beside plain accuracy (HallusionBench's question-pair and figure accuracies)."""
    found = result.get("benchmark_metrics") or {}
    return {f"{name.removesuffix('_accuracy').replace('_', '-')} accuracy (%)": percent(found[name])
            for name in ("question_pair_accuracy", "figure_accuracy") if name in found}


def _sampled_cells(result: dict) -> dict:
    """Accuracy under sampling and pass@k (%) with their 95% intervals, named with n, k and the temperature."""
    if "sampled" not in result:
        return {}
    sampled, passed = result["sampled"], result["pass_at_k"]
    name = f"sampled (n {sampled['n']}, T {sampled['temperature']:g})"
    return {f"{name} (%)": percent(sampled["accuracy"]),
            f"{name} 95% CI": f"[{percent(sampled['ci95'][0])}, {percent(sampled['ci95'][1])}]",
            f"pass@{passed['k']} (%)": percent(passed["accuracy"]),
            f"pass@{passed['k']} 95% CI": f"[{percent(passed['ci95'][0])}, {percent(passed['ci95'][1])}]"}


def accuracy_figure(run: Run) -> Figure | HTML:
    """Accuracy across stages per benchmark entry and protocol with 95% intervals, the majority baseline, and,
    under the authors' protocol only, the paper's published values."""
    found = results(run)
    if not found:
        return note("No evaluated checkpoint yet.")
    baselines = (summary(run) or {}).get("baselines", {})
    name = student(run)
    figure = _figure(4.6 * len(found), 3.6)
    for k, ((entry, protocol), by_stage) in enumerate(found.items()):
        axes = figure.add_subplot(1, len(found), k + 1)
        stages = list(by_stage)
        first = by_stage[stages[0]]
        acc = [100 * by_stage[s]["accuracy"] for s in stages]
        low = [a - 100 * by_stage[s]["ci95"][0] for a, s in zip(acc, stages, strict=True)]
        high = [100 * by_stage[s]["ci95"][1] - a for a, s in zip(acc, stages, strict=True)]
        axes.plot(range(len(stages)), acc, color="#333", linewidth=1, zorder=1)
        for x, s in enumerate(stages):
            axes.errorbar(x, acc[x], yerr=[[low[x]], [high[x]]], fmt="o", color=_color(s), capsize=4, zorder=2)
            axes.annotate(percent(by_stage[s]["accuracy"]), (x, acc[x]), textcoords="offset points", xytext=(6, 4),
                          fontsize=8)
        if entry in baselines:
            axes.axhline(100 * baselines[entry], color="#888", linestyle="--", label="majority answer")
        paper = paper_values(first["benchmark"], protocol)
        if paper:
            xs = [x for x, s in enumerate(stages) if s in paper]
            axes.plot(xs, [paper[stages[x]] for x in xs], "s:", color="#9467bd",
                      label=f"paper ({PAPER_STUDENT}, authors)")
            axes.axhline(paper["base"], color="#9467bd", linestyle=(0, (1, 3)), linewidth=1)
            final = max(paper, key=checkpoint_order)
            axes.axhline(paper[final], color="#9467bd", linestyle=(0, (5, 5)), linewidth=1,
                         label=f"paper final ({final})")
        axes.set_xticks(range(len(stages)), stages)
        axes.set_ylim(0, 100)
        axes.set_ylabel("accuracy (%)")
        axes.set_title(f"{name} on {entry} (n={first['n']})\nprotocol {_protocol_label(first)}, "
                       f"prompt {first['prompt']}", fontsize=9)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="upper left")
    return figure


def comparisons_table(run: Run) -> pd.DataFrame | HTML:
    """Paired comparisons from summary.json, within one entry and protocol, on each measure (greedy, under sampling,
    pass@k): difference (points) with its 95% bootstrap interval, p-values (McNemar's only for right/wrong items)."""
    found = (summary(run) or {}).get("comparisons") or []
    if not found:
        return note("No paired comparison: the run has fewer than two evaluated stages (or no summary.json).")
    name = student(run)
    rows = [{"benchmark": c["entry"], "protocol": c["protocol"], "comparison": f"{c['from']} -> {c['to']}",
             "student": name,
             "measure": c.get("measure", "greedy"), "prompt": c["prompt"], "difference (points)": f"{100 * c['diff']:+.1f}",
             "95% CI (points)": f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]",
             "bootstrap p": f"{c['p_value']:.3f}",
             "McNemar p": "-" if c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3f}",
             "significant (CI excludes 0)": "yes" if c["significant"] else "no"} for c in found]
    return pd.DataFrame(rows).set_index(["benchmark", "protocol", "comparison", "measure"])


def grpo_effect(run: Run) -> HTML:
    """What each GRPO changed against its SFT model, in words with the numbers: the measures (greedy, under sampling,
    pass@k) whose paired interval excludes 0; and, where greedy accuracy did not move, why, from the items themselves:
    how many greedy verdicts flipped each way, and how the share of right samples moved on the items the SFT model
    already answered right greedily and on those it answered wrong. GRPO that only concentrates the samples on the
    answer greedy decoding already gives raises the one share and leaves greedy accuracy where it was."""
    found = [c for c in (summary(run) or {}).get("comparisons") or []
             if c["from"].startswith("sft-") and c["to"] == "grpo-" + c["from"].removeprefix("sft-")]
    if not found:
        return note("No GRPO model compared with its SFT model yet.")
    read_responses = _import_quietly("ovlt.stages.evaluation").read_responses
    groups: dict[tuple, dict[str, dict]] = {}
    for c in found:
        groups.setdefault((c["entry"], c["protocol"], c["from"], c["to"]), {})[c["measure"]] = c
    paragraphs = []
    for (entry, protocol, sft, grpo), measures in groups.items():
        said = [f"{measure} {100 * c['diff']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]"
                for measure, c in measures.items()]
        moves = {"raised": [m for m, c in measures.items() if c["significant"] and c["diff"] > 0],
                 "lowered": [m for m, c in measures.items() if c["significant"] and c["diff"] < 0],
                 "did not move (95% interval includes 0)": [m for m, c in measures.items() if not c["significant"]]}
        verdict = "; ".join(f"{how} {' and '.join(moved)}" for how, moved in moves.items() if moved)
        text = f"<b>{html.escape(student(run))}: {html.escape(grpo.upper())} against {html.escape(sft.upper())}</b> " \
               f"on {html.escape(entry)} " \
               f"({html.escape(protocol)}, paired, points): {html.escape(verdict)} ({html.escape('; '.join(said))})."
        greedy = measures.get("greedy")
        if greedy and not (greedy["significant"] and greedy["diff"] > 0) and "sampled" in measures:
            before = {r["id"]: r for r in read_responses(run, sft, entry)}
            after = {r["id"]: r for r in read_responses(run, grpo, entry)}
            right = [i for i in before if before[i]["verdicts"][protocol]["correct"]]
            wrong = [i for i in before if not before[i]["verdicts"][protocol]["correct"]]
            gained = sum(after[i]["verdicts"][protocol]["correct"] for i in wrong)
            lost = sum(not after[i]["verdicts"][protocol]["correct"] for i in right)
            k = _sampled_n(run, sft, entry, protocol)
            on_right, on_wrong = (_share_change(before, after, ids, protocol, k) for ids in (right, wrong))
            if on_right is not None and on_right > 0 and (on_wrong is None or on_wrong <= 0):
                why = ("GRPO concentrated the samples on the answer greedy decoding already gave, right or wrong, "
                       "rather than changing that answer.")
            elif on_right is not None and on_right > 0:
                why = ("GRPO raised the share of right samples on both, but on the items answered wrong not enough "
                       "to make the right answer the greedy one.")
            else:
                why = "GRPO changed the samples without raising the greedy answers."
            text += (f" Why greedy accuracy did not rise: of {len(before)} items, the greedy verdict flipped on "
                     f"{gained + lost} ({gained} wrong to right, {lost} right to wrong). The share of right samples "
                     f"changed by {_points(on_right)} on the {len(right)} items {html.escape(sft.upper())} answered "
                     f"right greedily and by {_points(on_wrong)} on the {len(wrong)} it answered wrong: {why}")
        paragraphs.append(f"<p>{text}</p>")
    return HTML("".join(paragraphs))


def _sampled_n(run: Run, checkpoint: str, entry: str, protocol: str) -> int:
    """The number of samples per item behind a checkpoint's accuracy under sampling on an entry."""
    return results(run, [checkpoint])[entry, protocol][checkpoint]["sampled"]["n"]


def _share_change(before: dict, after: dict, ids: list[str], protocol: str, k: int) -> float | None:
    """The mean change of the share of an item's `k` samples that are right, over `ids` (None: no items)."""
    if not ids:
        return None
    return sum(after[i]["sampled_right"][protocol] - before[i]["sampled_right"][protocol] for i in ids) / (k * len(ids))


def _points(change: float | None) -> str:
    return "-" if change is None else f"{100 * change:+.1f} points"


def kind_table(run: Run) -> pd.DataFrame | HTML:
    """Held-out synthetic accuracy per question kind at every stage (per entry and protocol), beside the kind's
    majority-answer (chance) accuracy. A kind at chance moves with the model's answer bias (always "Yes" scores the
    share of "Yes" questions): the rows show which changes of the overall figure are learning and which are such
    flips."""
    found = {key: by_stage for key, by_stage in results(run).items()
             if next(iter(by_stage.values()))["benchmark"] == "synthetic"}
    chance = _heldout_chance(run, by_kind=True) if found else None
    if chance is None:
        return note("No evaluated checkpoint on the held-out synthetic benchmark yet.")
    rows = []
    for (entry, _), by_stage in found.items():
        first = next(iter(by_stage.values()))
        kinds = first["breakdowns"]["kind"]
        rows += [{"benchmark": entry, "protocol": _protocol_label(first), "kind": kind, "student": student(run),
                  "n": kinds[kind]["total"],
                  "majority answer": percent(chance.get(kind)),
                  **{stage: percent(m["breakdowns"]["kind"][kind]["accuracy"]) for stage, m in by_stage.items()}}
                 for kind in kinds]
    return pd.DataFrame(rows).set_index(["benchmark", "protocol", "kind"])


def breakdown_figures(run: Run) -> list[Figure | HTML]:
    """Accuracy per breakdown of each benchmark entry and protocol (MathVista question/answer type, MathVerse problem
    version, MathVision subject and level, the synthetic set's family, question kind and difficulty), one group of
    bars per stage."""
    figures, name = [], student(run)
    for (entry, _), by_stage in results(run).items():
        first = next(iter(by_stage.values()))
        keys = list(first.get("breakdowns", {}))
        if not keys:
            continue
        widest = max(len(first["breakdowns"][key]) for key in keys)
        figure = _figure(max(4.5, 0.5 * widest * max(2, len(by_stage) / 2)) * len(keys), 3.4)
        for k, key in enumerate(keys):
            axes = figure.add_subplot(1, len(keys), k + 1)
            groups = list(first["breakdowns"][key])
            width = 0.8 / len(by_stage)
            for j, (stage, m) in enumerate(by_stage.items()):
                table = m["breakdowns"][key]
                values = [100 * table[g]["accuracy"] if g in table else 0 for g in groups]
                axes.bar([x + j * width for x in range(len(groups))], values, width=width, label=stage,
                         color=_color(stage), alpha=0.35 + 0.65 * (j + 1) / len(by_stage))
            labels = [f"{g}\n(n={first['breakdowns'][key][g]['total']})" for g in groups]
            crowded = sum(len(g) for g in groups) > 40
            axes.set_xticks([x + width * (len(by_stage) - 1) / 2 for x in range(len(groups))], labels, fontsize=7,
                            rotation=30 if crowded else 0, ha="right" if crowded else "center")
            axes.set_ylim(0, 100)
            axes.set_ylabel("accuracy (%)")
            axes.set_title(f"{name}: {entry} by {key} (protocol {_protocol_label(first)})", fontsize=10)
            axes.legend(fontsize=7)
        figures.append(figure)
    return figures or [note("No per-benchmark breakdowns: no evaluated checkpoint yet.")]


# --------------------------------------------------------------------------------------------------------
# reasoning traces, reflections and lengths


def _entries(run: Run, checkpoints: list[str] | None = None) -> list[str]:
    """The benchmark entries evaluated, in the config's order."""
    return list(dict.fromkeys(entry for entry, _ in results(run, checkpoints)))


def _benchmark_records(run: Run, entry: str, ids: list[str]) -> dict[str, dict]:
    """The benchmark's records for `ids` (image, question, choices, answer), through the evaluation's loader."""
    benchmark_records = _import_quietly("ovlt.stages.evaluation").benchmark_records
    cfg = study_config(run)
    ref = next((b for b in cfg.evaluation.benchmarks if b.key == entry), None) if cfg else None
    if ref is None:
        raise ArtifactError(f"the run's config does not name benchmark entry {entry!r}")
    wanted = set(ids)
    return {r["id"]: r for r in benchmark_records(ref, run, cfg.data.hub_root) if r["id"] in wanted}


def _verdicts(row: dict) -> str:
    """A response's verdict under each protocol that scored it."""
    return "<br>".join(f"{html.escape(protocol)}: {_verdict(v['correct'], v['extracted'])}"
                       for protocol, v in row["verdicts"].items())


def trace_table(run: Run, n: int = 4) -> HTML:
    """For a fixed sample of benchmark items: image, question, gold answer, and each stage's response with its
    verdict under each protocol, side by side (one table per benchmark entry)."""
    names = evaluated_checkpoints(run)
    if not names:
        return note("No evaluated checkpoint yet: no reasoning traces.")
    read_responses = _import_quietly("ovlt.stages.evaluation").read_responses
    parts = [STYLE]
    for entry in _entries(run):
        by_stage = {s: {p["id"]: p for p in read_responses(run, s, entry)} for s in names
                    if run.predictions_path(s, entry).exists()}
        ids = _sample(sorted(next(iter(by_stage.values()))), n, f"traces-{entry}")
        try:
            records = _benchmark_records(run, entry, ids)
        except Exception as err:  # images are a courtesy: show the responses even when the items cannot load
            records, parts = {}, parts + [note(f"{entry}: items not loadable ({err}); responses only.").data]
        header = "".join(f"<th>{html.escape(s)}</th>" for s in by_stage)
        rows = []
        for problem_id in ids:
            r = records.get(problem_id)
            problem = (_problem_cell(r) if r and r["image"] is not None
                       else f"<code>{html.escape(problem_id)}</code>")
            cells = "".join(f"<td>{_verdicts(p[problem_id])}{_text(p[problem_id]['response'])}</td>"
                            if problem_id in p else "<td></td>" for p in by_stage.values())
            rows.append(f"<tr><td>{problem}</td>{cells}</tr>")
        parts.append(f'<h4>{html.escape(entry)}</h4><table class="ovlt-cards"><tr><th>problem</th>{header}</tr>'
                     f"{''.join(rows)}</table>")
    return HTML("".join(parts))


def _texts_per_stage(run: Run) -> dict[str, list[str]]:
    """The texts of every stage that writes reasoning: teacher / self-generated chains, the SFT sets, and
    each checkpoint's evaluation responses (all benchmarks). Data sets contribute a fixed sample of
    TEXTS_PER_STAGE rows (all chains of a sampled problem)."""
    read_responses = _import_quietly("ovlt.stages.evaluation").read_responses
    texts: dict[str, list[str]] = {}
    for i in sorted(set(iterations(run, "distill")) | set(iterations(run, "self_generate"))):
        stage = _chains_stage(run, i)
        chains = _sample(load_dataset_dir(run.stage_dir(stage, i) / "chains").select_columns(["chains"]),
                         TEXTS_PER_STAGE, f"reflections-{stage}-{i}")
        label = "teacher chains" if stage == "distill" else "self-generated chains"
        texts[f"{label} (iter {i})"] = [c for row in chains for c in row["chains"]]
        if i in iterations(run, "filter"):
            sft_set = _sample(load_dataset_dir(run.stage_dir("filter", i) / "sft").select_columns(["completion"]),
                              TEXTS_PER_STAGE, f"reflections-sft-{i}")
            texts[f"SFT set (iter {i})"] = [row["completion"][0]["content"][0]["text"] for row in sft_set]
    for name in evaluated_checkpoints(run):
        texts[f"eval {name}"] = [p["response"] for e in _entries(run, [name]) for p in read_responses(run, name, e)]
    return texts


def _contains(phrase: str):
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)", re.IGNORECASE)


def reflection_table(run: Run) -> pd.DataFrame | HTML:
    """Per stage: how many texts, their length in words (mean, median), and the share (%) that contain each
    reflection phrase."""
    texts = _texts_per_stage(run)
    if not texts:
        return note("No chains or responses yet.")
    patterns = {p: _contains(p) for p in REFLECTION_PHRASES}
    rows = []
    for stage, items in texts.items():
        lengths = pd.Series([len(t.split()) for t in items], dtype=float)
        row = {"stage": stage, "texts": len(items), "mean words": round(lengths.mean(), 1) if items else None,
               "median words": lengths.median() if items else None}
        for phrase, pattern in patterns.items():
            row[f'"{phrase}" (%)'] = percent(sum(bool(pattern.search(t)) for t in items) / len(items)) if items else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage")


def reflection_figure(run: Run) -> Figure | HTML:
    """Left: share of texts with each reflection phrase per stage (heat map). Right: words per text per stage."""
    texts = {stage: items for stage, items in _texts_per_stage(run).items() if items}
    if not texts:
        return note("No chains or responses yet.")
    patterns = [_contains(p) for p in REFLECTION_PHRASES]
    shares = [[100 * sum(bool(p.search(t)) for t in items) / len(items) for p in patterns] for items in texts.values()]
    figure = _figure(12, 0.45 * len(texts) + 1.8)
    heat = figure.add_subplot(1, 2, 1)
    image = heat.imshow(shares, cmap="Blues", vmin=0, vmax=max(1.0, max(max(r) for r in shares)), aspect="auto")
    heat.set_xticks(range(len(REFLECTION_PHRASES)), REFLECTION_PHRASES, rotation=30, fontsize=8)
    heat.set_yticks(range(len(texts)), list(texts), fontsize=8)
    for y, row in enumerate(shares):
        for x, value in enumerate(row):
            heat.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=7)
    heat.set_title("texts containing the phrase (%)", fontsize=10)
    figure.colorbar(image, ax=heat, shrink=0.8)
    lengths = figure.add_subplot(1, 2, 2)
    lengths.boxplot([[len(t.split()) for t in items] for items in texts.values()], orientation="horizontal", showfliers=False)
    lengths.set_yticks(range(1, len(texts) + 1), list(texts), fontsize=8)
    lengths.invert_yaxis()
    lengths.set_xlabel("words per chain / response")
    lengths.set_title("length", fontsize=10)
    return figure


# --------------------------------------------------------------------------------------------------------
# headline and provenance


def headline(run: Run) -> HTML:
    """What the study found, in a few lines: per benchmark entry and protocol, the first and last stage with
    intervals."""
    s = summary(run) or {}
    lines = []
    for (entry, _), by_stage in results(run).items():
        first, last = list(by_stage)[0], list(by_stage)[-1]
        a, b = by_stage[first], by_stage[last]
        base = s.get("baselines", {}).get(entry)
        lines.append(f"<li><b>{html.escape(entry)}</b> (n={b['n']}, protocol {html.escape(_protocol_label(b))}, "
                     f"prompt {html.escape(b['prompt'])}): "
                     f"{first} {percent(a['accuracy'])}% [{percent(a['ci95'][0])}, {percent(a['ci95'][1])}] &rarr; "
                     f"{last} {percent(b['accuracy'])}% [{percent(b['ci95'][0])}, {percent(b['ci95'][1])}]"
                     + (f"; majority answer {percent(base)}%" if base is not None else "") + "</li>")
    judges = "".join(f"<li>judge for <b>{html.escape(entry)}</b> (the <code>+judge</code> protocols): "
                     f"{html.escape(j['model'])} at <code>{html.escape(j['endpoint'])}</code>, temperature "
                     f"{j['temperature']}, prompt:{_text(j['prompt'])}</li>" for entry, j in s.get("judges", {}).items())
    teacher = s.get("teacher", {})
    kind = "scripted (reads the procedural scene; imperfect by design)" if teacher.get("scripted") else "models"
    stages = ", ".join(evaluated_checkpoints(run)) or "none"
    wall = s.get("wall_seconds")
    return HTML(f"{STYLE}<p>Run <code>{html.escape(run.name)}</code>; student <b>{html.escape(student(run))}</b>; "
                f"config <code>{html.escape(str(s.get('config')))}</code>; "
                f"evaluated stages: {html.escape(stages)}; teachers: {html.escape(kind)}"
                + (f"; wall time {wall / 60:.1f} min" if wall is not None else "") + ".</p>"
                f"<ul>{''.join(lines) or '<li>No evaluated checkpoint yet.</li>'}</ul>"
                + (f"<ul>{judges}</ul>" if judges else "")
                + "<p>Accuracies in percent with 95% bootstrap intervals over the benchmark items; each names the "
                "protocol that scored it and the prompt the responses answered.</p>")


def _hardware() -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "gpus": ", ".join(gpus) or "none"}


def provenance(run: Run) -> HTML:
    """Config, package versions, git commit, teachers, hardware and wall time per stage."""
    found = [(str(p.parent.relative_to(run.root)), json.loads(p.read_text())) for p in run.root.glob("**/manifest.json")]
    manifests = dict(sorted(found, key=lambda item: item[1].get("finished_at", "")))  # in the order they ran
    s = summary(run) or {}
    commits = sorted({str(m.get("git_commit")) for m in manifests.values()})
    packages: dict[str, set] = {}
    for m in manifests.values():
        for name, version in (m.get("packages") or {}).items():
            packages.setdefault(name, set()).add(version)
    general = {"run": run.name, "config": s.get("config"), "git commit(s)": ", ".join(commits),
               **{f"package {k}": ", ".join(sorted(v)) for k, v in sorted(packages.items())}}
    for role, spec in (s.get("teacher") or {}).items():
        if isinstance(spec, dict):
            general[f"teacher {role}"] = ", ".join(f"{k}={v}" for k, v in spec.items() if v not in (None, {}, []))
    general.update({f"report machine {k}": v for k, v in _hardware().items()})
    walls = []
    for where, m in manifests.items():
        train = m.get("train") or {}
        walls.append({"stage": where, "wall (s)": f"{m.get('wall_seconds', float('nan')):.1f}",
                      "processes": train.get("processes", ""), "peak RSS (MB)": train.get("peak_rss_mb", ""),
                      "s/step": train.get("seconds_per_step", ""), "finished": m.get("finished_at", "")})
    general_html = pd.DataFrame({"value": [str(v) for v in general.values()]},
                                index=pd.Index(list(general), name="")).to_html(escape=True)
    walls_html = pd.DataFrame(walls).to_html(index=False, escape=True) if walls else ""
    config_path = run.root / "config.yaml"
    config_text = config_path.read_text() if config_path.exists() else ""
    config_html = (f"<details><summary>config.yaml</summary>{_text(config_text)}</details>" if config_text
                   else note("The run folder has no config.yaml.").data)
    total = s.get("wall_seconds")
    return HTML(f"{STYLE}{general_html}<h4>Wall time per stage"
                + (f" (study total {total / 60:.1f} min)" if total is not None else "")
                + f"</h4>{walls_html}{config_html}")
