"""The curation (notebooks 03, 05): the data funnel, the reflection filter's cuts, and the difficulty selection's
pass rates."""

from __future__ import annotations

import html
import json

import pandas as pd
from IPython.display import HTML
from matplotlib.figure import Figure

from ovlt.ground.artifacts import Run, load_dataset_dir
from ovlt.stages.registry import output
from ovlt.stages.report.common import (
    STYLE,
    _figure,
    _in,
    _problems_by_id,
    _sample,
    _text,
    _wanted,
    iterations,
    note,
)


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
        cut = [json.loads(line) for line in output(run, "filter", "cut.jsonl", i).read_text().splitlines()
               if line.strip()]
        if not cut:
            continue
        chosen = _sample(cut, n, f"filter-{i}")
        selected = load_dataset_dir(output(run, "select", "selected", i)).select_columns(["id", "chain"])
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
