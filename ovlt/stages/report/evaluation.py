"""The evaluation (notebook 07) and the report's results: accuracy tables and figures per benchmark entry, protocol
and stage, the paired comparisons, what each GRPO changed, and the breakdowns per question kind and group."""

from __future__ import annotations

import html

import pandas as pd
from IPython.display import HTML
from matplotlib.figure import Figure

from ovlt.ground.artifacts import Run
from ovlt.ground.layout import checkpoint_order
from ovlt.stages.report.common import (
    _color,
    _figure,
    _protocol_label,
    note,
    percent,
    results,
    student,
    summary,
)
from ovlt.stages.report.data import _heldout_chance
from ovlt.stages.report.paper import PAPER_COLUMN, PAPER_STUDENT, paper_values


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
    pass@k) whose paired interval excludes 0; and, where greedy accuracy did not move, why, from the counts
    summary.json stores (`grpo_effects`, from the items themselves): how many greedy verdicts flipped each way, and how
    the share of right samples moved on the items the SFT model already answered right greedily and on those it
    answered wrong. GRPO that only concentrates the samples on the answer greedy decoding already gives raises the one
    share and leaves greedy accuracy where it was."""
    s = summary(run) or {}
    found = [c for c in s.get("comparisons") or []
             if c["from"].startswith("sft-") and c["to"] == "grpo-" + c["from"].removeprefix("sft-")]
    if not found:
        return note("No GRPO model compared with its SFT model yet.")
    effects = None if "grpo_effects" not in s else {(e["entry"], e["protocol"], e["from"], e["to"]): e
                                                     for e in s["grpo_effects"]}
    groups: dict[tuple, dict[str, dict]] = {}
    for c in found:
        groups.setdefault((c["entry"], c["protocol"], c["from"], c["to"]), {})[c["measure"]] = c
    paragraphs, unexplained = [], []
    for key, measures in groups.items():
        entry, protocol, sft, grpo = key
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
            if effects is None or key not in effects:
                unexplained.append(f"{grpo.upper()} against {sft.upper()} on {entry} ({protocol})")
            else:
                text += " " + _why_greedy_stayed(effects[key])
        paragraphs.append(f"<p>{text}</p>")
    if unexplained:
        paragraphs.append(note(f"Why greedy accuracy did not rise is not shown for {', '.join(unexplained)}: the "
                               "run's summary.json has no counts of the greedy flips (grpo_effects; it was written "
                               "before summary.json stored them). Rerun `ovlt reproduce` to rewrite it.").data)
    return HTML("".join(paragraphs))


def _why_greedy_stayed(effect: dict) -> str:
    """The greedy flips and the moves of the share of right samples of one GRPO against its SFT model (an entry of
    summary.json's `grpo_effects`), in words."""
    sft = effect["from"]
    on_right, on_wrong = effect["share_change_on_right"], effect["share_change_on_wrong"]
    gained, lost = effect["wrong_to_right"], effect["right_to_wrong"]
    if on_right is not None and on_right > 0 and (on_wrong is None or on_wrong <= 0):
        why = ("GRPO concentrated the samples on the answer greedy decoding already gave, right or wrong, "
               "rather than changing that answer.")
    elif on_right is not None and on_right > 0:
        why = ("GRPO raised the share of right samples on both, but on the items answered wrong not enough "
               "to make the right answer the greedy one.")
    else:
        why = "GRPO changed the samples without raising the greedy answers."
    return (f"Why greedy accuracy did not rise: of {effect['items']} items, the greedy verdict flipped on "
            f"{gained + lost} ({gained} wrong to right, {lost} right to wrong). The share of right samples "
            f"changed by {_points(on_right)} on the {effect['sft_right']} items {html.escape(sft.upper())} answered "
            f"right greedily and by {_points(on_wrong)} on the {effect['sft_wrong']} it answered wrong: {why}")


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
