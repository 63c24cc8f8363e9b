"""The study's shape: which stages run, in which order, per iteration, and which notebook executions (steps) run
them. What each stage is (function, notebook, folder, fingerprint) is declared in `ovlt.stages.registry`.

Iteration semantics follow the paper: iteration 1 makes SFT data with the teachers (caption -> distill ->
select -> filter); iteration i > 1 self-generates it with the previous iteration's GRPO model. Every SFT
restarts from the base model; GRPO starts from that iteration's SFT checkpoint. The base model and every
checkpoint are evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovlt.ground.config import StudyConfig
from ovlt.stages.registry import STAGES

RUN_STAGES = ("data", "decontaminate", "student")
TEACHER_STAGES = ("caption", "distill", "select", "filter")
SELF_STAGES = ("self_generate", "select", "filter")
TRAIN_STAGES = ("sft", "select_hard", "grpo")


@dataclass(frozen=True)
class StageRef:
    """One stage to run: its name and iteration (None for run-level stages); its notebook is the registry's.

    Evaluation stages carry the iteration of the checkpoint they evaluate but write under eval/<checkpoint>.
    """

    name: str
    iteration: int | None
    checkpoint: str | None = None  # for evaluate: which checkpoint

    @property
    def notebook(self) -> str:
        return STAGES[self.name].notebook

    @property
    def key(self) -> int | str | None:
        """Which instance of the stage this is (`ovlt.stages.registry`): its checkpoint, iteration, or None."""
        return self.checkpoint if self.checkpoint is not None else self.iteration

    @property
    def label(self) -> str:
        if self.name == "evaluate":
            return f"evaluate {self.checkpoint}"
        return self.name if self.iteration is None else f"iter{self.iteration}/{self.name}"


def stage_order(cfg: StudyConfig) -> list[StageRef]:
    """Every stage of the study in run order (what `ovlt plan` prints and `ovlt reproduce` runs)."""
    order = [StageRef(name, None) for name in RUN_STAGES]
    order.append(StageRef("evaluate", None, checkpoint="base"))
    for i in range(1, cfg.iterations + 1):
        for name in (TEACHER_STAGES if i == 1 else SELF_STAGES) + TRAIN_STAGES:
            order.append(StageRef(name, i))
            if name in ("sft", "grpo"):
                order.append(StageRef("evaluate", i, checkpoint=f"{name}-{i}"))
    return order


@dataclass(frozen=True)
class Step:
    """One notebook execution: consecutive stages that share a notebook and an iteration."""

    notebook: str
    iteration: int | None
    checkpoint: str | None
    stages: tuple[str, ...]

    @property
    def output_name(self) -> str:
        stem = Path(self.notebook).stem
        suffix = f"_{self.checkpoint}" if self.checkpoint else (f"_iter{self.iteration}" if self.iteration else "")
        return f"{stem}{suffix}.ipynb"

    @property
    def refs(self) -> list[StageRef]:
        return [StageRef(name, self.iteration, self.checkpoint) for name in self.stages]

    @property
    def label(self) -> str:
        what = "+".join(self.stages) + (f" {self.checkpoint}" if self.checkpoint else "")
        return what if self.iteration is None or self.checkpoint else f"iter{self.iteration}/{what}"


def steps(cfg: StudyConfig) -> list[Step]:
    grouped: list[Step] = []
    for ref in stage_order(cfg):
        last = grouped[-1] if grouped else None
        if last and ref.notebook == last.notebook and ref.iteration == last.iteration and not ref.checkpoint:
            grouped[-1] = Step(last.notebook, last.iteration, last.checkpoint, last.stages + (ref.name,))
        else:
            grouped.append(Step(ref.notebook, ref.iteration, ref.checkpoint, (ref.name,)))
    return grouped


def notebook_step(cfg: StudyConfig, notebook: str, iteration: int | None, checkpoint: str | None) -> Step:
    """The step in which the study runs `notebook` for this iteration (or checkpoint)."""
    for step in steps(cfg):
        if step.notebook == notebook and (step.checkpoint == checkpoint if checkpoint else
                                          step.iteration == iteration and step.checkpoint is None):
            return step
    runs = [s.label for s in steps(cfg) if s.notebook == notebook]
    where = f"checkpoint {checkpoint}" if checkpoint else f"iteration {iteration}" if iteration else "the run"
    raise ValueError(f"the study runs {notebook} for {', '.join(runs) or 'nothing'}, not for {where}")
