"""The run's layout: where each named checkpoint lives, and which rows of the decontaminated pool each iteration
draws (its SFT problems and its GRPO candidates never overlap another iteration's or each other)."""

from __future__ import annotations

from ovlt.ground.artifacts import Run, load_dataset_dir
from ovlt.ground.config import StudyConfig


def checkpoint_names(cfg: StudyConfig) -> list[str]:
    names = ["base"]
    for i in range(1, cfg.iterations + 1):
        names += [f"sft-{i}", f"grpo-{i}"]
    return names


def parse_checkpoint(checkpoint: str) -> tuple[str, int | None]:
    """A checkpoint name as (kind, iteration): `base` -> ("base", None), `sft-<i>` / `grpo-<i>` -> (kind, i)."""
    if checkpoint == "base":
        return "base", None
    kind, _, iteration = checkpoint.partition("-")
    if kind not in ("sft", "grpo") or not iteration.isdigit() or int(iteration) < 1:
        raise ValueError(f"unknown checkpoint {checkpoint!r}: expected base, sft-<i> or grpo-<i>")
    return kind, int(iteration)


def checkpoint_order(checkpoint: str) -> tuple[int, int]:
    """Sort key of checkpoint names in study order: base, sft-1, grpo-1, sft-2, ..."""
    kind, iteration = parse_checkpoint(checkpoint)
    return (0, 0) if iteration is None else (iteration, 0 if kind == "sft" else 1)


def checkpoint_path(cfg: StudyConfig, run: Run, checkpoint: str) -> str:
    """Where a named checkpoint (`base`, `sft-<i>`, `grpo-<i>`) lives: a folder of the run, or a hub id."""
    if checkpoint not in checkpoint_names(cfg):
        raise ValueError(f"unknown checkpoint {checkpoint!r}; expected one of {checkpoint_names(cfg)}")
    kind, iteration = parse_checkpoint(checkpoint)
    if iteration is not None:
        return str(run.stage_dir(kind, iteration) / "checkpoint")
    if cfg.models.student.name == "tiny":
        return str(run.stage_dir("student") / "checkpoint")
    return cfg.models.student.name


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


def iteration_problems(cfg: StudyConfig, run: Run, iteration: int, purpose: str):
    """The fresh problems of one iteration (`purpose` is `sft` or `grpo`): a slice of the decontaminated pool."""

    start, end = pool_ranges(cfg)[(iteration, purpose)]
    run.manifest("decontaminate")  # raises, naming the stage, if the pool is not ready
    pool = load_dataset_dir(run.stage_dir("decontaminate") / "train")
    if len(pool) < end:
        raise ValueError(
            f"the decontaminated pool has {len(pool)} problems but the schedule needs {end} "
            f"(iteration {iteration}, {purpose}); raise data volumes or lower schedule counts"
        )
    return pool.select(range(start, end))

