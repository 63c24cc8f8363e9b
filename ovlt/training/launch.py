"""Running a training job: in this process, or on many processes through `accelerate launch`.

A stage function describes its work as a small job (stage, iteration, run folder, resolved config) and hands
it to `run_job`. With one process the job runs here, so a notebook can step through it; with more, the job is
written to `<stage dir>/job.json` and `accelerate launch ... -m ovlt.training.worker job.json` runs it, with
DeepSpeed ZeRO-3 or FSDP from the config's accelerate file. Both paths call the same `worker.run`.

On CPU, `accelerate launch --cpu` starts a single process (accelerate 1.15's simple launcher; several need
MPI). Several CPU processes come from the torchrun launcher (`--multi_gpu`, accelerate's name for it) together
with `use_cpu` in the training arguments, which makes every process join a gloo group.

Several machines (`launch.num_machines > 1`): the stage function launches this node's processes with the
accelerate config, which must name `machine_rank: 0` and `main_process_ip`; on every other node run the same
`accelerate launch --config_file <that node's config> -m ovlt.training.worker <stage dir>/job.json`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from ovlt.artifacts import Run, atomic_write_json
from ovlt.config import Launch, StudyConfig
from ovlt.models import attention_options

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_FILE = "train_result.json"
JOB_FILE = "job.json"
LAUNCH_LOG = "launch.log"
TAIL_LINES = 40


class LaunchError(RuntimeError):
    """An `accelerate launch` subprocess failed; the message carries the tail of its output."""


def uses_cpu(cfg: StudyConfig, launch: Launch) -> bool:
    """Train on CPU: asked for, or `auto` on a machine without CUDA (several CPU processes need it to use gloo)."""
    import torch

    return launch.cpu or cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def common_args(cfg: StudyConfig, section) -> dict:
    """TrainingArguments that SFT and GRPO share, from their config section (`cfg.sft` or `cfg.grpo`)."""
    cpu = uses_cpu(cfg, section.launch)
    return dict(
        learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler_type,
        warmup_steps=section.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        num_train_epochs=section.num_train_epochs,
        max_steps=section.max_steps,
        per_device_train_batch_size=section.per_device_train_batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        weight_decay=section.weight_decay,
        bf16=section.bf16,
        gradient_checkpointing=section.gradient_checkpointing,
        # Non-reentrant checkpointing works with a frozen vision tower (no input needs a gradient there).
        gradient_checkpointing_kwargs={"use_reentrant": False} if section.gradient_checkpointing else None,
        logging_steps=section.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=cpu,
        # fp32 master weights; bf16 is autocast (or DeepSpeed's bf16 with fp32 optimizer state). On CPU the
        # attention that `ovlt.models.load` uses too (grouped key/value heads without copies).
        model_init_kwargs={"dtype": "float32", **attention_options(cpu)},
        trust_remote_code=cfg.models.student.trust_remote_code,
        report_to="none",  # tensorboard is added as a callback writing into the stage folder
        **save_args(section),
    )


def save_args(section) -> dict:
    """Periodic checkpoints (`save_steps` 0: none), from which a stage that died resumes. Optimizer, scheduler and
    RNG state are saved too (not `save_only_model`), so the resumed run continues exactly where the saved one was;
    only the newest `save_total_limit` are kept (a 7B ZeRO-3 checkpoint with optimizer state is ~100 GB)."""
    if not section.save_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": section.save_steps, "save_total_limit": section.save_total_limit,
            "save_only_model": False}


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
    return cmd + ["-m", "ovlt.training.worker", str(job_path)]


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


def run_job(cfg: StudyConfig, run: Run, stage: str, iteration: int, stage_dir: Path, launch: Launch,
            bf16: bool = False) -> dict:
    """Train one stage in `stage_dir`, in-process or through `accelerate launch`; returns the worker's summary."""
    from ovlt.training import worker

    job = {"stage": stage, "iteration": iteration, "run": str(run.root), "stage_dir": str(stage_dir),
           "config": cfg.model_dump(mode="json")}
    if is_launched(launch):
        job_path = stage_dir / JOB_FILE
        atomic_write_json(job_path, job)
        stream(accelerate_command(launch, job_path, "bf16" if bf16 else "no"), stage_dir / LAUNCH_LOG)
    else:
        worker.run(job)
    result_path = stage_dir / RESULT_FILE
    if not result_path.exists():
        raise LaunchError(f"training finished without writing {result_path}")
    return json.loads(result_path.read_text())
