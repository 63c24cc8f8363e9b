"""Running a training job: in this process, or on many processes through `accelerate launch`.

A stage function hands its body (`train_sft`, `train_grpo`) and the job's terms (iteration, run folder, config) to
`run_job`. With one process the body runs here, so a notebook can step through it; with more, the job is written to
`job.json` in its folder (the stage's, or a GRPO phase's: `common.job_dir`) and `accelerate launch ... -m ovlt.stages.training.worker job.json` runs the same body in every
process, with DeepSpeed ZeRO-3 or FSDP from the config's accelerate file.

On CPU, `accelerate launch --cpu` starts a single process (accelerate 1.15's simple launcher; several need
MPI). Several CPU processes come from the torchrun launcher (`--multi_gpu`, accelerate's name for it) together
with `use_cpu` in the training arguments, which makes every process join a gloo group.

Several machines (`launch.num_machines > 1`): the stage function launches this node's processes with the
accelerate config, which must name `machine_rank: 0` and `main_process_ip`; on every other node run the same
`accelerate launch --config_file <that node's config> -m ovlt.stages.training.worker <job folder>/job.json`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ovlt.ground.artifacts import Run, atomic_write_json
from ovlt.ground.config import Launch, StudyConfig
from ovlt.stages.training.common import RESULT_FILE, job_dir

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
JOB_FILE = "job.json"
LAUNCH_LOG = "launch.log"
TAIL_LINES = 40


class LaunchError(RuntimeError):
    """An `accelerate launch` subprocess failed; the message carries the tail of its output."""


def is_launched(launch: Launch) -> bool:
    """Whether the job goes through `accelerate launch`: several processes or machines, or an accelerate config
    (DeepSpeed or FSDP need the launcher even on one GPU)."""
    return launch.num_processes > 1 or launch.num_machines > 1 or launch.accelerate_config is not None


def resolve_accelerate_config(path: str) -> Path:
    """The accelerate config file: as given, or relative to the repository (configs name `configs/accelerate/...`)."""
    for candidate in (Path(path), REPO_ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"accelerate config {path!r} not found (looked in {Path.cwd()} and {REPO_ROOT})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(launch: Launch, job_path: str | Path, mixed_precision: str = "no") -> list[str]:
    """The `accelerate launch` command line that runs the worker on `launch.num_processes` processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:
        cmd += ["--config_file", str(resolve_accelerate_config(launch.accelerate_config))]
    else:
        cmd += ["--multi_gpu", "--mixed_precision", mixed_precision, "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(launch.num_processes), "--num_machines", str(launch.num_machines)]
    if launch.num_machines == 1:
        # A free port per job: two runs on one machine (e.g. tests in parallel) must not share a rendezvous.
        cmd += ["--main_process_port", str(free_port())]
    return cmd + ["-m", "ovlt.stages.training.worker", str(job_path)]


def stream(cmd: list[str], log_path: Path) -> None:
    """Run `cmd`, echoing its output live and into `log_path`; on failure raise with the output's tail."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    log.info("launching: %s", " ".join(cmd))
    with open(log_path, "w", encoding="utf-8") as handle, subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            handle.write(line)
            tail.append(line)
        returncode = proc.wait()
    if returncode:
        raise LaunchError(
            f"training subprocess exited with status {returncode}: {' '.join(cmd)}\n"
            f"--- last {len(tail)} lines (full output in {log_path}) ---\n{''.join(tail)}"
        )


def run_job(cfg: StudyConfig, run: Run, stage: str, body: Callable[..., dict], iteration: int, stage_dir: Path,
            launch: Launch, bf16: bool = False, phase: int | None = None) -> dict:
    """Train one stage (or one `phase` of a phased GRPO stage, in its `job_dir`) with its training body
    (`body(cfg, run, iteration, stage_dir[, phase])`, the one `ovlt.stages.training.worker` runs for `stage` in a
    launched process), in this process or through `accelerate launch`; returns the summary it wrote."""
    folder = job_dir(cfg, stage_dir, phase)
    if is_launched(launch):
        job = {"stage": stage, "iteration": iteration, "run": str(run.root), "stage_dir": str(stage_dir),
               "config": cfg.model_dump(mode="json"), **({} if phase is None else {"phase": phase})}
        job_path = folder / JOB_FILE
        atomic_write_json(job_path, job)
        stream(accelerate_command(launch, job_path, "bf16" if bf16 else "no"), folder / LAUNCH_LOG)
    else:
        body(cfg, run, iteration, Path(stage_dir), **({} if phase is None else {"phase": phase}))
    result_path = folder / RESULT_FILE
    if not result_path.exists():
        raise LaunchError(f"training finished without writing {result_path}")
    return json.loads(result_path.read_text())
