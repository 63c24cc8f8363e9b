"""The study's shape: which stages run, in which order, per iteration, and what each consumes.

Iteration semantics follow the paper: iteration 1 makes SFT data with the teachers (caption -> distill ->
select -> filter); iteration i > 1 self-generates it with the previous iteration's GRPO model. Every SFT
restarts from the base model; GRPO starts from that iteration's SFT checkpoint. The base model and every
checkpoint are evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ovlt.artifacts import Run
from ovlt.config import StudyConfig

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


def checkpoint_names(cfg: StudyConfig) -> list[str]:
    names = ["base"]
    for i in range(1, cfg.iterations + 1):
        names += [f"sft-{i}", f"grpo-{i}"]
    return names


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


def checkpoint_path(cfg: StudyConfig, run: Run, checkpoint: str) -> str:
    """Where a named checkpoint (`base`, `sft-<i>`, `grpo-<i>`) lives: a folder of the run, or a hub id."""
    if checkpoint == "base":
        if cfg.models.student.name == "tiny":
            return str(run.stage_dir("student") / "checkpoint")
        return cfg.models.student.name
    kind, _, iteration = checkpoint.partition("-")
    if kind not in ("sft", "grpo") or not iteration.isdigit() or not 1 <= int(iteration) <= cfg.iterations:
        raise ValueError(f"unknown checkpoint {checkpoint!r}; expected one of {checkpoint_names(cfg)}")
    return str(run.stage_dir(kind, int(iteration)) / "checkpoint")


def pool_ranges(cfg: StudyConfig) -> dict[tuple[int, str], tuple[int, int]]:
    """Disjoint row ranges of the (decontaminated) training pool per (iteration, purpose).

    Each iteration draws fresh problems, as in the paper: its SFT problems and its GRPO candidates never
    overlap with another iteration's or with each other.
    """
    ranges, start = {}, 0
    for i, plan in enumerate(cfg.schedule, start=1):
        for purpose, count in (("sft", plan.sft_problems), ("grpo", plan.grpo_candidates)):
            ranges[(i, purpose)] = (start, start + count)
            start += count
    return ranges


def pool_size(cfg: StudyConfig) -> int:
    return max(end for _, end in pool_ranges(cfg).values())


# --- the plan: volumes without loading a model ------------------------------------------------------------


@dataclass
class PlannedStage:
    ref: StageRef
    inputs: str
    outputs: str
    volumes: dict = field(default_factory=dict)


def _train_steps(examples: int, per_device: int, accumulation: int, processes: int, epochs: float, max_steps: int) -> int:
    if max_steps > 0:
        return max_steps
    return max(1, int(examples * epochs) // (per_device * accumulation * processes))


def plan(cfg: StudyConfig) -> list[PlannedStage]:
    """What each stage would consume and produce. Token counts are upper bounds (max_new_tokens x samples)."""
    ranges = pool_ranges(cfg)
    n_eval = len(cfg.evaluation.benchmarks)
    planned = []
    for ref in stage_order(cfg):
        i = ref.iteration
        sched = cfg.schedule[i - 1] if i else None
        n_sft = sched.sft_problems if sched else 0
        if ref.name == "data":
            p = PlannedStage(ref, "sources: " + ", ".join(s.name for s in cfg.data.sources), "data/train, data/heldout",
                             {"problems": pool_size(cfg), "heldout": cfg.data.heldout_size})
        elif ref.name == "decontaminate":
            p = PlannedStage(ref, "data/train + benchmarks " + ", ".join(cfg.decontaminate.benchmarks),
                             "decontaminate/train", {"problems": pool_size(cfg)})
        elif ref.name == "student":
            p = PlannedStage(ref, cfg.models.student.name, "student/checkpoint", {})
        elif ref.name == "caption":
            s = cfg.caption.sampling
            p = PlannedStage(ref, f"pool rows {ranges[(i, 'sft')]}", "captions",
                             {"problems": n_sft, "samples": n_sft, "max_tokens": n_sft * s.max_new_tokens})
        elif ref.name in ("distill", "self_generate"):
            s = cfg.distill.sampling if ref.name == "distill" else cfg.self_generate.sampling
            who = cfg.models.reasoner.name if ref.name == "distill" else f"grpo-{i - 1}"
            p = PlannedStage(ref, f"{n_sft} problems, model {who}", "chains",
                             {"problems": n_sft, "samples": n_sft * s.n, "max_tokens": n_sft * s.n * s.max_new_tokens})
        elif ref.name == "select":
            p = PlannedStage(ref, "chains", "one verified chain per problem", {"problems": n_sft})
        elif ref.name == "filter":
            p = PlannedStage(ref, "selected chains", "SFT set (prompt/completion/images)", {"examples_max": n_sft})
        elif ref.name == "sft":
            t = cfg.sft
            steps = _train_steps(n_sft, t.per_device_train_batch_size, t.gradient_accumulation_steps,
                                 t.launch.num_processes, t.num_train_epochs, t.max_steps)
            p = PlannedStage(ref, f"SFT set, from base {cfg.models.student.name}", f"iter{i}/sft/checkpoint",
                             {"examples_max": n_sft, "steps": steps, "processes": t.launch.num_processes})
        elif ref.name == "select_hard":
            s = cfg.select_hard.sampling
            n = sched.grpo_candidates
            p = PlannedStage(ref, f"{n} candidates, model sft-{i}", f"{sched.grpo_problems} GRPO problems",
                             {"problems": n, "samples": n * s.n, "max_tokens": n * s.n * s.max_new_tokens})
        elif ref.name == "grpo":
            g = cfg.grpo
            completions_per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * g.launch.num_processes
            steps = _train_steps(sched.grpo_problems * g.num_generations, g.per_device_train_batch_size,
                                 g.gradient_accumulation_steps, g.launch.num_processes, g.num_train_epochs, g.max_steps)
            p = PlannedStage(ref, f"{sched.grpo_problems} problems, from sft-{i}", f"iter{i}/grpo/checkpoint",
                             {"steps": steps, "samples": steps * completions_per_step,
                              "max_tokens": steps * completions_per_step * g.max_completion_length})
        elif ref.name == "evaluate":
            p = PlannedStage(ref, f"checkpoint {ref.checkpoint}", f"eval/{ref.checkpoint}",
                             {"benchmarks": n_eval, "max_tokens_per_item": cfg.evaluation.sampling.max_new_tokens})
        else:  # pragma: no cover - stage_order and plan are written together
            raise AssertionError(ref.name)
        planned.append(p)
    return planned


def format_plan(cfg: StudyConfig) -> str:
    lines = [f"study {cfg.name}: {cfg.iterations} iteration(s), student {cfg.models.student.name}"
             f" ({cfg.models.student.backend}), teachers {cfg.models.captioner.backend}/{cfg.models.reasoner.backend}"]
    current = object()
    for p in plan(cfg):
        if p.ref.iteration != current:
            current = p.ref.iteration
            lines.append("" if current is None else f"\niteration {current}:")
        vols = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in p.volumes.items())
        lines.append(f"  {p.ref.label:<24} in: {p.inputs}\n  {'':<24} out: {p.outputs}" + (f"\n  {'':<24} {vols}" if vols else ""))
    return "\n".join(lines)


def iteration_problems(cfg: StudyConfig, run: Run, iteration: int, purpose: str):
    """The fresh problems of one iteration (`purpose` is `sft` or `grpo`): a slice of the decontaminated pool."""
    from ovlt.artifacts import load_dataset_dir

    start, end = pool_ranges(cfg)[(iteration, purpose)]
    run.manifest("decontaminate")  # raises, naming the stage, if the pool is not ready
    pool = load_dataset_dir(run.stage_dir("decontaminate") / "train")
    if len(pool) < end:
        raise ValueError(
            f"the decontaminated pool has {len(pool)} problems but the schedule needs {end} "
            f"(iteration {iteration}, {purpose}); raise data volumes or lower schedule counts"
        )
    return pool.select(range(start, end))
