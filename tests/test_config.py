"""The study config: both shipped configs load; every kind of bad value is named with its key and file."""

from pathlib import Path

import pytest
import yaml

from ovlt.ground.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert len(cfg.schedule) == cfg.iterations
    assert cfg.evaluation.benchmarks


def test_paper_config_has_paper_values():
    cfg = load_config(REPO / "configs/openvlthinker-7b.yaml")
    assert cfg.models.captioner.name == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.models.reasoner.name == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert cfg.models.student.name == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert cfg.distill.sampling.n == 4
    assert (cfg.sft.learning_rate, cfg.sft.lr_scheduler_type, cfg.sft.warmup_ratio) == (5e-6, "cosine", 0.15)
    assert cfg.sft.freeze_vision and cfg.sft.finetune == "full" and cfg.sft.max_length == 2048
    global_batch = cfg.sft.per_device_train_batch_size * cfg.sft.gradient_accumulation_steps * cfg.sft.launch.num_processes
    assert global_batch == 32
    g = cfg.grpo
    assert (g.num_generations, g.temperature, g.top_p, g.beta, g.learning_rate, g.weight_decay) == (5, 1.0, 0.99, 0.01, 1e-6, 0.01)
    assert g.max_completion_length == 2048
    assert cfg.iterations == 3
    assert [s.sft_examples for s in cfg.schedule] == [25000, 5000, 5000]  # after verification and filtering
    assert all(s.sft_problems > s.sft_examples for s in cfg.schedule)  # drawn until they are met
    assert all(s.grpo_problems == 5000 for s in cfg.schedule)
    assert cfg.data.image_max_pixels == 262144
    assert {s.name for s in cfg.data.sources} == {"figureqa", "geos", "geometry3k", "tabmwp", "vizwiz", "ai2d"}


def _write(tmp_path, mutate):
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    mutate(raw)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


BAD = [
    ("typo at top level", lambda r: r.update(iteratons=2), "iteratons: unknown key"),
    ("typo in a section", lambda r: r["grpo"].update(lerning_rate=1e-5), "grpo.lerning_rate: unknown key"),
    ("wrong type", lambda r: r["sft"].update(max_steps="many"), "sft.max_steps"),
    ("negative learning rate", lambda r: r["grpo"].update(learning_rate=-1.0), "grpo.learning_rate"),
    ("unknown backend", lambda r: r["models"]["student"].update(backend="onnx"), "models.student.backend"),
    ("missing key", lambda r: r.pop("models"), "models: required key is missing"),
    ("batch not divisible by group", lambda r: r["grpo"].update(per_device_train_batch_size=30), "not divisible by num_generations"),
    ("schedule length", lambda r: r.update(iterations=3), "schedule has 2 entries but iterations = 3"),
    ("band out of order", lambda r: r["select_hard"].update(bands=[[0.9, 0.1]]), "bands[0]"),
    ("target above candidates", lambda r: r["schedule"][0].update(grpo_problems=5000), "schedule.0"),
    ("probability above 1", lambda r: r["models"]["captioner"].update(fidelity=1.5), "models.captioner.fidelity"),
    ("rotary sections", lambda r: r["models"]["student"]["tiny"].update(mrope_section=[8, 8, 8]),
     "models.student.tiny"),
    ("unknown protocol", lambda r: r["evaluation"]["benchmarks"][0].update(protocol="lenient"), "evaluation.benchmarks.0.protocol"),
    ("distill prompt without the caption", lambda r: r.setdefault("distill", {}).update(prompt="Q: {question}"),
     "distill.prompt: Value error, the distill prompt must hold each of {caption}, {question} once; {caption}"),
]


@pytest.mark.parametrize("mutate,expected", [(m, e) for _, m, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_config_names_key_and_file(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_every_bad_key_reported_at_once(tmp_path):
    def two_typos(raw):
        raw["sft"]["lerning_rate"] = 1.0
        raw["grpo"]["num_generatons"] = 4

    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, two_typos))
    assert "sft.lerning_rate" in str(info.value) and "grpo.num_generatons" in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        load_config(tmp_path / "broken.yaml")


def test_overrides_are_validated_too(tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml", overrides={"sft": {"max_steps": 7}})
    assert cfg.sft.max_steps == 7
    with pytest.raises(ConfigError, match="sft.max_stepz"):
        load_config(REPO / "configs/tiny.yaml", overrides={"sft": {"max_stepz": 7}})


def test_operational_settings_do_not_redo_stages(repo):
    """A hub mirror or another checkpoint interval mid-study changes no stage's fingerprint; a result setting does."""
    from ovlt.ground.config import load_config

    path = repo / "configs" / "openvlthinker-7b.yaml"
    base = load_config(path)
    moved = load_config(path, {"data": {"hub_root": "/mirror"}, "sft": {"save_steps": 50}, "grpo": {"save_total_limit": 3}})
    for sections in (("seed", "data", "schedule"), ("sft", "models.student"), ("grpo", "models.student")):
        assert moved.section(*sections) == base.section(*sections)
    assert load_config(path, {"sft": {"learning_rate": 1e-5}}).section("sft") != base.section("sft")


def test_released_config_says_what_the_released_scripts_ran():
    cfg = load_config(REPO / "configs/openvlthinker-7b-released.yaml")
    g = cfg.grpo
    assert (g.num_generations, g.temperature, g.top_p, g.beta, g.learning_rate, g.weight_decay) == (
        5, 1.0, 0.99, 0.01, 1e-6, 0.01)
    assert g.lr_scheduler_type == "constant" and g.warmup_ratio == 0 and g.max_completion_length == 2048
    update = g.per_device_train_batch_size * g.gradient_accumulation_steps * g.launch.num_processes
    assert (g.generation_batch_size // g.num_generations, update // g.num_generations) == (512, 128)
    assert [(p.name, p.set, p.num_train_epochs, p.freeze_vision) for p in g.phases] == [
        ("medium", "medium", 5, True), ("hard", "hard", 15, False)]
    assert (g.reward_funcs, g.reward_weights) == (["r1v_reward", "r1v_format_reward"], [1.0, 0.0])
    assert (cfg.data.image_min_pixels, cfg.data.image_max_pixels) == (262144, 262144) and cfg.models.student.max_model_len == 6144 + 2048
    s = cfg.self_generate.sampling
    assert (s.temperature, s.top_k, s.max_new_tokens, cfg.select.rule) == (0.01, 1, 2048, "second_longest_correct")
    # Everything else is the paper config's.
    paper = load_config(REPO / "configs/openvlthinker-7b.yaml")
    for section in ("models.captioner", "models.reasoner", "data.sources", "distill", "filter", "sft", "evaluation",
                    "schedule"):
        assert cfg.section(section) == paper.section(section), section


@pytest.mark.parametrize(("overrides", "message"), [
    ({"filter": {"rule": "max_words"}}, "rule max_words needs max_words"),
    ({"select_hard": {"sets": [{"name": "a", "bands": [[0.5, 0.2]]}]}}, "must satisfy 0 <= low <= high <= 1"),
    ({"select_hard": {"sets": [{"name": "a", "bands": [[0, 1]]}, {"name": "a", "bands": [[0, 1]]}]}},
     "repeated names"),
    ({"self_generate": {"sampling": {"top_k": -1}}}, "greater than or equal to 0"),
])
def test_bad_recipe_settings_are_named(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs/tiny.yaml", overrides)


def test_extends_merges_over_the_named_config_and_the_run_copy_resolves(tmp_path):
    from ovlt.ground.config import resolved_text

    variant = tmp_path / "longer.yaml"
    variant.write_text(f"extends: {REPO / 'configs/tiny.yaml'}\nname: longer\ngrpo: {{max_steps: 7}}\n")
    base, cfg = load_config(REPO / "configs/tiny.yaml"), load_config(variant)
    assert (cfg.name, cfg.grpo.max_steps) == ("longer", 7)
    assert cfg.grpo.beta == base.grpo.beta and cfg.sft == base.sft  # everything else is the extended config's
    copy = tmp_path / "run" / "config.yaml"  # a run folder, where a relative `extends` would not resolve
    copy.parent.mkdir()
    copy.write_text(resolved_text(variant))
    assert load_config(copy) == cfg
    assert resolved_text(REPO / "configs/tiny.yaml") == (REPO / "configs/tiny.yaml").read_text()  # comments kept


def test_extends_cycles_and_bad_values_are_named(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: extends: 'a\.yaml' makes a cycle \(.*a\.yaml -> .*b\.yaml -> .*a\.yaml\)"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: [tiny.yaml]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends: a config file's path"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: config file not found"):
        load_config(tmp_path / "d.yaml")


def test_vllm_engine_settings_on_another_backend_are_named(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("extends: " + str(REPO / "configs" / "tiny.yaml") + "\n"
                    "models: {student: {backend: transformers, engine_env: {VLLM_ENABLE_V1_MULTIPROCESSING: '0'}}}\n")
    with pytest.raises(ConfigError, match=r"(?s)engine\.yaml.*models\.student.*engine_options and engine_env are vLLM's, "
                                          r"but backend is 'transformers'"):
        load_config(path)
    path.write_text("extends: " + str(REPO / "configs" / "rehearsal.yaml") + "\n"
                    "models: {student: {engine_options: {mm_processor_kwargs: {max_pixels: 1}}}}\n")
    with pytest.raises(ConfigError, match=r"engine_options \['mm_processor_kwargs'\] are set from other keys"):
        load_config(path)  # the pixel bounds come from data.image_*_pixels, never around them
    spec = load_config(REPO / "configs" / "rehearsal.yaml").models.reasoner
    assert spec.engine_env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} and spec.engine_options["enforce_eager"]
