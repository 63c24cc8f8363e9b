"""Stage `grpo`: TRL's GRPOTrainer from the iteration's SFT checkpoint on its hard problems, in one run or in
phases (`grpo.phases`, e.g. the authors' medium then hard), each phase from the previous phase's weights.

Rewards come from `ovlt.scoring.answers`, the study's one scorer, named by `grpo.reward_funcs` (REWARDS): ours,
`accuracy_reward` (strict answer match) and `format_reward` (think/answer tags with nothing after `</answer>`, a
measured collapse mode), and the authors' `r1v_reward` and `r1v_format_reward`. The total reward is their weighted
sum (`reward_weights`); a weight-0 reward is still computed and logged (`rewards/<name>/mean`), it only adds nothing.
Every logging step goes to `<stage dir>/log.jsonl` and tensorboard; a run whose accuracy reward stays at zero stops
early (ZeroRewardGuard, on the first accuracy reward that counts).

TRL 1.16's GRPOConfig has no max_prompt_length, so the config has none: prompts are not truncated (that would cut
image tokens); with vLLM the student's `max_model_len` bounds prompt + completion.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from trl import GRPOConfig, GRPOTrainer

from ovlt.engines.models import freeze_vision, load_processor
from ovlt.ground.artifacts import SHARDS, Run
from ovlt.ground.config import GRPO, StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.scoring import answers
from ovlt.stages.training.callbacks import JsonlLogger, ZeroRewardGuard, stage_callbacks
from ovlt.stages.training.colocate import colocated_vllm, student_engine
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


@dataclass(frozen=True)
class Reward:
    """A reward function of `ovlt.scoring.answers` as GRPO uses it: what it measures (`accuracy` or `format`) and
    its weight when `grpo.reward_weights` is not given (None: `grpo.format_reward_weight`)."""

    kind: str
    default_weight: float | None


# Every name the config may give (ovlt.ground.config.RewardName); TRL logs each as rewards/<name>/mean.
REWARDS = {
    "accuracy_reward": Reward("accuracy", 1.0),
    "format_reward": Reward("format", None),
    "r1v_reward": Reward("accuracy", 1.0),
    "r1v_format_reward": Reward("format", 0.0),  # logged, not rewarded, as the authors ran it
}


def reward_functions(section: GRPO) -> list:
    """The section's reward functions, in its order (`grpo.reward_funcs`)."""
    return [getattr(answers, name) for name in section.reward_funcs]


def reward_weights(section: GRPO) -> list[float]:
    """One weight per reward function: `reward_weights` as given, else each function's default."""
    if section.reward_weights is not None:
        return list(section.reward_weights)
    defaults = [REWARDS[name].default_weight for name in section.reward_funcs]
    return [section.format_reward_weight if weight is None else weight for weight in defaults]


def guarded_reward(section: GRPO) -> str | None:
    """The reward ZeroRewardGuard watches: the first accuracy reward with a positive weight (the one that carries
    the signal), else the first accuracy reward; None when no accuracy reward is used."""
    accuracy = [(name, w) for name, w in zip(section.reward_funcs, reward_weights(section), strict=True)
                if REWARDS[name].kind == "accuracy"]
    weighted = [name for name, w in accuracy if w > 0]
    return (weighted or [name for name, _ in accuracy] or [None])[0]


def grpo_args(cfg: StudyConfig, output_dir: str | Path, section: GRPO | None = None) -> GRPOConfig:
    """The study config's `grpo` section (or one phase's: `GRPO.phase_sections`) as TRL arguments (`trl_arguments`),
    with the two that GRPO sets itself."""
    section = cfg.grpo if section is None else section
    return GRPOConfig(**trl_arguments(
        cfg, section, output_dir,
        reward_weights=reward_weights(section),  # one weight per reward function
        vllm_max_model_length=cfg.models.student.max_model_len,  # the student's bound wherever vLLM serves it
    ))


PHASES = "phases"


def phase_dir(stage_dir: Path, name: str) -> Path:
    """Where one phase of a phased GRPO stage trains (its checkpoint, log, tb, trainer folder): under the stage's
    shards, so that a stage that died resumes after its last finished phase, and `Stage.finish` removes them once
    the last phase's checkpoint is the stage's own."""
    return Path(stage_dir) / SHARDS / PHASES / name


def training_set(run: Run, iteration: int, set_name: str | None) -> Path:
    """The GRPO set a run trains on: select_hard's default set, or one of its named sets."""
    folder = run.stage_dir("select_hard", iteration)
    return folder / "grpo" if set_name is None else folder / "sets" / set_name


def train_grpo(cfg: StudyConfig, run: Run, iteration: int, stage_dir: Path, phase: int | None = None) -> dict:
    """The GRPO body every process runs (see `ovlt.stages.training.worker`). `phase`: the index of the phase of
    `grpo.phases` to train, in `stage_dir` (its `phase_dir`), from the previous phase's checkpoint; None: the
    whole stage as one run, from the SFT checkpoint."""
    if phase is None:
        spec, section = None, cfg.grpo
        start = checkpoint_path(cfg, run, f"sft-{iteration}")
    else:
        spec, section = cfg.grpo.phase_sections()[phase]
        start = (checkpoint_path(cfg, run, f"sft-{iteration}") if phase == 0 else
                 str(Path(stage_dir).parent / cfg.grpo.phases[phase - 1].name / "checkpoint"))
    dataset = load_training_set(training_set(run, iteration, spec.set if spec else None), GRPO_COLUMNS)
    args = grpo_args(cfg, trainer_dir(stage_dir), section)
    per_rollout = args.generation_batch_size // args.num_generations
    if len(dataset) < per_rollout:
        # TRL's sampler yields whole rollouts only: a smaller set would train for 0 steps without a word.
        raise ValueError(f"GRPO set {spec.set if spec and spec.set else 'grpo'} of iteration {iteration} holds "
                         f"{len(dataset)} problems, fewer than one rollout's {per_rollout} prompts "
                         f"(generation_batch_size / num_generations): it would train for 0 steps")
    # Left padding: TRL re-tokenises prompts, and right-padded Qwen2.5-VL batches crash get_rope_index
    # (docs/findings.md, "TRL 1.16 with Qwen2.5-VL").
    # The pixel bounds resize every training image and are saved with the checkpoint's processor.
    processor = load_processor(start, trust_remote_code=cfg.models.student.trust_remote_code,
                               min_pixels=cfg.data.image_min_pixels, max_pixels=cfg.data.image_max_pixels)
    checkpoint = stage_dir / "checkpoint"
    output_dir = trainer_dir(stage_dir)
    resume_from, resume_step = resume_point(output_dir)
    with student_engine(cfg.models.student) if section.use_vllm else nullcontext():
        trainer = StudentGRPOTrainer(
            model=start,
            reward_funcs=reward_functions(section),
            args=args,
            train_dataset=dataset,
            # explicit: AutoProcessor can silently give a bare tokenizer (docs/findings.md, "Qwen2.5-VL without torchvision")
            processing_class=processor,
            callbacks=[
                JsonlLogger(stage_dir / "log.jsonl"),  # first, so the log holds the steps the guard saw
                *stage_callbacks(cfg, stage_dir),
                zero_reward_guard(section),
            ],
        )
    colocated_vllm(trainer)  # rollouts on the trained prompt and policy (ovlt.stages.training.colocate)
    if section.freeze_vision:
        # Before train() builds the optimizer, which then holds only the language model's parameters.
        freeze_vision(trainer.model)
    output = train(trainer, resume_from, resume_step)
    trainer.save_model(str(checkpoint))
    return finish(trainer, output, stage_dir, checkpoint, examples=len(dataset), resumed_from_step=resume_step,
                  start=str(start), vision_frozen=section.freeze_vision)


class StudentGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, taking the images-per-prompt counts LLaVA-OneVision's processor returns.

    TRL 1.16 passes every processor output but the token ids to `_get_per_token_logps_and_entropies`, which does not
    take `batch_num_images`: LLaVA-OneVision's first rollout stops with a TypeError (tests/test_students.py shows it).
    The model reads a missing count as one image per prompt, which every prompt of the study has; any other count
    is refused rather than scored on the wrong tiles.
    """

    def _get_per_token_logps_and_entropies(self, *args, batch_num_images=None, **kwargs):
        if batch_num_images is not None and any(int(n) != 1 for n in batch_num_images):
            raise ValueError(f"GRPO prompts with {sorted({int(n) for n in batch_num_images})} images: this student's "
                             "processor tiles multi-image prompts differently, which TRL 1.16 cannot pass on")
        return super()._get_per_token_logps_and_entropies(*args, **kwargs)


def zero_reward_guard(section: GRPO) -> ZeroRewardGuard:
    name = guarded_reward(section)
    if name is None:
        log.warning("grpo: no accuracy reward among %s; the zero-reward guard is off", section.reward_funcs)
        return ZeroRewardGuard(0)
    return ZeroRewardGuard(section.zero_reward_patience, key=f"rewards/{name}/mean")


