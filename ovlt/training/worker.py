"""The training body every process runs: `python -m ovlt.training.worker JOB.json` (under `accelerate launch`)
or `run(job)` in-process. It rebuilds the config from the job, trains, saves the checkpoint and, on the main
process, writes `train_result.json` (steps, wall time per step, peak memory) for the stage's manifest."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

from ovlt.artifacts import Run, atomic_write_json, load_dataset_dir
from ovlt.config import StudyConfig
from ovlt.training.launch import RESULT_FILE


def run(job: dict) -> dict:
    """Run one job (`stage` is `sft` or `grpo`); returns the summary written to `train_result.json`."""
    from ovlt.training.grpo import train_grpo
    from ovlt.training.sft import train_sft

    trainers = {"sft": train_sft, "grpo": train_grpo}
    missing = sorted({"stage", "iteration", "run", "stage_dir", "config"} - set(job))
    if missing or job["stage"] not in trainers:
        raise ValueError(f"bad training job: missing keys {missing}, stage {job.get('stage')!r} (expected sft or grpo)")
    cfg = StudyConfig.model_validate(job["config"])
    return trainers[job["stage"]](cfg, Run(job["run"]), int(job["iteration"]), Path(job["stage_dir"]))


def load_training_set(path: Path, columns: tuple[str, ...]):
    """A stage's training set (a datasets folder), checked for the columns the trainer needs."""
    dataset = load_dataset_dir(path)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{path}: training set lacks column(s) {missing}; it has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError(f"{path}: training set is empty")
    return dataset


def peak_memory_mb() -> dict:
    """Peak resident memory of this process and, on CUDA, peak allocated GPU memory (MiB)."""
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        peak["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def finish(trainer, train_output, stage_dir: Path, checkpoint: Path, examples: int, **measured) -> dict:
    """Complete a checkpoint that the trainer saved (`Trainer.save_model` gathers ZeRO-3/FSDP shards): the processor
    beside it, with the image processor's own preprocessor_config.json as in hub repos, so that `ovlt.models.load`
    and vLLM load it; then the run's summary, written by the main process."""
    summary = {
        "examples": examples,
        "steps": trainer.state.global_step,
        "processes": trainer.accelerator.num_processes,
        "train_seconds": round(train_output.metrics.get("train_runtime", 0.0), 3),
        "train_loss": train_output.training_loss,
        **peak_memory_mb(),
        **measured,
    }
    summary["seconds_per_step"] = round(summary["train_seconds"] / max(1, summary["steps"]), 4)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(checkpoint))
        trainer.processing_class.image_processor.save_pretrained(str(checkpoint))
        atomic_write_json(stage_dir / RESULT_FILE, summary)
    trainer.accelerator.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m ovlt.training.worker JOB.json")
    run(json.loads(Path(argv[0]).read_text()))


if __name__ == "__main__":
    main()
