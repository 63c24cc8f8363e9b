"""The study's shape: which stages run, in which order, per iteration.

Iteration semantics follow the paper: iteration 1 makes SFT data with the teachers (caption -> distill ->
select -> filter); iteration i > 1 self-generates it with the previous iteration's GRPO model. Every SFT
restarts from the base model; GRPO starts from that iteration's SFT checkpoint. The base model and every
checkpoint are evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovlt.ground.config import StudyConfig

TEACHER_STAGES = ("caption", "distill", "select", "filter")


SELF_STAGES = ("self_generate", "select", "filter")


TRAIN_STAGES = ("sft", "select_hard", "grpo")


@dataclass(frozen=True)
class StageRef:
    """One stage to run: its name, iteration (None for run-level stages) and the notebook that runs it.

    Evaluation stages carry the iteration of the checkpoint they evaluate but write under eval/<checkpoint>.
    """

    name: str
    iteration: int | None
    notebook: str
    checkpoint: str | None = None  # for evaluate: which checkpoint

    @property
    def label(self) -> str:
        if self.name == "evaluate":
            return f"evaluate {self.checkpoint}"
        return self.name if self.iteration is None else f"iter{self.iteration}/{self.name}"


NOTEBOOKS = {
    "data": "00_data.ipynb",
    "decontaminate": "00_data.ipynb",
    "student": "00_data.ipynb",
    "caption": "01_caption.ipynb",
    "distill": "02_distill.ipynb",
    "self_generate": "02_distill.ipynb",
    "select": "03_filter.ipynb",
    "filter": "03_filter.ipynb",
    "sft": "04_sft.ipynb",
    "select_hard": "05_select.ipynb",
    "grpo": "06_grpo.ipynb",
    "evaluate": "07_evaluate.ipynb",
    "report": "08_report.ipynb",
}


def stage_order(cfg: StudyConfig) -> list[StageRef]:
    """Every stage of the study in run order (what `ovlt plan` prints and `ovlt reproduce` runs)."""
    order = [StageRef(name, None, NOTEBOOKS[name]) for name in ("data", "decontaminate", "student")]
    order.append(StageRef("evaluate", None, NOTEBOOKS["evaluate"], checkpoint="base"))
    for i in range(1, cfg.iterations + 1):
        for name in (TEACHER_STAGES if i == 1 else SELF_STAGES) + TRAIN_STAGES:
            order.append(StageRef(name, i, NOTEBOOKS[name]))
            if name in ("sft", "grpo"):
                order.append(StageRef("evaluate", i, NOTEBOOKS["evaluate"], checkpoint=f"{name}-{i}"))
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

