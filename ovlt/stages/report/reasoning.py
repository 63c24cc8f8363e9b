"""The reasoning (the report's traces and reflections): each stage's responses side by side on sampled benchmark
items, and how often chains and responses reflect ("wait", "let me check") and how long they are."""

from __future__ import annotations

import html
import re

import pandas as pd
from IPython.display import HTML
from matplotlib.figure import Figure

from ovlt.ground.artifacts import ArtifactError, Run, load_dataset_dir
from ovlt.scoring.predictions import read_responses
from ovlt.stages.registry import chains_stage, output
from ovlt.stages.report.common import (
    STYLE,
    _figure,
    _problem_cell,
    _sample,
    _text,
    _verdict,
    evaluated_checkpoints,
    iterations,
    note,
    percent,
    results,
    study_config,
)

# Self-reflection phrases counted in chains and responses (case-insensitive, whole words). The reflection
# filter cuts at the config's own markers (filter.markers); these are the words the paper's analysis counts.
REFLECTION_PHRASES = ("wait", "but wait", "let me check", "let me double-check", "hold on", "hmm", "verify")
TEXTS_PER_STAGE = 2000  # rows read per data set for the reflection and length statistics (a fixed sample)


def _entries(run: Run, checkpoints: list[str] | None = None) -> list[str]:
    """The benchmark entries evaluated, in the config's order."""
    return list(dict.fromkeys(entry for entry, _ in results(run, checkpoints)))


def _benchmark_records(run: Run, entry: str, ids: list[str]) -> dict[str, dict]:
    """The benchmark's records for `ids` (image, question, choices, answer), through the evaluation's loader."""
    # imported here, not with the report: the evaluation stage loads torch and the generation backends
    from ovlt.stages.evaluation import benchmark_records

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
    texts: dict[str, list[str]] = {}
    for i in sorted(set(iterations(run, "distill")) | set(iterations(run, "self_generate"))):
        stage = chains_stage(i)
        chains = _sample(load_dataset_dir(output(run, stage, "chains", i)).select_columns(["chains"]),
                         TEXTS_PER_STAGE, f"reflections-{stage}-{i}")
        label = "teacher chains" if stage == "distill" else "self-generated chains"
        texts[f"{label} (iter {i})"] = [c for row in chains for c in row["chains"]]
        if i in iterations(run, "filter"):
            sft_set = _sample(load_dataset_dir(output(run, "filter", "sft", i)).select_columns(["completion"]),
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
