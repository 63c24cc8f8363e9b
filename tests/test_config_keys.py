"""The config's keys: the `sft` and `grpo` sections speak TRL (checked against the installed TRL's dataclasses), and
every key of the whole schema is read by the code.

`python tests/test_config_keys.py` regenerates ovlt/ground/trl_fields.py from the installed TRL."""

from __future__ import annotations

import ast
import dataclasses
import enum
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter

from ovlt.ground import trl_fields
from ovlt.ground.config import (
    GRPO,
    SFT,
    Caption,
    ConfigError,
    Sampling,
    StudyConfig,
    TrainerSection,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]
TRL_FIELDS_MODULE = REPO / "ovlt" / "ground" / "trl_fields.py"
COMMITTED = ["tiny", "openvlthinker-7b", "rehearsal", "openvlthinker-7b-released", "rehearsal-released"]
# TRL fields that ovlt derives from keys of its own of the same name, so a section declares them among OVLT_KEYS.
DERIVED = {"save_steps", "save_total_limit", "reward_weights"}


# --- the committed table of TRL's fields -------------------------------------------------------------------------


def _type_source(annotation, enums: dict[str, str]) -> str:
    """A TRL field's type as source text of builtins, Any and Literal; an enum becomes a named Literal of its values
    (recorded in `enums`), since TRL takes the enum's values as strings and rejects others."""
    if annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if typing.Any in args:
            return "Any"
        if any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args):
            args = tuple(a for a in args if a is not str)  # `SomeEnum | str`: a string only as one of the values
        parts = [_type_source(a, enums) for a in args if a is not type(None)]
        return " | ".join(parts + ["None"] * (type(None) in args))
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_source(a, enums) for a in args)}]" if args else origin.__name__
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enums[annotation.__name__] = f"Literal[{', '.join(repr(m.value) for m in annotation)}]"
        return annotation.__name__
    if annotation in (bool, int, float, str, dict, list):
        return annotation.__name__
    return "Any"  # Any, or a class (e.g. accelerate's ParallelismConfig) that a YAML file cannot spell


def render_trl_fields() -> str:
    """The source of ovlt/ground/trl_fields.py for the installed TRL."""
    import trl

    enums: dict[str, str] = {}
    sft = {f.name: _type_source(f.type, enums) for f in dataclasses.fields(trl.SFTConfig)}
    grpo = {f.name: _type_source(f.type, enums) for f in dataclasses.fields(trl.GRPOConfig)}
    shared = {name: kind for name, kind in sft.items() if grpo.get(name) == kind}

    def table(fields: dict[str, str]) -> str:
        return "".join(f'    "{name}": {kind},\n' for name, kind in sorted(fields.items()))

    sft_own = {name: kind for name, kind in sft.items() if name not in shared}
    grpo_own = {name: kind for name, kind in grpo.items() if name not in shared}
    return (
        f'"""The fields of TRL\'s SFTConfig and GRPOConfig with their types: what the config\'s `sft` and `grpo` sections\n'
        f'may hold and pass through (ovlt.ground.config.TrainerSection), known without importing TRL and torch.\n\n'
        f'GENERATED from TRL {trl.__version__} by `python tests/test_config_keys.py`; tests/test_config_keys.py fails when\n'
        f'it differs from the installed TRL. An enum field is a Literal of its values (TRL takes them as strings and\n'
        f'rejects others); a type that YAML cannot spell is Any."""\n\n'
        f"from typing import Any, Literal\n\n"
        + "".join(f"{name} = {values}\n" for name, values in sorted(enums.items()))
        + "\n# Fields both configs have, with the same type (most are transformers' TrainingArguments).\n"
        f"SHARED: dict[str, object] = {{\n{table(shared)}}}\n\n"
        f"SFT_CONFIG: dict[str, object] = SHARED | {{\n{table(sft_own)}}}\n\n"
        f"GRPO_CONFIG: dict[str, object] = SHARED | {{\n{table(grpo_own)}}}\n"
    )


def test_the_trl_field_table_is_the_installed_trls():
    import trl

    assert TRL_FIELDS_MODULE.read_text() == render_trl_fields(), \
        "ovlt/ground/trl_fields.py differs from the installed TRL: run `python tests/test_config_keys.py`"
    assert set(trl_fields.SFT_CONFIG) == {f.name for f in dataclasses.fields(trl.SFTConfig)}
    assert set(trl_fields.GRPO_CONFIG) == {f.name for f in dataclasses.fields(trl.GRPOConfig)}


# --- the sft and grpo sections speak TRL ----------------------------------------------------------------------------


@pytest.mark.parametrize("section", [SFT, GRPO], ids=["sft", "grpo"])
def test_a_trainer_section_is_trl_fields_and_a_few_keys_of_ovlt(section):
    declared = set(section.model_fields)
    assert section.OVLT_KEYS <= declared  # each of ovlt's own keys has a field, a type and a default
    # TRL lacks them, except those that ovlt derives TRL's arguments from (the save strategy, the reward weights).
    assert section.OVLT_KEYS & set(section.TRL_FIELDS) == DERIVED & set(section.model_fields)
    for name in declared - section.OVLT_KEYS:
        assert name in section.TRL_FIELDS, f"{section.__name__}.{name} is neither a TRL field nor in OVLT_KEYS"
        default = section.model_fields[name].get_default(call_default_factory=True)
        TypeAdapter(section.TRL_FIELDS[name]).validate_python(default)  # the paper's default is a value TRL takes
    assert set(section.SET_BY_OVLT) <= set(section.TRL_FIELDS) and not set(section.SET_BY_OVLT) & declared


@pytest.fixture
def bf16_anywhere(monkeypatch):
    # The paper config asks for bf16 on CUDA; transformers refuses to build such arguments on a CPU-only machine.
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)


def trainer_args(cfg: StudyConfig):
    from ovlt.stages.training.grpo import grpo_args
    from ovlt.stages.training.sft import sft_args

    return {"sft": sft_args(cfg, "/tmp/trainer"), "grpo": grpo_args(cfg, "/tmp/trainer")}


@pytest.mark.parametrize("name", COMMITTED)
def test_every_passed_key_lands_in_trls_config_and_ovlt_sets_the_rest(name, bf16_anywhere, monkeypatch):
    cfg = load_config(REPO / "configs" / f"{name}.yaml", {"sft": {"save_steps": 5}, "grpo": {"save_steps": 5}})
    for stage, args in trainer_args(cfg).items():
        passed = getattr(cfg, stage).passed_to_trl()
        section = getattr(cfg, stage)
        assert set(passed) == (set(type(section).model_fields) | set(section.model_extra)) - section.OVLT_KEYS
        for key, value in passed.items():
            assert getattr(args, key) == value, f"{stage}.{key}"
    # The keyword arguments themselves: the passed keys, and exactly those that the section refuses as set by ovlt
    # (and those derived from keys of ovlt's: the save arguments, the reward weights).
    monkeypatch.setattr("ovlt.stages.training.sft.SFTConfig", dict)
    monkeypatch.setattr("ovlt.stages.training.grpo.GRPOConfig", dict)
    for stage, kwargs in trainer_args(cfg).items():
        section = getattr(cfg, stage)
        assert set(kwargs) - set(section.passed_to_trl()) == set(section.SET_BY_OVLT) | (DERIVED & set(type(section).model_fields))


# Today's TRL arguments for the committed configs, a few of each (the whole SFTConfig / GRPOConfig of the three was
# compared field by field before and after the sections started passing TRL's fields through).
EXPECTED = {
    "tiny": {"sft": {"learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "max_steps": 1300,
                     "per_device_train_batch_size": 16, "bf16": False, "max_length": None, "logging_steps": 25,
                     "use_cpu": True, "save_strategy": "no", "eval_on_start": True, "completion_only_loss": True},
             "grpo": {"learning_rate": 3e-5, "lr_scheduler_type": "constant", "warmup_steps": 0.0, "max_steps": 90,
                      "num_generations": 8, "beta": 0.04, "temperature": 1.0, "top_p": 1.0, "weight_decay": 0.0,
                      "max_completion_length": 80, "per_device_train_batch_size": 32, "loss_type": "grpo",
                      "reward_weights": [1.0, 0.5], "use_vllm": False, "save_strategy": "no"}},
    "openvlthinker-7b": {
        "sft": {"learning_rate": 5e-6, "warmup_steps": 0.15, "num_train_epochs": 1.0, "max_steps": -1,
                "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "bf16": True,
                "gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False},
                "max_length": 2048, "seed": 42, "save_strategy": "steps", "save_steps": 200, "save_total_limit": 1},
        "grpo": {"learning_rate": 1e-6, "weight_decay": 0.01, "num_generations": 5, "beta": 0.01, "top_p": 0.99,
                 "max_completion_length": 2048, "gradient_accumulation_steps": 4, "use_vllm": True,
                 "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 8192,
                 "reward_weights": [1.0, 0.0], "save_steps": 20}},
    "rehearsal": {
        "sft": {"learning_rate": 5e-6, "warmup_steps": 0.15, "max_steps": 4, "bf16": False, "max_length": 2048,
                "eval_on_start": True, "save_steps": 2, "use_cpu": True},
        "grpo": {"learning_rate": 1e-6, "max_steps": 4, "max_completion_length": 64, "bf16": False,
                 "use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": 4096,
                 "gradient_checkpointing": True, "save_steps": 2, "use_cpu": True}},
    # The released scripts' GRPO (docs/recipes.md): rollouts of 512 prompts x 5, updates of 128 prompts.
    "openvlthinker-7b-released": {
        "grpo": {"learning_rate": 1e-6, "weight_decay": 0.01, "lr_scheduler_type": "constant", "warmup_steps": 0.0,
                 "num_generations": 5, "temperature": 1.0, "top_p": 0.99, "beta": 0.01, "loss_type": "bnpo",
                 "max_completion_length": 2048, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 40,
                 "generation_batch_size": 2560, "max_grad_norm": 1.0, "reward_weights": [1.0, 0.0],
                 "vllm_max_model_length": 8192, "use_vllm": True}},
    "rehearsal-released": {
        "grpo": {"per_device_train_batch_size": 5, "gradient_accumulation_steps": 1, "generation_batch_size": 20,
                 "loss_type": "bnpo", "reward_weights": [1.0, 0.0], "use_cpu": True, "max_steps": -1,
                 "use_vllm": True, "vllm_mode": "colocate"}},
}


@pytest.mark.parametrize("name", COMMITTED)
def test_the_committed_configs_give_todays_trl_arguments(name, bf16_anywhere, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # `device: auto` trains on CPU here, as today
    args = trainer_args(load_config(REPO / "configs" / f"{name}.yaml"))
    for stage, expected in EXPECTED[name].items():
        assert {key: getattr(args[stage], key) for key in expected} == expected, stage


def test_any_trl_field_may_be_set_and_changes_the_fingerprint(bf16_anywhere):
    path = REPO / "configs" / "tiny.yaml"
    plain = load_config(path)
    assert set(plain.grpo.model_dump()) == set(GRPO.model_fields)  # an unchanged config dumps as before
    # YAML (and --set) read 1e-3 as a string; TRL gets the number.
    tuned = load_config(path, {"grpo": {"epsilon_high": "1e-3", "num_iterations": 2}, "sft": {"max_grad_norm": 0.5}})
    args = trainer_args(tuned)
    assert (args["grpo"].epsilon_high, args["grpo"].num_iterations, args["sft"].max_grad_norm) == (1e-3, 2, 0.5)
    assert tuned.section("grpo") != plain.section("grpo") and tuned.section("sft") != plain.section("sft")
    assert StudyConfig.model_validate(tuned.model_dump(mode="json")) == tuned  # as a training job rebuilds it


def test_trainer_keys_fail_at_load_naming_the_key(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text((REPO / "configs" / "tiny.yaml").read_text())
    bad = {"sft": {"seed": 1, "optim": "adam", "packing": "sometimes"},
           "grpo": {"max_prompt_length": 6144, "packing": True}}
    with pytest.raises(ConfigError) as info:
        load_config(path, bad)
    message = str(info.value)
    assert str(path) in message
    assert "sft.seed: ovlt sets this TRL argument itself, from the top-level seed" in message
    assert "sft.optim: Input should be 'adamw_torch'" in message  # a value TRL would reject
    assert "sft.packing: Input should be a valid boolean" in message
    assert "grpo.max_prompt_length: unknown key" in message  # TRL 1.16 dropped it
    assert "grpo.packing: unknown key" in message  # an SFTConfig field, not a GRPOConfig one


# --- every key is read ----------------------------------------------------------------------------------------------

# Sections whose fields the code reads other than by name, each with the text that reads them and why.
DYNAMIC_READS = {
    "TinyDims": ("tiny.model_dump()", "passed whole to build_tiny as the tiny student's dimensions"),
}


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def schema_keys(model: type[BaseModel], prefix: str = "", seen: set | None = None) -> list[tuple[str, type, str]]:
    """(dotted path, section class, key) of every key in the schema, nested sections included; a section class met
    twice (e.g. ModelSpec for each model) is listed once."""
    seen = set() if seen is None else seen
    keys = []
    for name, field in model.model_fields.items():
        if (model, name) in seen:
            continue
        seen.add((model, name))
        keys.append((prefix + name, model, name))
        for inner in _models_in(field.annotation):
            keys += schema_keys(inner, f"{prefix}{name}.", seen)
    return keys


def unread_keys(schema: type[BaseModel], sources: list[Path]) -> list[str]:
    """Keys of `schema` that no source reads: a key counts as read when its name is read as an attribute (`x.key`),
    when it is a trainer section's TRL field and `passed_to_trl` is called, or when its section is in DYNAMIC_READS
    and the reading text is there. By name, not by type: it finds a key that nothing reads under any name."""
    attributes, text = set(), ""
    for path in sources:
        source = path.read_text()
        text += source
        attributes |= {node.attr for node in ast.walk(ast.parse(source))
                       if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)}
    unread = []
    for path, section, key in schema_keys(schema):
        passed = (isinstance(section, type) and issubclass(section, TrainerSection) and key not in section.OVLT_KEYS
                  and "passed_to_trl" in attributes)
        dynamic = section.__name__ in DYNAMIC_READS and DYNAMIC_READS[section.__name__][0] in text
        if key not in attributes and not passed and not dynamic:
            unread.append(path)
    return unread


def library_sources() -> list[Path]:
    """The library, without the config's own module (a validator reading a key does not make the study use it)."""
    return [p for p in sorted((REPO / "ovlt").rglob("*.py")) if p.name not in ("config.py", "trl_fields.py")]


def test_every_config_key_is_read():
    assert unread_keys(StudyConfig, library_sources()) == []


def test_the_reader_check_finds_an_unread_key():
    class UnreadSampling(Sampling):
        never_read_anywhere: int = 0

    class UnreadCaption(Caption):
        sampling: UnreadSampling = UnreadSampling()

    class UnreadSFT(SFT):
        OVLT_KEYS = SFT.OVLT_KEYS | {"unread_ovlt_knob"}
        unread_ovlt_knob: int = 0

    class UnreadStudy(StudyConfig):
        caption: UnreadCaption = UnreadCaption()
        sft: UnreadSFT = UnreadSFT()
        also_never_read: bool = False

    assert unread_keys(UnreadStudy, library_sources()) == [
        "caption.sampling.never_read_anywhere", "sft.unread_ovlt_knob", "also_never_read"]
    # A dynamic read counts only while its reading text is there.
    assert "models.captioner.tiny.hidden_size" in unread_keys(StudyConfig, [REPO / "ovlt" / "stages" / "training" / "launch.py"])


if __name__ == "__main__":
    TRL_FIELDS_MODULE.write_text(render_trl_fields())
    print(f"wrote {TRL_FIELDS_MODULE}")
