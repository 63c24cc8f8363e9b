"""The training stages, `sft` and `grpo`: each trains one iteration's checkpoint in its stage folder, in-process or on
many processes through `accelerate launch` (`ovlt.stages.training.launch`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ovlt.ground.artifacts import Run, Stage
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.stages.training.launch import run_job

log = logging.getLogger(__name__)


def sft(cfg: StudyConfig, run: Run, iteration: int) -> dict:
    """Stage `sft` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    inputs = [run.manifest("filter", iteration)]
    st = Stage(run, "sft", iteration, params=cfg.section("sft", "models.student", "seed", "device"), inputs=inputs)
    if st.done:
        return st.manifest
    base = checkpoint_path(cfg, run, "base")
    if cfg.models.student.name == "tiny" and not Path(base).is_dir():
        raise FileNotFoundError(f"base model not found at {base}: run the student stage first")
    st.begin()
    log.info("%s: SFT from %s on %d process(es)", st.label, base, cfg.sft.launch.num_processes)
    result = run_job(cfg, run, "sft", iteration, st.dir, cfg.sft.launch, bf16=cfg.sft.bf16)
    counts = {k: result[k] for k in ("examples", "steps", "processes")}
    return st.finish(counts=counts, outputs=["checkpoint", "log.jsonl", "tb"], extra={"train": result})

def grpo(cfg: StudyConfig, run: Run, iteration: int) -> dict:
    """Stage `grpo` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    inputs = [run.manifest("sft", iteration), run.manifest("select_hard", iteration)]
    params = cfg.section("grpo", "models.student", "seed", "device")
    st = Stage(run, "grpo", iteration, params=params, inputs=inputs)
    if st.done:
        return st.manifest
    st.begin()
    log.info("%s: GRPO from sft-%d on %d process(es)", st.label, iteration, cfg.grpo.launch.num_processes)
    result = run_job(cfg, run, "grpo", iteration, st.dir, cfg.grpo.launch, bf16=cfg.grpo.bf16)
    counts = {"problems": result["examples"], "steps": result["steps"], "processes": result["processes"]}
    return st.finish(counts=counts, outputs=["checkpoint", "log.jsonl", "tb"], extra={"train": result})

