"""The training body every process runs: `python -m ovlt.training.worker JOB.json` (under `accelerate launch`)
or `run(job)` in-process. It rebuilds the config from the job, trains, saves the checkpoint and, on the main
process, writes `train_result.json` (steps, wall time per step, peak memory) for the stage's manifest.

The trainer's periodic checkpoints go to `<stage dir>/shards/trainer`: `Stage.begin` keeps `shards/` when the stage
reruns with the same fingerprint, so a stage that died resumes from the newest complete one there, and
`Stage.finish` deletes it once the final checkpoint is in `<stage dir>/checkpoint`."""

from __future__ import annotations

import functools
import json
import logging
import resource
import sys
from pathlib import Path

import torch
from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints

from ovlt.artifacts import SHARDS, Run, atomic_write_json, load_dataset_dir
from ovlt.config import StudyConfig
from ovlt.training.launch import RESULT_FILE

log = logging.getLogger(__name__)


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


def trainer_dir(stage_dir: Path) -> Path:
    """The trainer's output_dir, where its periodic checkpoints go (see the module docstring)."""
    return Path(stage_dir) / SHARDS / "trainer"


def resume_point(output_dir: Path) -> tuple[str | None, int | None]:
    """The newest complete checkpoint in `output_dir` and its step; (None, None) when there is none.

    Transformers writes a checkpoint's trainer_state.json last, after weights, optimizer and RNG states: a folder
    without it (or with it half written) was cut short by the crash. `get_last_checkpoint` would pick such a folder
    (it only compares step numbers), so this walks transformers' own step order back to the newest folder with a
    whole state; the resumed run overwrites the cut-short one when it saves that step again. Read-only, because
    every process of a launch calls it and must get the same answer."""
    if not Path(output_dir).is_dir():
        return None, None
    for checkpoint in reversed(sort_checkpoints(str(output_dir))):
        try:
            return checkpoint, TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME)).global_step
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return None, None


def train(trainer, checkpoint: str | None, step: int | None):
    """`trainer.train()`, resumed from `checkpoint` (weights, optimizer, scheduler, RNG, data position) if given."""
    if checkpoint is not None:
        if trainer.accelerator.is_main_process:
            log.info("resuming training from step %d (%s)", step, checkpoint)
        load_weights(trainer, checkpoint)
        if trainer.args.device.type == "cpu" and trainer.args.world_size > 1:
            restore_to_cpu_index()
    return trainer.train(resume_from_checkpoint=checkpoint)


@functools.cache
def restore_to_cpu_index() -> None:
    """Let `torch.load` map to "cpu:<n>". With several processes the Trainer loads the optimizer state onto each
    process's device, which accelerate names cpu:<n> on CPU, and torch 2.13 knows only "cpu" ("don't know how to
    restore data location ... (tagged with cpu:0)"). Registered once, through torch's own device registry, after
    its "cpu" entry (priority 10) and before "cuda" (20)."""

    def cpu_index(storage, location: str):
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(11, lambda storage: None, cpu_index)


def load_weights(trainer, checkpoint: str) -> None:
    """Put a checkpoint's weights into the trainer's model, as resuming should and transformers 5.17 does not here.

    `save_pretrained` writes Qwen2.5-VL's weights under the hub's key names (`visual.*`, `model.layers.*`), and
    the Trainer's resume reads them back with a bare `load_state_dict(strict=False)` that matches none of the
    model's (`model.visual.*`, `model.language_model.*`): it warns and trains on from the start weights with the
    resumed optimizer (transformers issue #43701). `from_pretrained` renames the keys; its weights are copied in,
    strictly. DeepSpeed and FSDP resume weights from their own states and LoRA from its adapter, keyed as the
    model is, so they need nothing here."""
    from peft import PeftModel

    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or isinstance(trainer.model, PeftModel):
        return
    saved = type(trainer.model).from_pretrained(checkpoint, dtype=trainer.model.dtype)
    trainer.model.load_state_dict(saved.state_dict())


def peak_memory_mb() -> dict:
    """Peak resident memory of this process and, on CUDA, peak allocated GPU memory (MiB)."""
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        peak["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def finish(trainer, train_output, stage_dir: Path, checkpoint: Path, examples: int,
           resumed_from_step: int | None = None, **measured) -> dict:
    """Complete a checkpoint that the trainer saved (`Trainer.save_model` gathers ZeRO-3/FSDP shards): the processor
    beside it, with the image processor's own preprocessor_config.json as in hub repos, so that `ovlt.models.load`
    and vLLM load it; then the run's summary, written by the main process.

    After a resume, transformers' runtime and loss sum cover only the steps this run trained (its train_loss still
    divides by all steps): `train_seconds`, `seconds_per_step` and `train_loss` are over those steps."""
    steps = trainer.state.global_step
    steps_run = steps - (resumed_from_step or 0)
    summary = {
        "examples": examples,
        "steps": steps,
        "resumed_from_step": resumed_from_step,
        "processes": trainer.accelerator.num_processes,
        "train_seconds": round(train_output.metrics.get("train_runtime", 0.0), 3),
        "train_loss": train_output.training_loss * steps / steps_run if steps_run else None,
        **peak_memory_mb(),
        **measured,
    }
    summary["seconds_per_step"] = round(summary["train_seconds"] / max(1, steps_run), 4)
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
    # As `ovlt` on the command line does: the worker's own lines (e.g. that it resumed) go to launch.log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run(json.loads(Path(argv[0]).read_text()))


if __name__ == "__main__":
    main()
