"""What every training process shares, SFT or GRPO: the TRL arguments from the config, the training set, resuming
from the newest complete checkpoint, and the result the stage's manifest records.

The trainer's periodic checkpoints go to `<stage dir>/shards/trainer`: `Stage.begin` keeps `shards/` when the stage
reruns with the same fingerprint, so a stage that died resumes from the newest complete one there, and
`Stage.finish` deletes it once the final checkpoint is in `<stage dir>/checkpoint`."""

from __future__ import annotations

import functools
import json
import logging
import resource
from pathlib import Path

import torch
from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints

from ovlt.engines.architectures import architecture
from ovlt.engines.models import attention_options
from ovlt.ground.artifacts import SHARDS, atomic_write_json, load_dataset_dir
from ovlt.ground.config import Launch, StudyConfig, TrainerSection

log = logging.getLogger(__name__)


RESULT_FILE = "train_result.json"


def uses_cpu(cfg: StudyConfig, launch: Launch) -> bool:
    """Train on CPU: asked for, or `auto` on a machine without CUDA (several CPU processes need it to use gloo)."""
    return launch.cpu or cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def trl_arguments(cfg: StudyConfig, section: TrainerSection, output_dir: str | Path, **stage_arguments) -> dict:
    """The keyword arguments of TRL's SFTConfig or GRPOConfig: the section's TRL fields as they are, and those that
    ovlt sets itself (`section.SET_BY_OVLT` refuses them as keys), with the stage's own (`stage_arguments`)."""
    cpu = uses_cpu(cfg, section.launch)
    set_by_ovlt = dict(
        output_dir=str(output_dir),  # the stage's trainer folder, where its periodic checkpoints go (trainer_dir)
        # transformers 5 has no warmup_ratio; a warmup_steps below 1 is a ratio of the total steps (the config keeps
        # the ratio's name and bounds it below 1, so a value never turns into a count of steps).
        warmup_steps=section.warmup_ratio,
        # Non-reentrant checkpointing works with a frozen vision tower (no input needs a gradient there).
        gradient_checkpointing_kwargs={"use_reentrant": False} if section.gradient_checkpointing else None,
        seed=cfg.seed,  # one seed for the study: model init, data order and sampling follow from it
        data_seed=cfg.seed,
        use_cpu=cpu,  # several CPU processes need it to join a gloo group (uses_cpu)
        # fp32 master weights; bf16 is autocast (or DeepSpeed's bf16 with fp32 optimizer state). On CPU the
        # attention that `ovlt.engines.models.load` uses too (grouped key/value heads without copies).
        model_init_kwargs={"dtype": "float32", **attention_options(cpu)},
        trust_remote_code=cfg.models.student.trust_remote_code,  # the student's own setting, as everywhere it loads
        # The config's trackers; tensorboard is a callback writing into the stage folder (callbacks.stage_callbacks).
        report_to=[tracker for tracker in cfg.report_to if tracker != "tensorboard"] or "none",
        **save_args(section),
        **stage_arguments,
    )
    return section.passed_to_trl() | set_by_ovlt


def save_args(section: TrainerSection) -> dict:
    """Periodic checkpoints (`save_steps` 0: none), from which a stage that died resumes. Optimizer, scheduler and
    RNG state are saved too (not `save_only_model`), so the resumed run continues exactly where the saved one was;
    only the newest `save_total_limit` are kept (a 7B ZeRO-3 checkpoint with optimizer state is ~100 GB)."""
    if not section.save_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": section.save_steps, "save_total_limit": section.save_total_limit,
            "save_only_model": False}


def load_training_set(path: Path, columns: tuple[str, ...]):
    """A stage's training set (a datasets folder), checked for the columns the trainer needs."""
    dataset = load_dataset_dir(path)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{path}: training set lacks column(s) {missing}; it has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError(f"{path}: training set is empty")
    return dataset


def trainer_dir(folder: Path) -> Path:
    """The trainer's output_dir, where its periodic checkpoints go (see the module docstring)."""
    return Path(folder) / SHARDS / "trainer"


def phase_dir(stage_dir: Path, name: str) -> Path:
    """Where one phase of a phased GRPO stage trains (its checkpoint, log, tb, trainer folder): under the stage's
    shards, so that a stage that died resumes after its last finished phase, and `Stage.finish` removes them once
    the last phase's checkpoint is the stage's own."""
    return Path(stage_dir) / SHARDS / "phases" / name


def job_dir(cfg: StudyConfig, stage_dir: Path, phase: int | None) -> Path:
    """Where a training job writes its checkpoint, log, tb, trainer folder and result: the stage's folder, or the
    folder of its `phase` (an index of `grpo.phases`)."""
    return Path(stage_dir) if phase is None else phase_dir(stage_dir, cfg.grpo.phases[phase].name)


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
    model is, so they need nothing here; nor do architectures that save their own key names
    (`ovlt.engines.architectures`, `reload_on_resume`)."""
    from peft import PeftModel

    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or isinstance(trainer.model, PeftModel) or \
            not architecture(trainer.model).reload_on_resume:
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
    beside it, with the image processor's own preprocessor_config.json as in hub repos, so that `ovlt.engines.models.load`
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

