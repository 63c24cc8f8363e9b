"""What every process of an `accelerate launch` runs: `python -m ovlt.stages.training.worker JOB.json`. It rebuilds
the config from the job and runs the stage's training body (`sft.train_sft`, `grpo.train_grpo`), which trains, saves
the checkpoint and, on the main process, writes `train_result.json` (steps, wall time per step, peak memory) for the
stage's manifest. With one process, `launch.run_job` calls the body in its own process instead."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

from ovlt.ground.artifacts import Run
from ovlt.ground.config import StudyConfig
from ovlt.stages.training import grpo, sft

log = logging.getLogger(__name__)


def run(job: dict) -> dict:
    """Run one job (`stage` is `sft` or `grpo`, `phase` optionally the index of a GRPO phase); returns the summary
    written to `train_result.json`."""
    trainers = {"sft": sft.train_sft, "grpo": grpo.train_grpo}
    missing = sorted({"stage", "iteration", "run", "stage_dir", "config"} - set(job))
    if missing or job["stage"] not in trainers:
        raise ValueError(f"bad training job: missing keys {missing}, stage {job.get('stage')!r} (expected sft or grpo)")
    cfg = StudyConfig.model_validate(job["config"])
    phase = {"phase": job["phase"]} if job.get("phase") is not None else {}  # one phase of a phased GRPO stage
    return trainers[job["stage"]](cfg, Run(job["run"]), int(job["iteration"]), Path(job["stage_dir"]), **phase)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m ovlt.stages.training.worker JOB.json")
    # As `ovlt` on the command line does: the worker's own lines (e.g. that it resumed) go to launch.log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run(json.loads(Path(argv[0]).read_text()))
    if "vllm" in sys.modules:
        # GRPO's colocated engine leaves its groups first: torn down at exit, after the process group below, it
        # raised "Invalid process group specified" in every process of a finished launch.
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    # Each launched process leaves its process group before it exits: a gloo group left to the interpreter's
    # teardown once aborted a process that had finished and saved everything ("terminate called without an active
    # exception"), failing the launch.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
