"""The paper config's rehearsal on CUDA, with DeepSpeed ZeRO-3 through `accelerate launch`, and a kill-and-resume
inside GRPO: the GPU half of the rehearsal (docs/rehearsal.md), one GPU is enough.

    python benchmarks/gpu_rehearsal.py [--iterations 1]

1. builds the rehearsal's models and local hub (`ovlt.rehearsal`) in a scratch folder;
2. runs `ovlt reproduce` on configs/rehearsal.yaml with device cuda, bf16, and SFT and GRPO launched with
   configs/accelerate/zero3.yaml on every visible GPU (one is enough to exercise ZeRO-3);
3. redoes iteration 1's GRPO with a checkpoint every step, kills the launch (launcher and workers) once the
   checkpoint of step 2 is complete, and runs the stage again, which must resume from step 2.
Prints the wall time of each part, each stage's steps and seconds per step, and the resumed step.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ovlt.ground.artifacts import Run  # noqa: E402
from ovlt.ground.config import load_config  # noqa: E402
from ovlt.rehearsal.chaos import kill_launch_after_checkpoint  # noqa: E402
from ovlt.stages.training.grpo import grpo  # noqa: E402
from ovlt.stages.training.launch import LaunchError  # noqa: E402


def rehearsal_on_cuda(root: Path, iterations: int, gpus: int) -> Path:
    raw = yaml.safe_load((REPO / "configs" / "rehearsal.yaml").read_text().replace(".rehearsal/", f"{root}/"))
    raw.update(device="cuda", requires_gpu=True, iterations=iterations, schedule=raw["schedule"][:iterations])
    if importlib.util.find_spec("vllm") is None:  # the lent GPU machines carry no vLLM: sample with transformers
        for model in raw["models"].values():
            model.update(backend="transformers")
            model.pop("engine_options", None)
            model.pop("engine_env", None)
        raw["grpo"]["use_vllm"] = False
    for section in ("sft", "grpo"):
        raw[section].update(bf16=True, launch={"num_processes": gpus,
                                               "accelerate_config": "configs/accelerate/zero3.yaml"})
    # A group of 5 completions per prompt on every GPU: 5 per device, one prompt each.
    raw["grpo"]["per_device_train_batch_size"] = 5
    path = root / "rehearsal-cuda.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_config(path)
    return path


def kill_and_resume_grpo(config: Path, run: Run) -> dict:
    cfg = load_config(config, {"grpo": {"save_steps": 1, "max_steps": 4}})
    stage_dir = run.stage_dir("grpo", 1)
    shutil.rmtree(stage_dir)
    with kill_launch_after_checkpoint(stage_dir, 2, wait_s=600, poll_s=0.05) as killed:
        try:
            grpo(cfg, run, 1)
            raise SystemExit("the GRPO launch was not killed: no checkpoint of step 2 appeared")
        except LaunchError:
            pass
    manifest = grpo(cfg, run, 1)
    resumed = manifest["train"]["resumed_from_step"]
    print(f"GRPO killed after the checkpoint of step 2 ({len(killed)} processes), resumed from step {resumed}; "
          f"{manifest['counts']['steps']} steps in all, {manifest['train']['seconds_per_step']} s/step after resuming")
    if resumed != 2:
        raise SystemExit(f"expected a resume from step 2, got {resumed}")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1)
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    if not gpus:
        raise SystemExit("no CUDA device visible")
    root = Path(tempfile.mkdtemp(prefix="ovlt-rehearsal-"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ovlt.rehearsal", str(root)], cwd=REPO, check=True)
    print(f"rehearsal models and local hub built in {time.perf_counter() - start:.0f} s")
    config = rehearsal_on_cuda(root, args.iterations, gpus)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(config), "--run", "rehearsal",
                    "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")], cwd=REPO, check=True)
    print(f"rehearsal on {gpus} GPU(s) with ZeRO-3: {args.iterations} iteration(s) in "
          f"{time.perf_counter() - start:.0f} s")
    run = Run(root / "runs" / "rehearsal")
    for i in range(1, args.iterations + 1):
        for stage in ("sft", "grpo"):
            train = run.manifest(stage, i)["train"]
            print(f"  iter{i}/{stage}: {train['steps']} steps on {train['processes']} process(es), "
                  f"{train['seconds_per_step']} s/step, peak GPU {train.get('peak_gpu_mb')} MiB")
    start = time.perf_counter()
    kill_and_resume_grpo(config, run)
    print(f"kill-and-resume inside GRPO: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
