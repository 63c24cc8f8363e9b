"""The typed configuration of one study, loaded from YAML.

Every knob of a study lives here, so that a run is fully described by one file. Unknown keys, wrong
types and impossible values are rejected with a message naming the file and the key path, because a typo
in a config otherwise surfaces hours later on a GPU cluster.
"""

from __future__ import annotations

import functools
import typing
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ovlt.ground import trl_fields
from ovlt.ground.artifacts import ArtifactError, safe_name
from ovlt.ground.sources import SOURCE_NAMES

Backend = Literal["vllm", "transformers", "scripted"]
AnswerWith = Literal["letter", "option"]  # what a scripted chain's multiple-choice <answer> holds


def _admits_bool(annotation: object) -> bool:
    return annotation is bool or any(_admits_bool(arg) for arg in typing.get_args(annotation))


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are checked on assignment too, and numbers are
    finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: object, info: ValidationInfo) -> object:
        """YAML's true and false are booleans; pydantic would read `iterations: true` as 1."""
        if isinstance(value, bool) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"got the boolean {str(value).lower()}, which is not a value of this key")
        return value


# --- models ------------------------------------------------------------------------------------------


class TinyDims(Section):
    """Dimensions of the locally built Qwen2.5-VL student (embedded default only; see ovlt.engines.models.TINY_DIMS)."""

    hidden_size: int = Field(256, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(640, gt=0)
    vision_depth: int = Field(2, gt=0)
    vision_hidden_size: int = Field(64, gt=0)
    vision_intermediate_size: int = Field(128, gt=0)
    vision_num_heads: int = Field(4, gt=0)
    vocab_size: int = Field(3072, ge=512)
    rope_theta: float = Field(1e6, gt=0)
    # Rotary frequencies per (time, height, width) of a head's half; None: Qwen2.5-VL's 1:3:3 split.
    mrope_section: list[int] | None = None

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyDims:
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 8:
            raise ValueError("hidden_size / num_attention_heads must be a multiple of 8 (rotary sections)")
        half = self.hidden_size // self.num_attention_heads // 2
        if self.mrope_section is not None and (len(self.mrope_section) != 3 or sum(self.mrope_section) != half):
            raise ValueError(f"mrope_section {self.mrope_section} must be 3 numbers (time, height, width) summing to "
                             f"head_dim / 2 = {half}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.vision_hidden_size % self.vision_num_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_num_heads")
        return self


# vllm.LLM arguments that ovlt sets from other keys (ovlt.engines.generation.vllm_arguments), so never engine_options.
SET_FOR_VLLM = frozenset({"model", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "seed",
                          "trust_remote_code", "limit_mm_per_prompt", "mm_processor_kwargs"})


class ModelSpec(Section):
    """One model of the study. `name` is a hub id, a local folder, or `tiny` (built locally)."""

    name: str
    backend: Backend = "transformers"
    trust_remote_code: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=0)
    # Sequences decoded together (transformers); vLLM schedules its own, and there it sizes the shards a stage writes:
    # batch_size x 4 problems per engine (ovlt.stages.rows.shard_size).
    batch_size: int = Field(16, ge=1)
    # Engines that sample side by side, each on tensor_parallel_size GPUs of its own; "auto": every visible GPU
    # (vllm backend), one engine otherwise.
    data_parallel_size: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    # More keyword arguments of `vllm.LLM` for the engines ovlt opens (vllm backend), by vLLM's own names, e.g.
    # dtype, enforce_eager, kv_cache_memory_bytes (docs/findings.md, "vLLM on CPU").
    engine_options: dict[str, typing.Any] = Field(default_factory=dict)
    # vLLM's environment variables for those engines, set in the process that opens each one (docs/findings.md,
    # "vLLM on CPU": VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps a CPU engine in that process).
    engine_env: dict[str, str] = Field(default_factory=dict)
    # Variables of the model's own chat template, by TRL's name for them: e.g. {enable_thinking: true} for a Qwen3
    # reasoner (its template's switch; the reply then opens <think> itself).
    chat_template_kwargs: dict[str, typing.Any] = Field(default_factory=dict)
    # Scripted teachers only: how faithful the caption is (share of facts reported correctly) and how
    # chatty the reasoner is. The paper's teacher never sees the image; this gap is what iteration 2 can
    # close (docs/findings.md, "Learning on CPU").
    fidelity: float = Field(1.0, ge=0, le=1)
    omit_rate: float = Field(0.0, ge=0, le=1)
    reflection_rate: float = Field(0.0, ge=0, le=1)
    verbosity: int = Field(1, ge=0, le=3)
    stepwise: bool = False  # chart and counting chains whose steps copy from a few tokens back (ScriptedReasoner)
    # What a scripted chain's <answer> holds for a multiple-choice question: the option letter, or the option's
    # text. The prompt asks for neither in particular, and the scorer (like MathVista's) accepts both.
    answer_with: AnswerWith = "letter"
    tiny: TinyDims | None = None

    @model_validator(mode="after")
    def _scripted_is_local(self) -> ModelSpec:
        if self.name == "tiny" and self.tiny is None:
            self.tiny = TinyDims()
        if (self.engine_options or self.engine_env) and self.backend != "vllm":
            raise ValueError(f"engine_options and engine_env are vLLM's, but backend is {self.backend!r}")
        taken = sorted(set(self.engine_options) & SET_FOR_VLLM)
        if taken:
            raise ValueError(f"engine_options {taken} are set from other keys (the model's own, data.image_*_pixels, "
                             "seed): give them there")
        return self

    @property
    def missing_folder(self) -> bool:
        """Named by a path (a name that cannot be a hub id, owner/name) whose folder is not on this machine."""
        if self.backend == "scripted" or self.name == "tiny" or Path(self.name).is_dir():
            return False
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(self.name)
        except HFValidationError:
            return True
        return False


class Models(Section):
    captioner: ModelSpec
    reasoner: ModelSpec
    student: ModelSpec


# --- data ----------------------------------------------------------------------------------------------


class SourceSpec(Section):
    """A training source: `synthetic/<family>` (procedural) or a hub source name from ovlt.ground.hub."""

    name: str
    weight: float = Field(1.0, gt=0)

    @field_validator("name")
    @classmethod
    def _known_source(cls, name: str) -> str:
        if name not in SOURCE_NAMES:
            raise ValueError(f"unknown data source {name!r}; known: {', '.join(SOURCE_NAMES)}")
        return name


class Procedural(Section):
    image_size: int = Field(112, ge=28)
    # Fixed difficulty level per procedural family (e.g. {chart: 1}); a family not named draws every level.
    difficulty: dict[str, int] = Field(default_factory=dict)


class Data(Section):
    sources: list[SourceSpec] = Field(min_length=1)
    procedural: Procedural = Field(default_factory=Procedural)
    heldout_size: int = Field(500, ge=1)
    # Pixel bounds of every image that meets a Qwen2.5-VL processor (SFT, GRPO, sampling, evaluation), saved with
    # each checkpoint's processor. 3,136 is Qwen2.5-VL's own minimum.
    image_min_pixels: int = Field(3136, gt=0)
    image_max_pixels: int = Field(262144, gt=0)
    # A local folder holding hub data set repositories as <hub_root>/<owner>/<name> (a mirror or a pre-download);
    # None: the Hugging Face hub.
    hub_root: str | None = None

    @model_validator(mode="after")
    def _pixel_bounds_ordered(self) -> Data:
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError(f"image_min_pixels ({self.image_min_pixels}) > image_max_pixels ({self.image_max_pixels})")
        return self


class Decontaminate(Section):
    enabled: bool = True
    benchmarks: list[str] = Field(default_factory=list)
    phash_max_distance: int = Field(4, ge=0, le=64)
    ngram: int = Field(8, ge=1)
    ngram_overlap: float = Field(0.5, gt=0, le=1)


# --- teacher stages ------------------------------------------------------------------------------------


class Sampling(Section):
    n: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    # Sample among the k likeliest tokens only; 0: no such limit. The authors' self-generation decodes with top-k 1
    # at temperature 0.01 (docs/recipes.md).
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(256, ge=1)


PAPER_CAPTION_PROMPT = (
    "Please provide a detailed description of this image that could help another AI model understand it "
    "completely. Be specific and comprehensive while maintaining natural language flow."
)


class Caption(Section):
    prompt: str = PAPER_CAPTION_PROMPT
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=512))


# DeepSeek's usage notes for the R1 distills: no system prompt, and for math "Please reason step by step, and put your
# final answer within \boxed{}." ovlt writes the student's tags itself (`reasoner_chain`); the paper's prompt is not
# released (docs/recipes.md).
R1_DISTILL_PROMPT = (
    "You cannot see the image; here is a description of it.\nImage description: {caption}\n\n{question}\n"
    "Please reason step by step, and put your final answer within \\boxed{}."
)
DISTILL_PROMPT_FIELDS = ("{caption}", "{question}")


class Distill(Section):
    # The reasoner's one user turn: {caption} and {question} (with lettered options) are filled in.
    prompt: str = R1_DISTILL_PROMPT
    sampling: Sampling = Field(default_factory=lambda: Sampling(n=4, temperature=0.6, top_p=0.95, max_new_tokens=4096))

    @field_validator("prompt")
    @classmethod
    def _prompt_fields(cls, prompt: str) -> str:
        missing = [f for f in DISTILL_PROMPT_FIELDS if prompt.count(f) != 1]
        if missing:
            raise ValueError(f"the distill prompt must hold each of {', '.join(DISTILL_PROMPT_FIELDS)} once; "
                             f"{', '.join(missing)} is not there once")
        return prompt


class Select(Section):
    # The paper keeps the shortest correct chain of k; the authors' released self-generation script keeps the second
    # longest (the longest dropped; a lone correct chain kept); the others are there to measure the rule.
    rule: Literal["shortest_correct", "second_longest_correct", "longest_correct", "first_correct",
                  "random_correct"] = "shortest_correct"


DEFAULT_REFLECTION_MARKERS = ["Wait,", "But wait,", "But the question", "Wait a second", "Hold on,", "Let me double-check"]


class Filter(Section):
    rule: Literal["cut_reflections", "max_words", "none"] = "cut_reflections"
    markers: list[str] = Field(default_factory=lambda: list(DEFAULT_REFLECTION_MARKERS))
    # Chains longer than this many words are dropped ("overly verbose", the paper's Table 3): the rule `max_words`
    # needs it; under `cut_reflections` it applies to the cut chain when set; None: no bound.
    max_words: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _max_words_given(self) -> Filter:
        if self.rule == "max_words" and self.max_words is None:
            raise ValueError("rule max_words needs max_words (the most words a kept chain may have)")
        return self


class SelfGenerate(Section):
    sampling: Sampling = Field(default_factory=lambda: Sampling(n=4, temperature=1.0, top_p=0.99, max_new_tokens=2048))
    # Upper bound on each named source's share of the self-generated SFT set (sources not named are uncapped;
    # empty: no bound). Rare sources are kept whole and common ones capped, never cut down to the rarest.
    max_share: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shares_are_shares(self) -> SelfGenerate:
        for source, share in self.max_share.items():
            if not 0 < share <= 1:
                raise ValueError(f"max_share[{source!r}] = {share} must be in (0, 1]")
        return self


# --- training ------------------------------------------------------------------------------------------


class Lora(Section):
    r: int = Field(64, ge=1)
    alpha: int = Field(128, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class Launch(Section):
    """How training runs: in-process (1), or `accelerate launch` with this many processes."""

    num_processes: int = Field(1, ge=1)
    num_machines: int = Field(1, ge=1)
    accelerate_config: str | None = None
    cpu: bool = False


@functools.cache
def _trl_type(kind: object) -> TypeAdapter:
    return TypeAdapter(kind, config=ConfigDict(allow_inf_nan=False))


class TrainerSection(Section):
    """A training section: fields of TRL's config (TRL_FIELDS), passed to it as they are, and the few keys ovlt reads
    itself (OVLT_KEYS). The fields declared here and in SFT and GRPO carry the paper's values as defaults (TRL's
    differ) or are read by ovlt too (the plan, the launcher); any other TRL field may be set and is passed through.
    Keys are checked at load against ovlt.ground.trl_fields, a table of TRL's fields, so that loading a config does
    not import TRL (and torch)."""

    model_config = ConfigDict(extra="allow")

    TRL_FIELDS: ClassVar[dict[str, object]]
    # Read by ovlt, not passed to TRL as they are: TRL lacks them, or ovlt derives TRL arguments from them.
    OVLT_KEYS: ClassVar[frozenset[str]] = frozenset({
        "warmup_ratio",  # TRL's warmup_steps (transformers 5 dropped warmup_ratio; below 1, warmup_steps is a ratio)
        "save_steps", "save_total_limit",  # TRL's save arguments, and 0 steps: no periodic checkpoints
        "launch",
    })
    # TRL arguments ovlt sets itself (ovlt.stages.training.common.trl_arguments says why), refused as keys: each
    # with what it is set from.
    SET_BY_OVLT: ClassVar[dict[str, str]] = {
        "output_dir": "the stage folder",
        "seed": "the top-level seed",
        "data_seed": "the top-level seed",
        "warmup_steps": "warmup_ratio",
        "gradient_checkpointing_kwargs": "gradient_checkpointing",
        "use_cpu": "device and launch.cpu",
        "model_init_kwargs": "device",
        "trust_remote_code": "models.student.trust_remote_code",
        "report_to": "the study's report_to (top level)",
        "save_strategy": "save_steps",
        "save_only_model": "save_steps",
    }

    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    bf16: bool = True
    gradient_checkpointing: bool = False
    # A checkpoint every save_steps optimizer steps (0: none), the last save_total_limit kept; a stage that dies
    # resumes from the newest one.
    save_steps: int = Field(0, ge=0)
    save_total_limit: int = Field(1, ge=1)
    launch: Launch = Field(default_factory=Launch)

    @model_validator(mode="before")
    @classmethod
    def _keys_are_trl_fields(cls, data):
        """Every key but OVLT_KEYS is a TRL field that ovlt does not set, holding a value of the field's type. A field
        not declared here is kept as that type reads it (YAML reads 1e-5 as a string, TRL would get the string); a
        declared one is then validated as declared."""
        if not isinstance(data, dict):
            return data
        checked, errors = dict(data), []
        for key, value in data.items():
            if key in cls.OVLT_KEYS:
                continue
            if key in cls.SET_BY_OVLT:
                reason = PydanticCustomError("set_by_ovlt", "ovlt sets this TRL argument itself, from {source}",
                                             {"source": cls.SET_BY_OVLT[key]})
                errors.append(InitErrorDetails(type=reason, loc=(key,), input=value))
            elif key not in cls.TRL_FIELDS:
                errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=value))
            else:
                try:
                    as_trl_reads_it = _trl_type(cls.TRL_FIELDS[key]).validate_python(value)
                except ValidationError as exc:
                    reason = PydanticCustomError("trl_type", "{reasons}",
                                                 {"reasons": "; ".join(sorted({e["msg"] for e in exc.errors()}))})
                    errors.append(InitErrorDetails(type=reason, loc=(key,), input=value))
                    continue
                if key not in cls.model_fields:
                    checked[key] = as_trl_reads_it
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return checked

    def passed_to_trl(self) -> dict:
        """The section's TRL arguments as they are: every key but OVLT_KEYS (fields not set keep TRL's defaults)."""
        return self.model_dump(exclude=set(self.OVLT_KEYS))


class SFT(TrainerSection):
    """TRL's SFTConfig, and how the student is fine-tuned (the paper: the whole language model, vision frozen)."""

    TRL_FIELDS = trl_fields.SFT_CONFIG
    OVLT_KEYS = TrainerSection.OVLT_KEYS | {"finetune", "freeze_vision", "lora", "heldout_examples"}
    SET_BY_OVLT = TrainerSection.SET_BY_OVLT | {
        "completion_only_loss": "the paper's recipe (the loss on the completion only)",
        "eval_on_start": "heldout_examples",
    }

    finetune: Literal["full", "lora"] = "full"
    freeze_vision: bool = True
    lora: Lora = Field(default_factory=Lora)
    learning_rate: float = Field(5e-6, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.15, ge=0, lt=1)
    per_device_train_batch_size: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int | None = Field(2048, gt=0)
    logging_steps: int = Field(10, ge=1)
    # Chains held out of training: their loss is measured before and after SFT (0: measure nothing).
    heldout_examples: int = Field(0, ge=0)


def _check_bands(bands: list[tuple[float, float]]) -> None:
    for i, (low, high) in enumerate(bands):
        if not 0 <= low <= high <= 1:
            raise ValueError(f"bands[{i}] = [{low}, {high}] must satisfy 0 <= low <= high <= 1")


class HardSet(Section):
    """A named GRPO set drawn from the same pass rates as the default one (e.g. the authors' medium and hard sets), for
    a GRPO phase (`grpo.phases[].set`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    bands: list[tuple[float, float]] = Field(min_length=1)
    # At most this many problems; None: the iteration's schedule.grpo_problems.
    problems: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _bands_ordered(self) -> HardSet:
        _check_bands(self.bands)
        return self


class SelectHard(Section):
    sampling: Sampling = Field(default_factory=lambda: Sampling(n=8, temperature=1.0, top_p=0.99, max_new_tokens=2048))
    # Pass-rate bands [low, high] kept for GRPO; problems always or never solved carry no GRPO signal.
    bands: list[tuple[float, float]] = Field(default_factory=lambda: [(0.0, 0.5)])
    # Named sets beside the default one, drawn in this order, each from the candidates the sets before it left
    # (disjoint), under the same pass-rate rules (include_never_solved, correct_for_guessing).
    sets: list[HardSet] = Field(default_factory=list)
    include_never_solved: bool = False
    # Band on the pass rate corrected for guessing, (rate - 1/c) / (1 - 1/c) for c options (free-form: as is), so a
    # two-option problem solved 3 times in 6 counts as never solved: its rewards are coin flips, no GRPO signal.
    correct_for_guessing: bool = False

    @model_validator(mode="after")
    def _bands_ordered(self) -> SelectHard:
        _check_bands(self.bands)
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"sets have repeated names: {names}")
        return self


# The reward functions a GRPO run may name (ovlt.scoring.rewards.REWARDS holds them, beside the functions):
# ours, strict answer match and think/answer form; the authors' (their r1v.py), accuracy with a 0.5 penalty for no
# text between </think> and <answer>, and their format score, which they logged and did not reward.
RewardName = Literal["accuracy_reward", "format_reward", "r1v_reward", "r1v_format_reward"]


class GRPOPhase(Section):
    """One phase of a GRPO stage: the `grpo` section with these keys replaced, on a named set of `select_hard.sets`,
    starting from the previous phase's weights (the first from the iteration's SFT checkpoint). A key left out keeps
    the section's value."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    # A name in select_hard.sets; None: the default GRPO set (select_hard.bands).
    set: str | None = None
    num_train_epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=-1)
    freeze_vision: bool | None = None

    def overrides(self) -> dict:
        return {k: v for k, v in self.model_dump(exclude={"name", "set"}).items() if v is not None}


class GRPO(TrainerSection):
    """TRL's GRPOConfig, and the rewards, guard and phases that ovlt adds."""

    TRL_FIELDS = trl_fields.GRPO_CONFIG
    OVLT_KEYS = TrainerSection.OVLT_KEYS | {"reward_funcs", "reward_weights", "format_reward_weight",
                                            "zero_reward_patience", "freeze_vision", "phases"}
    SET_BY_OVLT = TrainerSection.SET_BY_OVLT | {
        "vllm_max_model_length": "models.student.max_model_len",
    }

    num_generations: int = Field(5, ge=2)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.99, gt=0, le=1)
    beta: float = Field(0.01, ge=0)
    learning_rate: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_completion_length: int = Field(2048, ge=1)
    per_device_train_batch_size: int = Field(5, ge=1)
    loss_type: str = "grpo"
    # The rewards, by name; the total is their weighted sum. TRL logs each as rewards/<name>/mean, a weight-0 one too.
    reward_funcs: list[RewardName] = Field(default_factory=lambda: ["accuracy_reward", "format_reward"], min_length=1)
    # One weight per reward function (TRL's reward_weights); None: 1 for accuracy rewards, format_reward_weight for
    # format_reward, 0 for r1v_format_reward (logged, not rewarded, as the authors ran it).
    reward_weights: list[float] | None = None
    format_reward_weight: float = Field(0.0, ge=0)
    # Vision tower and projector frozen during GRPO (the authors' medium phase); a phase may say otherwise.
    freeze_vision: bool = False
    # GRPO in phases, one after another in the one grpo stage (e.g. the authors' medium then hard); empty: one run.
    phases: list[GRPOPhase] = Field(default_factory=list)
    # Stop a run whose accuracy reward is zero for this many first steps (0 disables the guard).
    zero_reward_patience: int = Field(20, ge=0)
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    logging_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _rewards_named_once(self) -> GRPO:
        if len(set(self.reward_funcs)) != len(self.reward_funcs):
            raise ValueError(f"reward_funcs names a function twice: {self.reward_funcs}")
        if self.format_reward_weight and "format_reward" not in self.reward_funcs:
            raise ValueError("format_reward_weight is set but format_reward is not among reward_funcs")
        if self.reward_weights is not None:
            if len(self.reward_weights) != len(self.reward_funcs):
                raise ValueError(f"reward_weights has {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                                 "reward_funcs")
            if self.format_reward_weight:
                raise ValueError("set either reward_weights or format_reward_weight, not both")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phases have repeated names: {names}")
        return self

    def phase_sections(self) -> list[tuple[GRPOPhase | None, GRPO]]:
        """Each phase with the section it trains by (the section with the phase's keys replaced); without phases,
        one (None, the section itself)."""
        if not self.phases:
            return [(None, self)]
        return [(p, self.model_copy(update={**p.overrides(), "phases": []})) for p in self.phases]

    @model_validator(mode="after")
    def _batch_divisible(self) -> GRPO:
        global_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.launch.num_processes
        if global_batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x gradient_accumulation_steps x launch.num_processes = {global_batch} "
                f"is not divisible by num_generations = {self.num_generations} (each prompt needs a whole group)"
            )
        return self


# --- evaluation and schedule ---------------------------------------------------------------------------


ProtocolName = Literal["official", "strict", "authors"]
# The prompt styles whose responses each protocol can score: `authors` reads the \boxed{} answer its own prompt asks
# for; the others read the answer tag of the paper's prompt or the benchmark's own answer formats.
PROTOCOL_PROMPTS = {"official": ("paper", "plain"), "strict": ("paper", "plain"), "authors": ("authors",)}


class Judge(Section):
    """An OpenAI-compatible chat-completions endpoint (e.g. a local vLLM server) that re-checks the free-form answers
    the rules marked wrong, on the benchmark entries that set `judge: true` (the authors re-checked MathVerse so)."""

    base_url: str  # up to the API version, e.g. http://localhost:8000/v1; /chat/completions is appended
    model: str
    api_key_env: str | None = None  # the environment variable holding the API key; None: no key is sent
    timeout_s: float = Field(120.0, gt=0)
    max_tokens: int = Field(1024, ge=1)
    concurrency: int = Field(8, ge=1)  # requests in flight at once


class BenchmarkRef(Section):
    """One generation of a benchmark (its prompt style, greedy decoding) scored by one protocol or several."""

    name: str
    protocol: ProtocolName = "official"
    # Several protocols scoring the same responses (instead of `protocol`); the first is the entry's headline.
    protocols: list[ProtocolName] = Field(default_factory=list)
    prompt: Literal["paper", "plain", "authors"] = "paper"
    # The entry's folder under eval/<checkpoint>/ and its name in summary.json (default: `name`); needed when a
    # benchmark is listed twice, e.g. once with the paper's prompt and once with the authors'.
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    max_new_tokens: int | None = Field(None, ge=1)  # default: evaluation.sampling.max_new_tokens
    judge: bool = False  # re-check wrong free-form answers with evaluation.judge
    limit: int | None = Field(None, ge=1)
    annotations: str | None = None
    images: str | None = None

    @model_validator(mode="after")
    def _protocols_fit_prompt(self) -> BenchmarkRef:
        if self.protocols and "protocol" in self.model_fields_set:
            raise ValueError("give `protocol` (one) or `protocols` (a list), not both")
        if len(set(self.protocols)) != len(self.protocols):
            raise ValueError(f"protocols {self.protocols} names one twice")
        for protocol in self.protocols or [self.protocol]:
            if self.prompt not in PROTOCOL_PROMPTS[protocol]:
                raise ValueError(
                    f"protocol {protocol!r} cannot score responses to the {self.prompt!r} prompt (it scores "
                    f"{' or '.join(PROTOCOL_PROMPTS[protocol])} prompts): list {self.name} again with its own "
                    f"prompt and label for it")
        return self

    @property
    def key(self) -> str:
        """The entry's name in the run folder and summary.json."""
        return self.label or self.name


class SampledEvaluation(Section):
    """Accuracy under sampling and pass@k beside greedy accuracy: `n` samples per item at `temperature` (0: none).
    What GRPO's accuracy reward estimates, where greedy accuracy may not move (docs/findings.md, "The GRPO proof")."""

    n: int = Field(4, ge=0)
    temperature: float = Field(1.0, gt=0)


class Evaluation(Section):
    benchmarks: list[BenchmarkRef] = Field(min_length=1)
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=2048))
    sampled: SampledEvaluation = Field(default_factory=SampledEvaluation)
    bootstrap_samples: int = Field(2000, ge=100)
    judge: Judge | None = None  # off by default

    @model_validator(mode="after")
    def _entries_are_distinct(self) -> Evaluation:
        keys = [b.key for b in self.benchmarks]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"benchmark entries {twice} appear more than once: give each entry of one benchmark "
                             f"its own `label`")
        judged = [b.key for b in self.benchmarks if b.judge]
        if judged and self.judge is None:
            raise ValueError(f"{judged} set `judge: true` but evaluation.judge names no endpoint")
        return self


class IterationPlan(Section):
    """Volumes of one iteration: the problems it may draw for SFT data (and, when set, the SFT examples wanted after
    verification and filtering: drawing stops once they are met), and GRPO candidates and target."""

    sft_problems: int = Field(ge=1)
    sft_examples: int | None = Field(default=None, ge=1)
    grpo_candidates: int = Field(ge=1)
    grpo_problems: int = Field(ge=1)

    @model_validator(mode="after")
    def _target_fits(self) -> IterationPlan:
        if self.grpo_problems > self.grpo_candidates:
            raise ValueError(f"grpo_problems ({self.grpo_problems}) > grpo_candidates ({self.grpo_candidates})")
        if self.sft_examples is not None and self.sft_examples > self.sft_problems:
            raise ValueError(f"sft_examples ({self.sft_examples}) > sft_problems ({self.sft_problems}): each "
                             "example comes from one problem")
        return self


OPERATIONAL = ("data.hub_root", "sft.save_steps", "sft.save_total_limit", "grpo.save_steps", "grpo.save_total_limit",
               "report_to")
# The study's shape: which stages exist (and the run folder's default name), not what any of them computes. Stages
# read them (a checkpoint name is checked against the iterations) and no stage's own sections name them; the
# iterations still reach every fingerprint through the schedule (one entry per iteration), which the data stage
# covers.
STUDY_SHAPE = ("name", "iterations")


class StudyConfig(Section):
    name: str  # the run folder's name, runs/<name>, unless `ovlt reproduce --run` names another
    seed: int = Field(0, ge=0)
    iterations: int = Field(ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    requires_gpu: bool = False
    # Where SFT and GRPO log, besides each stage's log.jsonl: `tensorboard` writes <stage dir>/tb (offline); any other
    # tracker transformers integrates (wandb, trackio, mlflow, ...) is passed to TRL's report_to as named.
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    models: Models
    data: Data
    schedule: list[IterationPlan]
    decontaminate: Decontaminate = Field(default_factory=Decontaminate)
    caption: Caption = Field(default_factory=Caption)
    distill: Distill = Field(default_factory=Distill)
    select: Select = Field(default_factory=Select)
    filter: Filter = Field(default_factory=Filter)
    self_generate: SelfGenerate = Field(default_factory=SelfGenerate)
    sft: SFT = Field(default_factory=SFT)
    select_hard: SelectHard = Field(default_factory=SelectHard)
    grpo: GRPO = Field(default_factory=GRPO)
    evaluation: Evaluation

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        try:
            return safe_name(name, "study name")
        except ArtifactError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _schedule_matches(self) -> StudyConfig:
        if len(self.schedule) != self.iterations:
            raise ValueError(f"schedule has {len(self.schedule)} entries but iterations = {self.iterations}")
        unknown = sorted(set(self.self_generate.max_share) - {s.name for s in self.data.sources})
        if unknown:
            raise ValueError(f"self_generate.max_share names {unknown}, which are not among data.sources")
        sets = {s.name for s in self.select_hard.sets}
        for phase in self.grpo.phases:
            if phase.set is not None and phase.set not in sets:
                raise ValueError(f"grpo.phases {phase.name!r} trains on set {phase.set!r}, which is not among "
                                 f"select_hard.sets {sorted(sets)}")
        return self

    def section(self, *paths: str) -> dict:
        """The JSON-able values of the named sections (dotted paths): what a stage's fingerprint covers.

        Settings that change where things are read from or how often a checkpoint is kept, not what a stage
        computes (OPERATIONAL), are left out: moving to a hub mirror or saving more often mid-study redoes nothing.
        """
        dumped = self.model_dump(mode="json")
        for path in OPERATIONAL:
            *parents, leaf = path.split(".")
            node = dumped
            for key in parents:
                node = node[key]
            node.pop(leaf)
        out = {}
        for path in paths:
            node = dumped
            for key in path.split("."):
                node = node[key] if not isinstance(node, list) else node[int(key)]
            out[path] = node
        return out

    @property
    def needs_hub(self) -> bool:
        """Whether the study reads anything from the Hugging Face hub: a model that is neither built locally,
        scripted nor a local folder, or a data source or benchmark with neither local files nor `data.hub_root`."""
        models = [m for m in (self.models.captioner, self.models.reasoner, self.models.student)
                  if m.backend != "scripted" and m.name != "tiny"]
        if any(not Path(m.name).is_dir() for m in models):
            return True
        if self.data.hub_root is not None:
            return False
        local = {b.name for b in self.evaluation.benchmarks if b.annotations} | {"synthetic"}
        return (any(not s.name.startswith("synthetic/") for s in self.data.sources)
                or any(b.name not in local for b in self.evaluation.benchmarks)
                or (self.decontaminate.enabled and any(b not in local for b in self.decontaminate.benchmarks)))

    def missing_models(self) -> list[str]:
        """A problem line for each model whose local folder is not on this machine, for the commands to refuse before
        any work starts: a mistyped path would otherwise fail hours into the study, when the stage that loads it
        begins. Loading does not check it: a config may name folders built later (configs/rehearsal.yaml names the
        stand-ins `python -m ovlt.rehearsal` builds)."""
        return [f"models.{role}.name: {spec.name!r} is neither an existing folder nor a hub id (owner/name); build or "
                "download the model first" for role in ("captioner", "reasoner", "student")
                if (spec := getattr(self.models, role)).missing_folder]

    @property
    def uses_scripted_teacher(self) -> bool:
        return "scripted" in (self.models.captioner.backend, self.models.reasoner.backend)


class ConfigError(ValueError):
    """A config file that cannot describe a study; the message names the file and every bad key."""


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s) in the study config"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (typo?)")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            got = item.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {key}: {item['msg']}{shown}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


EXTENDS = "extends"  # a config's key naming the config it changes (a path relative to it)


def _read_yaml(path: Path) -> dict:
    """One config file's own top-level mapping, as written (its `extends` unresolved)."""
    try:
        with open(path, encoding="utf-8") as stream:  # a stream: YAML's messages then name the file
            raw = yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a readable YAML file: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def read_mapping(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file's keys, merged over those of the config it `extends` (and so on down the chain), unvalidated.

    `extends: tiny.yaml` makes a config a short list of what differs from another, so that a variant (a longer run,
    another seed) does not copy every other setting and drift from it."""
    path = Path(path)
    raw = _read_yaml(path)
    if EXTENDS not in raw:
        return raw
    parent = raw.pop(EXTENDS)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: {EXTENDS}: a config file's path (relative to this file), got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    chain = (*_seen, path.resolve())
    if parent_path in chain:
        raise ConfigError(f"{path}: {EXTENDS}: {parent!r} makes a cycle "
                          f"({' -> '.join(str(p) for p in (*chain, parent_path))})")
    return _merge(read_mapping(parent_path, chain), raw)


def resolved_text(path: str | Path) -> str:
    """The config as a run folder keeps it (runs/<run>/config.yaml): the file itself, comments and all, or, when it
    `extends` another, every key it resolves to, since the relative path would not resolve from the run folder."""
    path = Path(path)
    if EXTENDS not in _read_yaml(path):
        return path.read_text(encoding="utf-8")
    return (f"# {path.name} resolved: its own keys merged over those of the config it extends\n"
            + yaml.safe_dump(read_mapping(path), sort_keys=False, allow_unicode=True))


def load_config(path: str | Path, overrides: dict | None = None) -> StudyConfig:
    """Read and validate a study config; `overrides` (nested dict) is merged over the file's values."""
    path = Path(path)
    raw = read_mapping(path)
    if overrides:
        raw = _merge(raw, overrides)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None


def overrides_from(pairs: list[str]) -> dict:
    """Command-line `--set KEY=VALUE` pairs as `load_config` overrides; values are read as YAML.

    ["sft.max_steps=2000", "grpo.beta=0"] -> {"sft": {"max_steps": 2000}, "grpo": {"beta": 0}}
    """
    tree: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return tree


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
