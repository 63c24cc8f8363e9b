"""The live progress of a training stage, as a file: the optimizer step, the run's total and the last loss or reward.

`ovlt reproduce` names the file in $OVLT_PROGRESS (the notebooks' kernels and launched workers inherit it); the
training callback (`callbacks.TrainingProgress`) writes it after every step and the study's display reads it. This
module imports no torch, so the study's process reads it without loading the training stack."""

from __future__ import annotations

import json
from pathlib import Path

from ovlt.ground.artifacts import atomic_write_json

PROGRESS_ENV = "OVLT_PROGRESS"
METRICS = ("loss", "reward")  # TRL's names: SFT logs a loss, GRPO a reward


def write(path: str | Path, step: int, total: int, metrics: dict[str, float]) -> None:
    atomic_write_json(Path(path), {"step": step, "total": total, **{k: metrics[k] for k in METRICS if k in metrics}})


def read(path: str | Path) -> dict | None:
    """The last progress written to `path`; None before the first step (or while it is being replaced)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
