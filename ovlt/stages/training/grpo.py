"""Stage `grpo`: TRL's GRPOTrainer from the iteration's SFT checkpoint on its hard problems, in one run or in
phases (`grpo.phases`, e.g. the authors' medium then hard), each phase from the previous phase's weights.

Rewards come from `ovlt.scoring.rewards`, on the study's one scorer, named by `grpo.reward_funcs` (REWARDS): ours,
`accuracy_reward` (strict answer match) and `format_reward` (think/answer tags with nothing after `</answer>`, a
measured collapse mode), and the authors' `r1v_reward` and `r1v_format_reward`. The total reward is their weighted
sum (`reward_weights`); a weight-0 reward is still computed and logged (`rewards/<name>/mean`), it only adds nothing.
Every logging step goes to `<stage dir>/log.jsonl` and tensorboard; a run whose accuracy reward stays at zero stops
early (ZeroRewardGuard, on the first accuracy reward that counts).

TRL 1.16's GRPOConfig has no max_prompt_length, so the config has none: prompts are not truncated (that would cut
image tokens); with vLLM the student's `max_model_len` bounds prompt + completion.

The stage function hands each job (the stage, or each phase) to `ovlt.stages.training.launch.run_job`, which runs
`train_grpo` in this process or on every process of an `accelerate launch`; `train_grpo` is the body each runs.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import nullcontext
from pathlib import Path

from trl import GRPOConfig, GRPOTrainer

from ovlt.engines.architectures import ImageBudget
from ovlt.engines.models import freeze_vision, load_processor
from ovlt.ground.artifacts import Run, Stage, atomic_write_json, atomic_write_text, clear_but_shards
from ovlt.ground.config import GRPO, StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.scoring.rewards import REWARDS, logged_as
from ovlt.stages.registry import Outcome, output, stage
from ovlt.stages.training.callbacks import JsonlLogger, ZeroRewardGuard, stage_callbacks
from ovlt.stages.training.colocate import colocated_vllm, student_engine
from ovlt.stages.training.common import (
    RESULT_FILE,
    finish,
    job_dir,
    load_training_set,
    phase_dir,
    resume_point,
    train,
    trainer_dir,
    trl_arguments,
)
from ovlt.stages.training.launch import run_job

log = logging.getLogger(__name__)


@stage("grpo")
def grpo(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Stage `grpo` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    if cfg.grpo.phases:
        return _grpo_in_phases(cfg, run, st, iteration)
    log.info("%s: GRPO from sft-%d on %d process(es)", st.label, iteration, cfg.grpo.launch.num_processes)
    result = run_job(cfg, run, "grpo", train_grpo, iteration, st.dir, cfg.grpo.launch, bf16=cfg.grpo.bf16)
    counts = {"problems": result["examples"], "steps": result["steps"], "processes": result["processes"]}
    return Outcome(counts, {"train": result})


def _grpo_in_phases(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """The phases of `grpo.phases` one after another, each its own training job (its own processes, optimizer,
    scheduler and reference model, as the authors ran theirs) from the previous phase's checkpoint. A phase that
    finished before the stage died is not trained again. The last phase's checkpoint becomes the stage's; the
    stage's `log.jsonl` holds every phase's lines, each with its `phase`, steps counted on across phases; `tb/<phase>`
    each phase's tensorboard; the manifest's `train.phases` each phase's result."""
    results, lines = [], []
    for index, (phase, section) in enumerate(cfg.grpo.phase_sections()):
        folder = phase_dir(st.dir, phase.name)
        # Done when its result and checkpoint are there: the last phase's checkpoint moves to the stage's folder at
        # the end, and a stage that died after that move trains its last phase again rather than lose it.
        if not ((folder / RESULT_FILE).exists() and (folder / "checkpoint").exists()):
            clear_but_shards(folder)  # a phase cut short resumes from its trainer checkpoints (under its shards)
            log.info("%s: GRPO phase %s on set %s, %s", st.label, phase.name, phase.set or "grpo",
                     "vision frozen" if section.freeze_vision else "vision trained")
            run_job(cfg, run, "grpo", train_grpo, iteration, st.dir, section.launch, bf16=section.bf16, phase=index)
        result = {"phase": phase.name, "set": phase.set, **json.loads((folder / RESULT_FILE).read_text())}
        offset = sum(r["steps"] for r in results)
        log_path = folder / "log.jsonl"
        for line in log_path.read_text().splitlines() if log_path.exists() else []:
            row = json.loads(line)
            lines.append(json.dumps({**row, "step": row["step"] + offset, "phase": phase.name}))
        results.append(result)
    (st.dir / "tb").mkdir(exist_ok=True)
    for phase in cfg.grpo.phases:
        if (phase_dir(st.dir, phase.name) / "tb").exists():
            shutil.move(phase_dir(st.dir, phase.name) / "tb", st.dir / "tb" / phase.name)
    atomic_write_text(st.dir / "log.jsonl", "".join(line + "\n" for line in lines))
    shutil.move(phase_dir(st.dir, cfg.grpo.phases[-1].name) / "checkpoint", st.dir / "checkpoint")
    summary = {"examples": sum(r["examples"] for r in results), "steps": sum(r["steps"] for r in results),
               "processes": results[-1]["processes"],
               "train_seconds": round(sum(r["train_seconds"] for r in results), 3), "phases": results}
    atomic_write_json(st.dir / RESULT_FILE, summary)
    counts = {"problems": {r["phase"]: r["examples"] for r in results},
              "steps": {r["phase"]: r["steps"] for r in results}, "processes": summary["processes"]}
    return Outcome(counts, {"train": summary})

GRPO_COLUMNS = ("prompt", "image", "answer", "answer_type", "choices", "precision")


def reward_functions(section: GRPO) -> list:
    """The section's reward functions, in its order (`grpo.reward_funcs`)."""
    return [REWARDS[name].function for name in section.reward_funcs]


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


def training_set(run: Run, iteration: int, set_name: str | None) -> Path:
    """The GRPO set a run trains on: select_hard's default set, or one of its named sets."""
    return output(run, "select_hard", "grpo" if set_name is None else f"sets/{set_name}", iteration)


def train_grpo(cfg: StudyConfig, run: Run, iteration: int, stage_dir: Path, phase: int | None = None) -> dict:
    """The GRPO body every process runs (see `ovlt.stages.training.worker`). `phase`: the index of the phase of
    `grpo.phases` to train, in its `phase_dir`, from the previous phase's checkpoint; None: the whole stage as one
    run in `stage_dir`, from the SFT checkpoint."""
    folder = job_dir(cfg, stage_dir, phase)
    if phase is None:
        spec, section = None, cfg.grpo
        start = checkpoint_path(cfg, run, f"sft-{iteration}")
    else:
        spec, section = cfg.grpo.phase_sections()[phase]
        start = (checkpoint_path(cfg, run, f"sft-{iteration}") if phase == 0 else
                 str(phase_dir(stage_dir, cfg.grpo.phases[phase - 1].name) / "checkpoint"))
    dataset = load_training_set(training_set(run, iteration, spec.set if spec else None), GRPO_COLUMNS)
    args = grpo_args(cfg, trainer_dir(folder), section)
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
                               budget=ImageBudget.of(cfg.data))
    checkpoint = folder / "checkpoint"
    output_dir = trainer_dir(folder)
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
                JsonlLogger(folder / "log.jsonl"),  # first, so the log holds the steps the guard saw
                *stage_callbacks(cfg, folder),
                zero_reward_guard(section),
            ],
        )
    colocated_vllm(trainer)  # rollouts on the trained prompt and policy (ovlt.stages.training.colocate)
    if section.freeze_vision:
        # Before train() builds the optimizer, which then holds only the language model's parameters.
        freeze_vision(trainer.model)
    train_output = train(trainer, resume_from, resume_step)
    trainer.save_model(str(checkpoint))
    return finish(trainer, train_output, folder, checkpoint, examples=len(dataset), resumed_from_step=resume_step,
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
    return ZeroRewardGuard(section.zero_reward_patience, key=logged_as(name))


