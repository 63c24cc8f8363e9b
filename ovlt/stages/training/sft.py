"""Stage `sft`: TRL's SFTTrainer on the student, from the base model, on the iteration's SFT set.

The stage function hands the job to `ovlt.stages.training.launch.run_job`, which runs `train_sft` in this process or
on every process of an `accelerate launch`; `train_sft` is the body each process runs.

As in the paper, the SFT of every iteration starts again from the base model (not from the previous GRPO
model), trains on the teacher (or self-generated) chains with the loss on the completion only, and by
default fine-tunes the whole language model with the vision tower and its projector frozen. LoRA is the
alternative (`sft.finetune: lora`); its adapter is merged into the base weights on save, so every
checkpoint is a plain Hugging Face model that `ovlt.engines.models.load` and vLLM read alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoConfig
from trl import SFTConfig, SFTTrainer

from ovlt.engines.architectures import ImageBudget, lora_targets
from ovlt.engines.models import freeze_vision, load, load_processor
from ovlt.ground.artifacts import Run, Stage
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.stages.registry import Outcome, output, stage
from ovlt.stages.training.callbacks import JsonlLogger, stage_callbacks
from ovlt.stages.training.common import (
    finish,
    load_training_set,
    resume_point,
    train,
    trainer_dir,
    trl_arguments,
)
from ovlt.stages.training.launch import run_job

log = logging.getLogger(__name__)

SFT_COLUMNS = ("prompt", "completion", "images")


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
    result = run_job(cfg, run, "sft", train_sft, iteration, st.dir, cfg.sft.launch, bf16=cfg.sft.bf16)
    return Outcome({k: result[k] for k in ("examples", "steps", "processes")}, {"train": result})


def train_sft(cfg: StudyConfig, run: Run, iteration: int, stage_dir: Path) -> dict:
    """The SFT body every process runs (see `ovlt.stages.training.worker`)."""

    dataset = load_training_set(output(run, "filter", "sft", iteration), SFT_COLUMNS)
    heldout = None
    if cfg.sft.heldout_examples:
        if cfg.sft.heldout_examples >= len(dataset):
            raise ValueError(f"sft.heldout_examples = {cfg.sft.heldout_examples} leaves nothing to train on: "
                             f"the SFT set has {len(dataset)} examples")
        split = dataset.train_test_split(test_size=cfg.sft.heldout_examples, seed=cfg.seed)
        dataset, heldout = split["train"], split["test"]
    base = checkpoint_path(cfg, run, "base")
    # Pads left; the pixel bounds resize every training image and are saved with the checkpoint's processor.
    processor = load_processor(base, trust_remote_code=cfg.models.student.trust_remote_code,
                               budget=ImageBudget.of(cfg.data))
    checkpoint = stage_dir / "checkpoint"
    lora = cfg.sft.finetune == "lora"
    student_type = AutoConfig.from_pretrained(str(base), trust_remote_code=cfg.models.student.trust_remote_code).model_type
    output_dir = trainer_dir(stage_dir)
    resume_from, resume_step = resume_point(output_dir)
    trainer = SFTTrainer(
        model=base,
        args=sft_args(cfg, output_dir, resuming=resume_from is not None),
        train_dataset=dataset,
        eval_dataset=heldout,
        # explicit: AutoProcessor can silently give a bare tokenizer (docs/findings.md, "Qwen2.5-VL without torchvision")
        processing_class=processor,
        peft_config=lora_config(cfg, student_type) if lora else None,
        callbacks=[JsonlLogger(stage_dir / "log.jsonl"), *stage_callbacks(cfg, stage_dir)],
    )
    if not lora and cfg.sft.freeze_vision:
        # Before train() builds the optimizer, which then holds only the language model's parameters.
        freeze_vision(trainer.model)
    train_output = train(trainer, resume_from, resume_step)
    # Loss on chains of problems the SFT never sees, from the base model (eval_on_start) and from the trained one;
    # evaluate() is safe here, after train() has built the training engine.
    loss_before = heldout_loss_before(trainer) if heldout is not None else None
    loss_after = trainer.evaluate()["eval_loss"] if heldout is not None else None
    if lora:
        adapter_dir = stage_dir / "adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.accelerator.is_main_process:
            merge_lora(base, adapter_dir, checkpoint, cfg)
        trainer.accelerator.wait_for_everyone()
    else:
        trainer.save_model(str(checkpoint))
    heldout_loss = {} if heldout is None else {
        "heldout_examples": len(heldout), "heldout_loss_before": loss_before, "heldout_loss_after": loss_after}
    return finish(trainer, train_output, stage_dir, checkpoint, examples=len(dataset), resumed_from_step=resume_step,
                  **heldout_loss)


def sft_args(cfg: StudyConfig, output_dir: str | Path, resuming: bool = False) -> SFTConfig:
    """The study config's `sft` section as TRL arguments (`trl_arguments`), with the two that SFT sets itself.

    The held-out loss before training is measured by `eval_on_start`, inside `train()`: a standalone `evaluate()`
    before `train()` makes DeepSpeed build an inference engine that training then frees, and ZeRO-3's backward
    runs on nothing. `eval_on_start` evaluates whatever the eval strategy; the strategy stays "no", so nothing is
    evaluated during training. A resumed run finds that first loss in the checkpoint's log history instead."""
    return SFTConfig(**trl_arguments(
        cfg, cfg.sft, output_dir,
        completion_only_loss=True,  # the paper's recipe: the loss on the chain, not on the prompt
        eval_on_start=bool(cfg.sft.heldout_examples) and not resuming,
    ))


def heldout_loss_before(trainer) -> float:
    """The loss `eval_on_start` measured at step 0, before any update (kept in every checkpoint's log history)."""
    return next(row["eval_loss"] for row in trainer.state.log_history if row["step"] == 0 and "eval_loss" in row)


def lora_config(cfg: StudyConfig, model_type: str):
    """LoRA on `sft.lora.target_modules` inside the language model only (a frozen vision tower grows no adapter)."""
    from peft import LoraConfig

    lora = cfg.sft.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora_targets(model_type, lora.target_modules), task_type="CAUSAL_LM")


def merge_lora(base: str, adapter_dir: Path, checkpoint: Path, cfg: StudyConfig) -> None:
    """Base weights + LoRA adapter -> one full checkpoint (on CPU, so it works after any sharded run)."""
    import torch
    from peft import PeftModel

    model, _ = load(base, device="cpu", dtype=torch.float32, trust_remote_code=cfg.models.student.trust_remote_code)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if cfg.sft.bf16:
        merged = merged.to(torch.bfloat16)
    merged.save_pretrained(str(checkpoint))

