"""The training stages, `sft` and `grpo`: each trains one iteration's checkpoint in its stage folder, in-process or on
many processes through `accelerate launch` (`ovlt.stages.training.launch`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ovlt.ground.artifacts import Run, Stage
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.stages.registry import Outcome, stage
from ovlt.stages.training.launch import run_job

log = logging.getLogger(__name__)


def _base_exists(cfg: StudyConfig, run: Run, iteration: int) -> None:
    # Said here, before the folder is cleared and the workers start, rather than as a loading error inside them.
    base = checkpoint_path(cfg, run, "base")
    if cfg.models.student.name == "tiny" and not Path(base).is_dir():
        raise FileNotFoundError(f"base model not found at {base}: run the student stage first")


@stage("sft", ready=_base_exists)
def sft(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Stage `sft` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    log.info("%s: SFT from %s on %d process(es)", st.label, checkpoint_path(cfg, run, "base"),
             cfg.sft.launch.num_processes)
    result = run_job(cfg, run, "sft", iteration, st.dir, cfg.sft.launch, bf16=cfg.sft.bf16)
    return Outcome({k: result[k] for k in ("examples", "steps", "processes")}, {"train": result})


@stage("grpo")
def grpo(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Stage `grpo` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    log.info("%s: GRPO from sft-%d on %d process(es)", st.label, iteration, cfg.grpo.launch.num_processes)
    result = run_job(cfg, run, "grpo", iteration, st.dir, cfg.grpo.launch, bf16=cfg.grpo.bf16)
    counts = {"problems": result["examples"], "steps": result["steps"], "processes": result["processes"]}
    return Outcome(counts, {"train": result})
