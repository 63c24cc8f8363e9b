"""`ovlt plan`: what each stage of the study would read and write (from the stage registry), its volumes, and
the GPU-hours and wall-clock hours they would take (the cost model below), without loading a model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ovlt.engines.architectures import ARCHITECTURES, architecture_of_name
from ovlt.engines.placement import engine_count, gpus_per_engine
from ovlt.ground.artifacts import Run
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import pool_ranges, pool_size
from ovlt.stages.registry import STAGES
from ovlt.study.order import StageRef, stage_order, steps

# --- GPU-hours: training throughput MEASURED on an H100, generation ASSUMED from public reports -------------
# Every figure is per GPU, NVIDIA H100 80GB SXM, bf16. vLLM was not on the machine that measured training
# (benchmarks/RESULTS.md), so generation comes from public reports. Each figure's source and arithmetic:
# docs/findings.md, "GPU-hours: where the figures come from".


@dataclass(frozen=True)
class Throughput:
    generate: float  # vLLM offline batched generation: output tokens/s per GPU
    decode: float | None = None  # one sequence's decoding, tokens/s (a colocated GRPO rollout waits on its longest)
    train: float | None = None  # forward + backward tokens/s per GPU (ZeRO-3, gradient checkpointing)


THROUGHPUT: dict[str, Throughput] = {  # by model size, read from the model's name ("Qwen2.5-VL-7B" -> "7B")
    # Qwen2.5-VL-3B (captioner), assumed: the 7B figure scaled by weight bytes (decoding is memory-bound), lowered
    # because captions are short and each prefills an image.
    "3B": Throughput(generate=10_000),
    # Qwen2.5-VL-7B (student): generate and decode assumed from public vLLM figures; train measured on one H100
    # (8,688 tokens/s) x an assumed 0.3 for ZeRO-3's all-gathers, padding and the optimizer step.
    "7B": Throughput(generate=6_000, decode=150, train=2_600),
    # Qwen3-VL-8B (today's student), assumed: the 7B figures scaled by 7/8, the ratio of the weights read per token
    # (decoding is memory-bound; training's flops per token grow alike).
    "8B": Throughput(generate=5_250, decode=130, train=2_275),
    # DeepSeek-R1-Distill-Qwen-14B (reasoner, tensor_parallel_size 2), assumed: tensor parallelism gains less than
    # 2x, and 8k-token chains cap the batch the KV cache holds.
    "14B": Throughput(generate=3_500),
}

# Average generated length as a share of max_new_tokens (generation stops at EOS, the cap is a bound).
# caption: a detailed description is a few paragraphs, ~250 of 512 tokens. reasoner: R1-distill chains on
# chart/geometry questions, ~2,000 of 8,192 tokens. student: once SFT'd on chains cut to <= 500 words (~650
# tokens) it writes chains of that length, ~500 of 2,048 tokens; SFT examples use the same length.
EXPECTED_FRACTION = {"caption": 0.5, "reasoner": 0.25, "student": 0.25}
PROMPT_TEXT_TOKENS = 128  # question, options and instruction (assumed)
GRPO_REFERENCE_FORWARD = 1.25  # beta > 0: a reference forward = 1/4 of a checkpointed forward + backward (4 passes)
# Items per benchmark (MathVista testmini 1,000; MathVerse testmini 788 problems x 5 versions; MathVision test
# 3,040 and testmini 304; MMMU-Pro 1,730 per setting; EMMA 2,788 over its four subjects; HallusionBench 951 questions
# with a figure of its 1,129: the benchmarks' papers and cards).
BENCHMARK_ITEMS = {"mathvista_testmini": 1000, "mathverse_testmini": 3940, "mathvision_test": 3040,
                   "mathvision_testmini": 304, "mmmu_pro_standard4": 1730, "mmmu_pro_standard10": 1730,
                   "mmmu_pro_vision": 1730, "emma_math": 892, "emma_physics": 156, "emma_chemistry": 1176,
                   "emma_coding": 564, "hallusionbench": 951}
# The authors' hardware as reported for the paper (quoted when this project began; a search did not find the
# passage again): SFT of 5k examples ~30 min on 2x H100; GRPO 80 steps ~19 h on 4x H100, one step being EasyR1's
# rollout batch, 512 prompts x 5 samples (train/easyr1/examples/config.yaml in the authors' repository; that config
# also offloads parameters and optimizer states to CPU, which slows a step and is not modelled here).
AUTHORS_SFT = {"gpus": 2, "hours": 0.5, "examples": 5000}
AUTHORS_GRPO = {"gpus": 4, "hours": 19.0, "steps": 80, "completions_per_step": 512 * 5}
GPU_STAGES = ("caption", "distill", "self_generate", "sft", "select_hard", "grpo", "evaluate")


# --- generation engines: how many, on how many GPUs (ovlt.engines.generation.backend_for builds them) ------------------


def study_gpus(cfg: StudyConfig) -> int:
    """The GPUs of the machine the plan assumes: the one the trainers are launched on (launch.num_processes)."""
    return max(cfg.sft.launch.num_processes, cfg.grpo.launch.num_processes)


def generation_gpus(spec, gpus: int) -> int:
    """GPUs a study model's sampling holds on a machine with `gpus` GPUs: engines x GPUs per engine."""
    return engine_count(spec, gpus) * gpus_per_engine(spec)


def throughput(model_name: str) -> Throughput | None:
    """The throughput figures for a model, by the size in its name; None for scripted, tiny or unsized models."""
    sizes = re.findall(r"(\d+(?:\.\d+)?)B\b", model_name)
    return THROUGHPUT.get(f"{sizes[-1]}B") if sizes else None


def _generation_hours(samples: int, max_new_tokens: int, fraction: float, speed: Throughput | None) -> float | None:
    return None if speed is None else samples * fraction * max_new_tokens / speed.generate / 3600


def _example_tokens(cfg: StudyConfig, completion_tokens: float) -> float:
    """Prompt text, image tokens at the pixel budget (the student's merged patch: Qwen2.5-VL's 28 x 28 pixels where
    its architecture has none), and the completion."""
    student = architecture_of_name(cfg.models.student.name)
    pixels_per_token = (student and student.pixels_per_token) or ARCHITECTURES["qwen2_5_vl"].pixels_per_token
    return PROMPT_TEXT_TOKENS + cfg.data.image_max_pixels / pixels_per_token + completion_tokens


def sft_gpu_hours(cfg: StudyConfig, examples: int) -> float | None:
    speed = throughput(cfg.models.student.name)
    if speed is None or speed.train is None:
        return None
    completion = EXPECTED_FRACTION["student"] * cfg.self_generate.sampling.max_new_tokens
    return examples * _example_tokens(cfg, completion) / speed.train / 3600


@dataclass(frozen=True)
class GRPOVolume:
    """One GRPO run's (or phase's) volumes as TRL 1.16 runs it: a rollout samples `generation_batch` completions
    (generation_batch_size, by default one optimizer step's worth); each is trained on `num_iterations` times, in
    optimizer steps of `per_step` completions."""

    steps: int  # optimizer steps
    rollouts: int
    generation_batch: int
    sampled: int  # completions generated
    trained: int  # completions passed through forward + backward (sampled x num_iterations)


def grpo_volume(section, problems: int) -> GRPOVolume:
    """The volumes of a GRPO section (or a phase's, `GRPO.phase_sections`) over `problems` prompts."""
    per_step = section.per_device_train_batch_size * section.gradient_accumulation_steps * section.launch.num_processes
    per_micro_step = section.per_device_train_batch_size * section.launch.num_processes
    steps_per_generation = getattr(section, "steps_per_generation", None) or section.gradient_accumulation_steps
    generation_batch = getattr(section, "generation_batch_size", None) or per_micro_step * steps_per_generation
    reuse = getattr(section, "num_iterations", 1)
    if section.max_steps > 0:
        steps = section.max_steps
        sampled = steps * per_step // reuse
    else:  # TRL's sampler: every prompt num_generations times per epoch, in whole generation batches
        per_epoch = problems * section.num_generations // generation_batch * generation_batch
        sampled = int(per_epoch * section.num_train_epochs)
        steps = max(1, sampled * reuse // per_step)
    return GRPOVolume(steps, max(1, -(-sampled // generation_batch)), generation_batch, sampled, sampled * reuse)


def grpo_gpu_seconds(cfg: StudyConfig, section, rollouts: int, generation_batch: int, trained: int) -> float | None:
    """GPU-seconds of a GRPO run on section.launch.num_processes GPUs: `rollouts` rollouts of `generation_batch`
    completions, and `trained` completions through the update.

    Rollout: each GPU generates its share; a few dozen samples at temperature 1.0 nearly always hold one that runs
    to max_completion_length and the rollout waits for it (latency bound), a large share is bound by batched
    throughput instead. Update: every trained completion's tokens forward + backward, plus the reference model's
    forward.
    """
    speed, g = throughput(cfg.models.student.name), section
    if speed is None or speed.decode is None or speed.train is None:
        return None
    gpus, completion_tokens = g.launch.num_processes, EXPECTED_FRACTION["student"] * g.max_completion_length
    rollout_s = max(g.max_completion_length / speed.decode,
                    generation_batch / gpus * completion_tokens / speed.generate)
    update_gpu_s = trained * _example_tokens(cfg, completion_tokens) / speed.train * \
        (GRPO_REFERENCE_FORWARD if g.beta > 0 else 1.0)
    return rollouts * rollout_s * gpus + update_gpu_s


def grpo_phases(cfg: StudyConfig, grpo_problems: int) -> list[tuple[str, int, GRPOVolume, object]]:
    """(phase name, problems, volume, section) of each GRPO phase (one, unnamed, without phases)."""
    sizes = {s.name: s.problems or grpo_problems for s in cfg.select_hard.sets}
    out = []
    for phase, section in cfg.grpo.phase_sections():
        problems = sizes[phase.set] if phase is not None and phase.set is not None else grpo_problems
        out.append(("" if phase is None else phase.name, problems, grpo_volume(section, problems), section))
    return out


def _evaluation_items(cfg: StudyConfig) -> int | None:
    total = 0
    for bench in cfg.evaluation.benchmarks:
        size = cfg.data.heldout_size if bench.name == "synthetic" else BENCHMARK_ITEMS.get(bench.name)
        if size is None and bench.limit is None:
            return None
        total += min(n for n in (size, bench.limit) if n is not None)
    return total


# --- the plan: volumes without loading a model ------------------------------------------------------------


@dataclass
class PlannedStage:
    ref: StageRef
    inputs: str
    outputs: str
    volumes: dict = field(default_factory=dict)
    gpu_hours: float | None = None  # estimate from THROUGHPUT; None: a CPU stage or no figures
    gpus: int | None = None  # GPUs the stage holds at once (GPU stages)
    engines: int | None = None  # generation stages: engines side by side, gpus // engines GPUs each

    @property
    def wall_hours(self) -> float | None:
        """Hours on the clock: the GPU-hours spread over the stage's GPUs (the figures are per GPU)."""
        return None if self.gpu_hours is None or not self.gpus else self.gpu_hours / self.gpus


def _train_steps(examples: int, per_device: int, accumulation: int, processes: int, epochs: float, max_steps: int) -> int:
    if max_steps > 0:
        return max_steps
    return max(1, int(examples * epochs) // (per_device * accumulation * processes))


def _written(cfg: StudyConfig, ref: StageRef) -> str:
    """What the stage writes, as the registry declares it, relative to the run folder: `iter1/sft/{checkpoint, ...}`."""
    spec = STAGES[ref.name]
    folder, outputs = spec.folder(Run(""), ref.key), spec.outputs(cfg)
    return f"{folder}/{outputs[0]}" if len(outputs) == 1 else f"{folder}/{{{', '.join(outputs)}}}"


def plan(cfg: StudyConfig) -> list[PlannedStage]:
    """What each stage would consume and produce. Token counts are upper bounds (max_new_tokens x samples);
    GPU-hours use expected lengths (EXPECTED_FRACTION) and the THROUGHPUT figures."""
    ranges = pool_ranges(cfg)
    n_eval = len(cfg.evaluation.benchmarks)
    student = throughput(cfg.models.student.name)
    machine = study_gpus(cfg)
    specs = {role: getattr(cfg.models, role) for role in ("captioner", "reasoner", "student")}
    sampling = {role: (generation_gpus(spec, machine), engine_count(spec, machine))  # (GPUs, engines)
                for role, spec in specs.items()}
    planned = []
    for ref in stage_order(cfg):
        i = ref.iteration
        sched = cfg.schedule[i - 1] if i else None
        n_sft = sched.sft_problems if sched else 0
        n_examples = (sched.sft_examples or n_sft) if sched else 0  # an SFT target stops drawing once it is met
        consumed = ", ".join(StageRef(name, key).label for name, key in STAGES[ref.name].upstream(cfg, ref.key))
        outputs = _written(cfg, ref)
        if ref.name == "data":
            p = PlannedStage(ref, "sources: " + ", ".join(s.name for s in cfg.data.sources), outputs,
                             {"problems": pool_size(cfg), "heldout": cfg.data.heldout_size})
        elif ref.name == "decontaminate":
            p = PlannedStage(ref, "data/train + benchmarks " + ", ".join(cfg.decontaminate.benchmarks), outputs,
                             {"problems": pool_size(cfg)})
        elif ref.name == "student":
            p = PlannedStage(ref, cfg.models.student.name, outputs, {})
        elif ref.name == "caption":
            s = cfg.caption.sampling
            p = PlannedStage(ref, f"pool rows {ranges[(i, 'sft')]}", outputs,
                             {"problems": n_sft, "samples": n_sft, "max_tokens": n_sft * s.max_new_tokens},
                             _generation_hours(n_sft, s.max_new_tokens, EXPECTED_FRACTION["caption"],
                                               throughput(cfg.models.captioner.name)), *sampling["captioner"])
        elif ref.name in ("distill", "self_generate"):
            s = cfg.distill.sampling if ref.name == "distill" else cfg.self_generate.sampling
            who = cfg.models.reasoner.name if ref.name == "distill" else f"grpo-{i - 1}"
            speed, fraction = ((throughput(cfg.models.reasoner.name), EXPECTED_FRACTION["reasoner"])
                               if ref.name == "distill" else (student, EXPECTED_FRACTION["student"]))
            drawn = f"up to {n_sft} problems until {n_examples} examples" if n_examples < n_sft else f"{n_sft} problems"
            p = PlannedStage(ref, f"{drawn}, model {who}", outputs,
                             {"problems": n_sft, "samples": n_sft * s.n, "max_tokens": n_sft * s.n * s.max_new_tokens},
                             _generation_hours(n_sft * s.n, s.max_new_tokens, fraction, speed),
                             *sampling["reasoner" if ref.name == "distill" else "student"])
        elif ref.name == "select":
            p = PlannedStage(ref, consumed, outputs, {"problems": n_sft})
        elif ref.name == "filter":
            p = PlannedStage(ref, consumed, outputs, {"examples_max": n_examples})
        elif ref.name == "sft":
            t = cfg.sft
            steps = _train_steps(n_examples, t.per_device_train_batch_size, t.gradient_accumulation_steps,
                                 t.launch.num_processes, t.num_train_epochs, t.max_steps)
            p = PlannedStage(ref, f"SFT set, from base {cfg.models.student.name}", outputs,
                             {"examples_max": n_examples, "steps": steps, "processes": t.launch.num_processes},
                             sft_gpu_hours(cfg, n_examples), t.launch.num_processes)
        elif ref.name == "select_hard":
            s = cfg.select_hard.sampling
            n = sched.grpo_candidates
            p = PlannedStage(ref, f"{n} candidates, model sft-{i}", outputs,
                             {"problems": n, "samples": n * s.n, "max_tokens": n * s.n * s.max_new_tokens,
                              "grpo_problems": sched.grpo_problems},
                             _generation_hours(n * s.n, s.max_new_tokens, EXPECTED_FRACTION["student"], student),
                             *sampling["student"])
        elif ref.name == "grpo":
            phases = grpo_phases(cfg, sched.grpo_problems)
            seconds = [grpo_gpu_seconds(cfg, section, v.rollouts, v.generation_batch, v.trained)
                       for _, _, v, section in phases]
            volumes = {"steps": sum(v.steps for _, _, v, _ in phases),
                       "rollouts": sum(v.rollouts for _, _, v, _ in phases),
                       "samples": sum(v.sampled for _, _, v, _ in phases),
                       "max_tokens": sum(v.sampled * s.max_completion_length for _, _, v, s in phases)}
            if cfg.grpo.phases:
                volumes["phases"] = "; ".join(
                    f"{name} {n:,} problems x {s.num_train_epochs:g} epoch(s): {v.steps:,} steps, {v.rollouts:,}"
                    f" rollouts{', vision frozen' if s.freeze_vision else ''}" for name, n, v, s in phases)
            problems = " then ".join(f"{n}" for _, n, _, _ in phases)
            p = PlannedStage(ref, f"{problems} problems, from sft-{i}", outputs, volumes,
                             None if None in seconds else sum(seconds) / 3600, cfg.grpo.launch.num_processes)
        elif ref.name == "evaluate":
            items, max_new = _evaluation_items(cfg), cfg.evaluation.sampling.max_new_tokens
            per_item = 1 + cfg.evaluation.sampled.n  # the greedy response and the samples behind sampled accuracy
            p = PlannedStage(ref, f"checkpoint {ref.checkpoint}", outputs,
                             {"benchmarks": n_eval, "max_tokens_per_item": max_new, "samples_per_item": per_item},
                             None if items is None else
                             _generation_hours(items * per_item, max_new, EXPECTED_FRACTION["student"], student),
                             *sampling["student"])
        else:  # a stage without a volume model: what the registry says it reads and writes
            p = PlannedStage(ref, consumed, outputs)
        planned.append(p)
    return planned


def format_plan(cfg: StudyConfig) -> str:
    lines = [f"study {cfg.name}: {cfg.iterations} iteration(s), student {cfg.models.student.name}"
             f" ({cfg.models.student.backend}), teachers {cfg.models.captioner.backend}/{cfg.models.reasoner.backend}"]
    current, planned = object(), plan(cfg)
    for p in planned:
        if p.ref.iteration != current:
            current = p.ref.iteration
            lines.append("" if current is None else f"\niteration {current}:")
        vols = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in p.volumes.items())
        lines.append(f"  {p.ref.label:<24} in: {p.inputs}\n  {'':<24} out: {p.outputs}" + (f"\n  {'':<24} {vols}" if vols else ""))
    return "\n".join(lines + [""] + format_gpu_hours(cfg, planned))


def format_gpu_hours(cfg: StudyConfig, planned: list[PlannedStage]) -> list[str]:
    """Per-stage and total GPU-hours with the authors' reported hardware beside them; none for a CPU study."""
    stages = [p for p in planned if p.ref.name in GPU_STAGES]
    if all(p.gpu_hours is None for p in stages):
        cpu = sum(cpu_seconds(cfg, p) for p in planned) + len(steps(cfg)) * NOTEBOOK_SECONDS
        return ["GPU-hours: none estimated: scripted or tiny models (a CPU study), no THROUGHPUT figures for them",
                f"wall time on 2 CPU cores at the embedded default's measured rates (CPU_SECONDS): ~{cpu / 60:.0f} min"]
    lines = ["GPU-hours on H100 80GB (ovlt.study.plan.THROUGHPUT): training from a throughput measured on an H100 with"
             " benchmarks/gpu_check.sh, times an assumed ZeRO-3 factor; generation ASSUMED from public vLLM reports,"
             f" not measured here. Wall-clock hours on a {study_gpus(cfg)}-GPU machine (launch.num_processes):"
             " generation on engines x tensor_parallel_size GPUs (models.*.data_parallel_size), training on"
             " launch.num_processes:"]
    for p in stages:
        layout = f"{p.engines} engine(s) x {p.gpus // p.engines}" if p.engines else "training processes"
        lines.append(f"  {p.ref.label:<24} " + ("n/a (no throughput figure)" if p.gpu_hours is None else
                                                 f"{p.gpu_hours:8.1f} GPU-h on {p.gpus:2d} GPU(s) ({layout}):"
                                                 f" {p.wall_hours:6.2f} h wall-clock"))
    known = [p for p in stages if p.gpu_hours is not None]
    lines.append(f"  {'total':<24} {sum(p.gpu_hours for p in known):8.1f} GPU-h"
                 + ("" if len(known) == len(stages) else " (known stages)"))
    lines.append(f"  {'total wall-clock':<24} {sum(p.wall_hours for p in known):8.1f} h (stages run one after another)")
    sft, grpo = AUTHORS_SFT, AUTHORS_GRPO
    ours_sft = sft_gpu_hours(cfg, sft["examples"])
    authors_s = grpo_gpu_seconds(cfg, cfg.grpo, grpo["steps"], grpo["completions_per_step"],
                                 grpo["steps"] * grpo["completions_per_step"])
    ours_grpo = None if authors_s is None else authors_s / 3600
    lines.append(f"  authors' reported H100s: SFT of {sft['examples']:,} examples, {sft['gpus']} GPUs x"
                 f" ~{sft['hours'] * 60:.0f} min = {sft['gpus'] * sft['hours']:.1f} GPU-h; this estimate for the same:"
                 + (" n/a" if ours_sft is None else f" {ours_sft:.1f} GPU-h"))
    lines.append(f"  authors' reported H100s: GRPO {grpo['steps']} steps x {grpo['completions_per_step']:,} completions,"
                 f" {grpo['gpus']} GPUs x ~{grpo['hours']:.0f} h = {grpo['gpus'] * grpo['hours']:.0f} GPU-h;"
                 " this estimate for the same:" + (" n/a" if ours_grpo is None else f" {ours_grpo:.0f} GPU-h"))
    return lines




# --- wall time on the machine at hand: where the live estimate of `ovlt reproduce` starts ---------------------------
# MEASURED: the embedded default (configs/tiny.yaml, seed 0) on 2 quiet CPU cores, from a fresh clone's whole run
# (8a11f43: stages 1,360 s of 1,518). The student's sampling took 1.1-1.4e-4 s per sample x max_new_tokens in
# evaluation, difficulty selection and self-generation alike; GRPO 4.0-4.3e-4 s per sample x max_completion_length
# (rollouts and updates); SFT 0.0185 s per example trained (1,300 steps x 16 in 388 s and 381 s); the data and
# curation stages 2e-4 to 1.2e-3 s per problem; each notebook execution ~8 s over its stages (kernel start, imports,
# the evidence cells; docs/findings.md, "The embedded default's wall time"), ~9 s with the report's share. A student
# of another size runs at another rate: `ovlt reproduce` scales the estimate by what the finished steps took against
# it.
CPU_SECONDS = {"problem": 6e-4, "student_token": 1.15e-4, "grpo_token": 4.2e-4, "sft_example": 0.0185}
NOTEBOOK_SECONDS = 9.0


def cpu_seconds(cfg: StudyConfig, p: PlannedStage) -> float:
    """Seconds a stage takes on the CPU at the embedded default's measured rates (CPU_SECONDS), from its volumes."""
    v, name = p.volumes, p.ref.name
    if name == "sft":
        t = cfg.sft
        return v["steps"] * t.per_device_train_batch_size * t.gradient_accumulation_steps * t.launch.num_processes \
            * CPU_SECONDS["sft_example"]
    if name == "grpo":
        return v["max_tokens"] * CPU_SECONDS["grpo_token"]
    if name in ("select_hard", "self_generate"):
        return v["max_tokens"] * CPU_SECONDS["student_token"]
    if name == "evaluate":
        return (_evaluation_items(cfg) or 0) * v["samples_per_item"] * v["max_tokens_per_item"] \
            * CPU_SECONDS["student_token"]
    return (v.get("problems", 0) + v.get("heldout", 0) + v.get("examples_max", 0)) * CPU_SECONDS["problem"]


def stage_seconds(cfg: StudyConfig, cuda: bool) -> dict[StageRef, float]:
    """Each stage's expected wall time on this machine: on CUDA the plan's wall-clock hours where it has figures for
    the stage, otherwise (CPU stages, a CPU machine, models without THROUGHPUT figures) the CPU rates."""
    return {p.ref: p.wall_hours * 3600 if cuda and p.wall_hours is not None else cpu_seconds(cfg, p) for p in plan(cfg)}
