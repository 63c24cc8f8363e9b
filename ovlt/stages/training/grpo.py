"""Stage `grpo`: TRL's GRPOTrainer from the iteration's SFT checkpoint on its hard problems.

Rewards come from `ovlt.scoring.answers`, the study's one scorer: `accuracy_reward` (strict answer match) and
`format_reward` (think/answer tags with nothing after `</answer>`, a measured collapse mode). The total reward
is accuracy + `grpo.format_reward_weight` x format; with weight 0 (the paper) TRL still computes and logs the
format reward (`rewards/format_reward/mean`), it only adds nothing. Every logging step goes to
`<stage dir>/log.jsonl` and tensorboard; a run whose accuracy reward stays at zero stops early (ZeroRewardGuard).

TRL 1.16's GRPOConfig has no max_prompt_length, so the config has none: prompts are not truncated (that would cut
image tokens); with vLLM the student's `max_model_len` bounds prompt + completion.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trl import GRPOConfig, GRPOTrainer

from ovlt.engines.models import load_processor
from ovlt.ground.artifacts import Run
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.scoring.answers import accuracy_reward, format_reward
from ovlt.stages.training.callbacks import JsonlLogger, ZeroRewardGuard, tensorboard_callback
from ovlt.stages.training.common import (
    finish,
    load_training_set,
    resume_point,
    train,
    trainer_dir,
    trl_arguments,
)

log = logging.getLogger(__name__)

GRPO_COLUMNS = ("prompt", "image", "answer", "answer_type", "choices", "precision")
# TRL logs each as rewards/<function name>/mean; ZeroRewardGuard watches the first.
REWARD_FUNCS = (accuracy_reward, format_reward)


def reward_weights(cfg: StudyConfig) -> list[float]:
    return [1.0, cfg.grpo.format_reward_weight]


def grpo_args(cfg: StudyConfig, output_dir: str | Path) -> GRPOConfig:
    """The study config's `grpo` section as TRL arguments (`trl_arguments`), with the two that GRPO sets itself."""
    return GRPOConfig(**trl_arguments(
        cfg, cfg.grpo, output_dir,
        reward_weights=reward_weights(cfg),  # one weight per REWARD_FUNCS, the format's from the config
        vllm_max_model_length=cfg.models.student.max_model_len,  # the student's bound wherever vLLM serves it
    ))


def train_grpo(cfg: StudyConfig, run: Run, iteration: int, stage_dir: Path) -> dict:
    """The GRPO body every process runs (see `ovlt.stages.training.worker`)."""

    dataset = load_training_set(run.stage_dir("select_hard", iteration) / "grpo", GRPO_COLUMNS)
    start = checkpoint_path(cfg, run, f"sft-{iteration}")
    # Left padding: TRL re-tokenises prompts, and right-padded Qwen2.5-VL batches crash get_rope_index
    # (docs/findings.md, "TRL 1.16 with Qwen2.5-VL").
    # The pixel bounds resize every training image and are saved with the checkpoint's processor.
    processor = load_processor(start, trust_remote_code=cfg.models.student.trust_remote_code,
                               min_pixels=cfg.data.image_min_pixels, max_pixels=cfg.data.image_max_pixels)
    checkpoint = stage_dir / "checkpoint"
    output_dir = trainer_dir(stage_dir)
    resume_from, resume_step = resume_point(output_dir)
    trainer = GRPOTrainer(
        model=start,
        reward_funcs=list(REWARD_FUNCS),
        args=grpo_args(cfg, output_dir),
        train_dataset=dataset,
        # explicit: AutoProcessor can silently give a bare tokenizer (docs/findings.md, "Qwen2.5-VL without torchvision")
        processing_class=processor,
        callbacks=[
            JsonlLogger(stage_dir / "log.jsonl"),  # first, so the log holds the steps the guard saw
            tensorboard_callback(stage_dir / "tb"),
            ZeroRewardGuard(cfg.grpo.zero_reward_patience),
        ],
    )
    output = train(trainer, resume_from, resume_step)
    trainer.save_model(str(checkpoint))
    return finish(trainer, output, stage_dir, checkpoint, examples=len(dataset), resumed_from_step=resume_step)


