"""The training (notebooks 04, 06): per-step curves from each SFT and GRPO stage's log."""

from __future__ import annotations

import json

from IPython.display import HTML
from matplotlib.figure import Figure

from ovlt.ground.artifacts import Run
from ovlt.scoring.rewards import logged_as
from ovlt.stages.registry import output
from ovlt.stages.report.common import _figure, _in, _wanted, note, study_config

# The GRPO curves beside one per reward function: TRL logs each reward the config's grpo.reward_funcs names as
# `logged_as(name)` (a weight-0 one too), and their weighted sum as "reward".
GRPO_CURVES = (("reward", "reward (total)"), ("kl", "KL to the reference"),
               ("completions/mean_length", "completion length (tokens)"))
SFT_CURVES = (("loss", "training loss"), ("mean_token_accuracy", "token accuracy"))


def _log(run: Run, kind: str, iteration: int) -> list[dict]:
    path = output(run, kind, "log.jsonl", iteration)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def grpo_curves(run: Run, logs: list[list[dict]] = ()) -> tuple[tuple[str, str], ...]:
    """The GRPO curves the run has: the total reward, then each reward function of its config's grpo.reward_funcs
    (a run without a config: each reward its `logs` carry), then KL and completion length, as (key, title)."""
    cfg = study_config(run)
    if cfg is not None:
        names = list(cfg.grpo.reward_funcs)
    else:
        keys = dict.fromkeys(key for rows in logs for row in rows for key in row)
        names = [key.split("/")[1] for key in keys if key.startswith("rewards/") and key.endswith("/mean")]
    rewards = tuple((logged_as(name), name.replace("_", " ")) for name in names)
    return GRPO_CURVES[:1] + rewards + GRPO_CURVES[1:]


def training_curves(run: Run, kind: str, iteration: int | None = None) -> Figure | HTML:
    """Per-step training curves from `<stage>/log.jsonl`: SFT loss and token accuracy; GRPO total reward, each reward
    function the config names (`grpo_curves`), KL and completion length. One line per iteration."""
    if kind not in ("sft", "grpo"):
        raise ValueError(f"training_curves: kind must be 'sft' or 'grpo', got {kind!r}")
    logs = {i: _log(run, kind, i) for i in _wanted(run, kind, iteration)}
    logs = {i: rows for i, rows in logs.items() if rows}
    if not logs:
        return note(f"No {kind.upper()} training log{_in(iteration)} yet.")
    curves = grpo_curves(run, list(logs.values())) if kind == "grpo" else SFT_CURVES
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
