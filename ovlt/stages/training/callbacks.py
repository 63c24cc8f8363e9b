"""Trainer callbacks: the per-step log the report reads, the trackers the config names (tensorboard in the stage
folder), the live progress `ovlt reproduce` shows, and the zero-reward guard."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from ovlt.ground.artifacts import atomic_write_text
from ovlt.ground.config import StudyConfig
from ovlt.scoring.rewards import logged_as
from ovlt.stages.training import progress

ACCURACY_KEY = logged_as("accuracy_reward")


class JsonlLogger(TrainerCallback):
    """Appends one JSON object per logging step to `path`: `step`, the metrics under TRL's own names
    (`loss`, `reward`, `rewards/accuracy_reward/mean`, `kl`, `completions/mean_length`, `clip_ratio/...`),
    and `step_seconds`, the mean wall time of the steps since the previous line.

    A run resumed from a checkpoint starts the file again from the checkpoint's log history (the rerun stage has
    deleted the old file, and lines logged after that checkpoint are logged again), without `step_seconds` there."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._step_started = None
        self._step_seconds: list[float] = []

    @staticmethod
    def _row(step: int, logs: dict) -> dict:
        return {"step": step, **{k: v for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(v)}}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step > 0:
            text = "".join(json.dumps(self._row(logs["step"], logs)) + "\n" for logs in state.log_history)
            atomic_write_text(self.path, text)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self._step_seconds.append(time.perf_counter() - self._step_started)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The end-of-training summary (train_runtime, train_loss) goes to the stage manifest instead.
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        row = self._row(state.global_step, logs)
        if self._step_seconds:
            row["step_seconds"] = sum(self._step_seconds) / len(self._step_seconds)
            self._step_seconds.clear()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def tensorboard_callback(log_dir: str | Path) -> TensorBoardCallback:
    """Transformers' tensorboard callback writing to `log_dir` (by default it picks `output_dir/runs/<date>`)."""
    callback = TensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return callback


class TrainingProgress(TrainerCallback):
    """Writes the optimizer step, the run's total and the last logged loss or reward to `path` after every step, on
    the main process (`ovlt.stages.training.progress`): what `ovlt reproduce` shows inside a training stage."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.metrics: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.metrics.update({k: v for k, v in (logs or {}).items() if k in progress.METRICS})

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            progress.write(self.path, state.global_step, state.max_steps, self.metrics)


def stage_callbacks(cfg: StudyConfig, stage_dir: str | Path) -> list[TrainerCallback]:
    """The callbacks every training stage adds beside its own: tensorboard in `<stage dir>/tb` when `report_to` names
    it (the other trackers are TRL's, `common.trl_arguments`), and the live progress when `ovlt reproduce` asks."""
    callbacks: list[TrainerCallback] = []
    if "tensorboard" in cfg.report_to:
        callbacks.append(tensorboard_callback(Path(stage_dir) / "tb"))
    if os.environ.get(progress.PROGRESS_ENV):
        callbacks.append(TrainingProgress(os.environ[progress.PROGRESS_ENV]))
    return callbacks


class ZeroRewardError(RuntimeError):
    """GRPO's accuracy reward stayed at zero: every advantage is zero and the run learns nothing."""


class ZeroRewardGuard(TrainerCallback):
    """Stops a GRPO run whose accuracy reward is exactly zero at every logging step of its first `patience` steps.

    With all rewards zero every group's advantage is zero and the policy cannot move, so the rest of the run
    would only burn compute (a random or badly formatted start; docs/findings.md, "Learning on CPU"). Every process
    sees the same gathered metrics, so every process raises together. `patience` 0 disables the guard.
    """

    def __init__(self, patience: int, key: str = ACCURACY_KEY):
        self.patience = patience
        self.key = key
        self.rewarded = False

    def on_train_begin(self, args, state, control, **kwargs):
        # A run resumed past `patience` steps was rewarded before its checkpoint (else it would have stopped):
        # the checkpoint's log history says so, and a zero at a later step must not stop it.
        self.rewarded = any(logs.get(self.key, 0) > 0 for logs in state.log_history)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.patience <= 0 or self.rewarded or not logs or self.key not in logs:
            return
        if logs[self.key] > 0:
            self.rewarded = True
        elif state.global_step >= self.patience:
            raise ZeroRewardError(
                f"the accuracy reward ({self.key}) was 0 at every logged step of the first {state.global_step} steps: "
                "no completion was ever right, so GRPO has no signal. Start from a stronger SFT checkpoint, check "
                "that completions reach <answer>...</answer> within max_completion_length, or raise "
                "grpo.zero_reward_patience (0 disables this guard)."
            )
