"""SFT and GRPO stages on the tiny model, in-process: config -> TRL mapping, frozen vision, checkpoints,
logs, rewards, the zero-reward guard, determinism. The multi-process path is in test_launch.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from helpers import Crash, crash_after_step, log_rows, make_run, tiny_config, weights
from trl import SFTTrainer

from ovlt.engines.architectures import ImageBudget
from ovlt.engines.models import build_tiny, load, load_processor
from ovlt.ground.artifacts import save_dataset
from ovlt.ground.config import load_config
from ovlt.stages.training.callbacks import ZeroRewardError, ZeroRewardGuard
from ovlt.stages.training.common import job_dir, phase_dir, resume_point
from ovlt.stages.training.grpo import (
    REWARDS,
    grpo,
    grpo_args,
    guarded_reward,
    reward_functions,
    reward_weights,
    train_grpo,
)
from ovlt.stages.training.sft import sft, sft_args

REPO = Path(__file__).resolve().parents[1]


def saved_pixel_bounds(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "preprocessor_config.json").read_text())["size"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    """One SFT run long enough that the model answers in format (so GRPO sees rewards), vision frozen."""
    cfg = tiny_config(sft={"max_steps": 30, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
                           "warmup_ratio": 0.0, "freeze_vision": True, "logging_steps": 5})
    run = make_run(tmp_path_factory.mktemp("trained") / "run", tiny_base)
    return cfg, run, sft(cfg, run, 1)


# --- config -> TRL arguments --------------------------------------------------------------------------------


@pytest.fixture
def paper_cfg(monkeypatch):
    # The paper config asks for bf16 on CUDA; transformers refuses to build such arguments on a CPU-only machine.
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)
    return load_config(REPO / "configs/openvlthinker-7b.yaml")


def test_sft_args_carry_the_paper_config(paper_cfg, tmp_path):
    args = sft_args(paper_cfg, tmp_path)
    assert args.learning_rate == 5e-6 and args.lr_scheduler_type == "cosine" and args.warmup_steps == 0.15
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 2)
    assert args.num_train_epochs == 1 and args.max_steps == -1
    assert args.bf16 and args.gradient_checkpointing and not args.use_cpu
    assert args.max_length == 2048 and args.completion_only_loss is True
    assert args.seed == 42 and args.data_seed == 42
    assert args.output_dir == str(tmp_path)
    # The held-out loss before training comes from inside train() (ZeRO-3), and nothing is evaluated during it.
    assert args.eval_on_start and args.eval_strategy == "no"
    assert not sft_args(paper_cfg, tmp_path, resuming=True).eval_on_start  # the checkpoint's log history has it
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 200, 1)
    assert not args.save_only_model  # optimizer, scheduler and RNG state too: the resumed run continues exactly


def test_grpo_args_carry_the_paper_config(paper_cfg, tmp_path):
    args = grpo_args(paper_cfg, tmp_path)
    assert args.num_generations == 5 and args.temperature == 1.0 and args.top_p == 0.99
    assert args.beta == 0.01 and args.learning_rate == 1e-6 and args.weight_decay == 0.01
    assert args.max_completion_length == 2048 and args.loss_type == "grpo"
    assert args.use_vllm and args.vllm_mode == "colocate" and args.vllm_gpu_memory_utilization == 0.3
    assert args.vllm_max_model_length == 8192
    assert args.reward_weights == [1.0, 0.0]  # the paper: accuracy only; format logged, weighted 0
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (5, 4)
    assert args.seed == 42 and args.data_seed == 42 and args.bf16 and not args.use_cpu
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 20, 1)
    assert not args.save_only_model


def test_tiny_config_trains_on_cpu_in_fp32(tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml")
    s, g = sft_args(cfg, tmp_path), grpo_args(cfg, tmp_path)
    assert s.use_cpu and g.use_cpu and not s.bf16 and not g.bf16
    assert s.max_length is None  # truncation must never cut image tokens
    assert s.learning_rate == 1e-3 and s.max_steps == 1300 and s.per_device_train_batch_size == 16
    assert g.num_generations == 8 and g.beta == 0.04 and g.reward_weights == [1.0, 0.5] and not g.use_vllm
    assert s.save_strategy == "no" and g.save_strategy == "no"  # save_steps 0: no periodic checkpoints


# --- rewards and the zero-reward guard ----------------------------------------------------------------------


def test_reward_functions_on_known_completions():
    accuracy, fmt = reward_functions(tiny_config().grpo)
    texts = [
        "<think>It is red.</think><answer>red</answer>",  # right, well formed
        "<think>It is blue.</think><answer>blue</answer>",  # wrong, well formed
        "<think>It is red.</think><answer>red</answer>B</answer>B",  # the measured collapse: text after </answer>
        "red",  # right answer, no tags
    ]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    columns = {"answer": ["red"] * 4, "answer_type": ["multiple_choice"] * 4, "choices": [["red", "blue"]] * 4,
               "precision": [-1] * 4}
    right = accuracy(completions=completions, **columns)
    assert [right[0], right[1], right[3]] == [1.0, 0.0, 1.0]  # the collapse's answer is the scorer's call
    assert fmt(completions=completions, **columns) == [1.0, 1.0, 0.0, 0.0]
    assert [f.__name__ for f in reward_functions(tiny_config().grpo)] == ["accuracy_reward", "format_reward"]
    assert reward_weights(tiny_config(grpo={"format_reward_weight": 0.25}).grpo) == [1.0, 0.25]


def test_every_reward_name_of_the_config_is_a_reward_function_of_the_scorer():
    import typing

    from ovlt.ground.config import RewardName

    assert set(REWARDS) == set(typing.get_args(RewardName))
    for name, reward in REWARDS.items():  # TRL logs a reward under its function's name: rewards/<name>/mean
        assert reward.function.__name__ == name


@pytest.mark.parametrize(("grpo_section", "weights", "guarded"), [
    ({}, [1.0, 0.5], "accuracy_reward"),  # the tiny config: format weighted 0.5
    ({"reward_funcs": ["r1v_reward", "r1v_format_reward"], "format_reward_weight": 0.0}, [1.0, 0.0], "r1v_reward"),
    ({"reward_funcs": ["format_reward", "accuracy_reward", "r1v_reward"], "reward_weights": [0.5, 0.0, 1.0],
      "format_reward_weight": 0.0}, [0.5, 0.0, 1.0], "r1v_reward"),  # the first accuracy reward that counts
    ({"reward_funcs": ["format_reward"], "reward_weights": [1.0], "format_reward_weight": 0.0}, [1.0], None),
])
def test_reward_weights_and_the_reward_the_guard_watches(grpo_section, weights, guarded):
    section = tiny_config(grpo=grpo_section).grpo
    assert reward_weights(section) == weights and guarded_reward(section) == guarded


@pytest.mark.parametrize(("grpo_section", "message"), [
    ({"reward_funcs": ["accuracy_reward"], "format_reward_weight": 0.5}, "format_reward is not among reward_funcs"),
    ({"reward_weights": [1.0]}, "reward_weights has 1 weights for 2 reward_funcs"),
    ({"reward_weights": [1.0, 1.0]}, "either reward_weights or format_reward_weight"),  # tiny sets the latter
    ({"reward_funcs": ["accuracy_reward", "accuracy_reward"], "format_reward_weight": 0.0}, "names a function twice"),
    ({"reward_funcs": ["exact_match"]}, "reward_funcs.0"),
    ({"phases": [{"name": "a", "set": "medium"}]}, "not among select_hard.sets"),
    ({"phases": [{"name": "a", "learning_rate": 1.0}]}, "phases.0.learning_rate"),  # a phase replaces a few keys
    ({"phases": [{"name": "a"}, {"name": "a"}]}, "repeated names"),
])
def test_bad_reward_and_phase_settings_fail_at_load(grpo_section, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(grpo=grpo_section)


def test_zero_reward_guard_stops_a_run_that_never_scores():
    guard = ZeroRewardGuard(patience=3)
    zero = {"rewards/accuracy_reward/mean": 0.0}
    for step in (1, 2):
        guard.on_log(None, SimpleNamespace(global_step=step), None, logs=zero)
    with pytest.raises(ZeroRewardError, match="was 0 at every logged step of the first 3 steps"):
        guard.on_log(None, SimpleNamespace(global_step=3), None, logs=zero)


def test_zero_reward_guard_remembers_a_reward_from_before_a_resume():
    # Resumed at step 30 of a run rewarded at step 4: a zero at step 31 is past `patience` but must not stop it.
    guard = ZeroRewardGuard(patience=20)
    history = [{"step": 4, "rewards/accuracy_reward/mean": 0.2}, {"step": 30, "rewards/accuracy_reward/mean": 0.0}]
    guard.on_train_begin(None, SimpleNamespace(global_step=30, log_history=history), None)
    guard.on_log(None, SimpleNamespace(global_step=31), None, logs={"rewards/accuracy_reward/mean": 0.0})
    never = ZeroRewardGuard(patience=20)
    never.on_train_begin(None, SimpleNamespace(global_step=10, log_history=history[1:]), None)
    with pytest.raises(ZeroRewardError):
        never.on_log(None, SimpleNamespace(global_step=20), None, logs={"rewards/accuracy_reward/mean": 0.0})


def test_zero_reward_guard_is_quiet_once_rewarded_or_disabled():
    guard = ZeroRewardGuard(patience=2)
    guard.on_log(None, SimpleNamespace(global_step=1), None, logs={"rewards/accuracy_reward/mean": 0.1})
    for step in range(2, 6):
        guard.on_log(None, SimpleNamespace(global_step=step), None, logs={"rewards/accuracy_reward/mean": 0.0})
    disabled = ZeroRewardGuard(patience=0)
    disabled.on_log(None, SimpleNamespace(global_step=50), None, logs={"rewards/accuracy_reward/mean": 0.0})


# --- SFT ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sft_trains_the_language_model_only_and_saves_a_loadable_checkpoint(trained, tiny_base):
    cfg, run, manifest = trained
    stage_dir = run.stage_dir("sft", 1)
    assert manifest["counts"] == {"examples": 16, "steps": 30, "processes": 1}
    before, after = weights(tiny_base), weights(stage_dir / "checkpoint")
    vision = [k for k in before if k.startswith("visual.")]
    language = [k for k in before if k.startswith("model.")]
    assert vision and language
    assert all(torch.equal(before[k], after[k]) for k in vision), "a frozen vision weight moved"
    assert sum(not torch.equal(before[k], after[k]) for k in language) == len(language)

    losses = [row["loss"] for row in log_rows(stage_dir)]
    assert len(losses) == 6 and losses[-1] < losses[0] / 4
    assert any((stage_dir / "tb").iterdir())
    model, processor = load(stage_dir / "checkpoint", device="cpu")
    assert processor.tokenizer.padding_side == "left" and hasattr(processor, "image_processor")
    assert (stage_dir / "checkpoint" / "preprocessor_config.json").exists()
    assert sft(cfg, run, 1)["finished_at"] == manifest["finished_at"]  # done: not trained again


def test_sft_measures_loss_on_held_out_chains_before_and_after(tiny_base, tmp_path, monkeypatch):
    # Pixel bounds that shrink the widest training images (112 x 56 -> at most 4,704 pixels).
    bounds = {"image_min_pixels": 3136, "image_max_pixels": 4704}
    cfg = tiny_config(sft={"max_steps": 20, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
                           "warmup_ratio": 0.0, "heldout_examples": 4}, data=bounds)
    run = make_run(tmp_path / "run", tiny_base)
    # The untrained model's loss on the chains the stage holds out (its split: seeded, 4 of the 16).
    chains = datasets.load_from_disk(str(run.stage_dir("filter", 1) / "sft"))
    heldout = chains.train_test_split(test_size=4, seed=cfg.seed)["test"]
    processor = load_processor(tiny_base, budget=ImageBudget(3136, 4704))
    untrained = SFTTrainer(model=str(tiny_base), args=sft_args(cfg, tmp_path / "untrained"), train_dataset=heldout,
                           eval_dataset=heldout, processing_class=processor).evaluate()["eval_loss"]

    # DeepSpeed ZeRO-3's constraint, emulated: evaluate() before train() has built the training engine leaves an
    # inference engine that training frees (backward then runs on nothing), so it is refused here.
    started = set()
    real_train, real_evaluate = SFTTrainer.train, SFTTrainer.evaluate

    def noting_train(self, *args, **kwargs):
        started.add(id(self))
        return real_train(self, *args, **kwargs)

    def evaluate_only_once_training(self, *args, **kwargs):
        if id(self) not in started:
            raise RuntimeError("evaluate() before train(): the ZeRO-3 crash")
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", noting_train)
    monkeypatch.setattr(SFTTrainer, "evaluate", evaluate_only_once_training)
    manifest = sft(cfg, run, 1)
    train = manifest["train"]
    assert manifest["counts"]["examples"] == 12 and train["heldout_examples"] == 4  # 16 chains, 4 held out
    assert train["heldout_loss_before"] == pytest.approx(untrained, rel=1e-5)
    assert train["heldout_loss_after"] < train["heldout_loss_before"] / 2
    # Evaluated at the start and after training only (eval_on_start; eval strategy "no").
    evaluated = [row["step"] for row in log_rows(run.stage_dir("sft", 1)) if "eval_loss" in row]
    assert evaluated == [0, 20]
    # The bounds resized the training images and travel with the checkpoint's processor.
    checkpoint = run.stage_dir("sft", 1) / "checkpoint"
    assert saved_pixel_bounds(checkpoint) == {"shortest_edge": 3136, "longest_edge": 4704}
    assert load_processor(checkpoint).image_processor.size["longest_edge"] == 4704


def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    assert resume_point(tmp_path / "nothing yet") == (None, None)
    for step, state in ((2, '{"global_step": 2}'), (4, None), (6, '{"global_step": 6, "log_hi')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert resume_point(tmp_path) == (str(tmp_path / "checkpoint-2"), 2)


@pytest.mark.slow
def test_a_killed_sft_stage_resumes_from_its_last_checkpoint(tiny_base, tmp_path, monkeypatch, caplog):
    """The chaos test: the stage dies after step 3, with a checkpoint of step 2 written and one of step 4 cut short;
    run again, it continues from step 2 and ends where an uninterrupted run ends."""
    cfg = tiny_config(sft={"max_steps": 5, "save_steps": 2, "heldout_examples": 4, "learning_rate": 3e-3})
    run = make_run(tmp_path / "run", tiny_base)
    stage_dir = run.stage_dir("sft", 1)
    with crash_after_step(monkeypatch, 3), pytest.raises(Crash):
        sft(cfg, run, 1)
    saved = stage_dir / "shards" / "trainer"
    assert sorted(p.name for p in saved.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (stage_dir / "manifest.json").exists()
    # A crash while saving step 4: weights written, trainer_state.json (written last) cut short.
    partial = saved / "checkpoint-4"
    partial.mkdir()
    shutil.copy(saved / "checkpoint-2" / "model.safetensors", partial)
    (partial / "trainer_state.json").write_text((saved / "checkpoint-2" / "trainer_state.json").read_text()[:40])

    with caplog.at_level("INFO", logger="ovlt.stages.training.common"):
        manifest = sft(cfg, run, 1)
    train = manifest["train"]
    assert "resuming training from step 2" in caplog.text
    assert train["resumed_from_step"] == 2 and manifest["counts"]["steps"] == 5
    assert (stage_dir / "checkpoint" / "model.safetensors").exists() and not (stage_dir / "shards").exists()
    rows = log_rows(stage_dir)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5]  # 1-2 from the checkpoint, 3-5 trained now
    assert "step_seconds" not in rows[1] and all("step_seconds" in r for r in rows if r["step"] > 2 and "loss" in r)
    assert train["train_loss"] == pytest.approx(sum(r["loss"] for r in rows if r["step"] > 2 and "loss" in r) / 3)

    straight_run = make_run(tmp_path / "straight", tiny_base)
    straight = sft(cfg, straight_run, 1)
    assert straight["train"]["resumed_from_step"] is None
    # Optimizer, scheduler, RNG and data position resumed exactly: the same model as without the crash.
    resumed_weights = weights(stage_dir / "checkpoint")
    straight_weights = weights(straight_run.stage_dir("sft", 1) / "checkpoint")
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)
    for key in ("heldout_loss_before", "heldout_loss_after"):
        assert train[key] == pytest.approx(straight["train"][key], rel=1e-6), key


def test_sft_refuses_to_hold_out_the_whole_set(tiny_base, tmp_path):
    cfg = tiny_config(sft={"heldout_examples": 16})
    with pytest.raises(ValueError, match="heldout_examples = 16 leaves nothing to train on"):
        sft(cfg, make_run(tmp_path / "run", tiny_base), 1)


@pytest.mark.slow
def test_sft_is_deterministic_given_the_seed(tiny_base, tmp_path):
    cfg = tiny_config()  # vision not frozen (the tiny config's default): it must move here
    folders = []
    for name in ("a", "b"):
        run = make_run(tmp_path / name, tiny_base)
        sft(cfg, run, 1)
        folders.append(run.stage_dir("sft", 1) / "checkpoint")
    first, second, base = weights(folders[0]), weights(folders[1]), weights(tiny_base)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], base[k]) for k in first if k.startswith("visual."))


@pytest.mark.slow
def test_sft_lora_merges_its_adapter_into_a_full_checkpoint(tiny_base, tmp_path):
    cfg = tiny_config(sft={"finetune": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "learning_rate": 1e-2})
    run = make_run(tmp_path / "run", tiny_base)
    sft(cfg, run, 1)
    before, after = weights(tiny_base), weights(run.stage_dir("sft", 1) / "checkpoint")
    assert set(before) == set(after)  # a plain model: no lora_A/lora_B tensors left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"))
                           for k in changed)


def test_sft_names_the_missing_column(tiny_base, tmp_path):
    run = make_run(tmp_path / "run", tiny_base)
    broken = run.stage_dir("filter", 1) / "sft"
    data = datasets.load_from_disk(str(broken)).remove_columns("completion")
    save_dataset(data, broken)
    with pytest.raises(ValueError, match=r"sft: training set lacks column\(s\) \['completion'\]"):
        sft(tiny_config(), run, 1)
    assert not (run.stage_dir("sft", 1) / "manifest.json").exists()


# --- GRPO -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_logs_every_step_and_is_deterministic(trained, tmp_path):
    cfg, run, _ = trained
    cfg = tiny_config(grpo={"format_reward_weight": 0.0, "learning_rate": 1e-4, "max_completion_length": 24,
                           "temperature": 0.5})  # cooler sampling: some completions come out well formed
    results = []
    for name in ("a", "b"):
        manifest = grpo(cfg, run, 1)
        stage_dir = run.stage_dir("grpo", 1)
        results.append((weights(stage_dir / "checkpoint"), log_rows(stage_dir), manifest))
        (stage_dir / "manifest.json").rename(tmp_path / f"manifest-{name}.json")  # so the second call trains again
    (first, rows, manifest), (second, rows_again, _) = results
    assert manifest["counts"] == {"problems": 16, "steps": 2, "processes": 1}
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean", "kl",
                "completions/mean_length", "clip_ratio/region_mean", "step_seconds"):
        assert all(key in r for r in rows), key
    # Weight 0 for the format reward: still computed and logged, adds nothing to the total.
    assert any(r["rewards/format_reward/mean"] > 0 for r in rows)
    assert all(r["reward"] == pytest.approx(r["rewards/accuracy_reward/mean"]) for r in rows)
    assert any(r["rewards/accuracy_reward/mean"] > 0 for r in rows)
    sft_weights = weights(run.stage_dir("sft", 1) / "checkpoint")
    assert any(not torch.equal(first[k], sft_weights[k]) for k in first)  # it learned something
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert [r["completions/mean_length"] for r in rows] == [r["completions/mean_length"] for r in rows_again]


@pytest.mark.slow
def test_grpo_stops_when_the_accuracy_reward_stays_zero(tiny_base, tmp_path):
    cfg = tiny_config(sft={"max_steps": 1}, grpo={"max_steps": 6, "zero_reward_patience": 2})
    run = make_run(tmp_path / "run", tiny_base)
    # An answer that random text cannot hit (a stray letter can match a lettered option).
    problems = run.stage_dir("select_hard", 1) / "grpo"
    hard = datasets.load_from_disk(str(problems)).map(
        lambda row: {"answer": "987654321", "answer_type": "integer", "choices": []})
    save_dataset(hard, problems)
    sft(cfg, run, 1)  # one step from random init: it never writes an answer
    with pytest.raises(ZeroRewardError, match="first 2 steps"):
        grpo(cfg, run, 1)
    stage_dir = run.stage_dir("grpo", 1)
    assert [r["step"] for r in log_rows(stage_dir)] == [1, 2]
    assert not (stage_dir / "manifest.json").exists()


@pytest.mark.slow
def test_a_killed_grpo_stage_resumes_from_its_last_checkpoint(tiny_base, tmp_path, monkeypatch, caplog):
    """The chaos test for GRPO: dies after step 2 with step 1 saved; run again, it continues from step 1 and ends
    with the model, and the samples, of an uninterrupted run."""
    cfg = tiny_config(sft={"max_steps": 1}, grpo={"max_steps": 3, "save_steps": 1, "zero_reward_patience": 0},
                      data={"image_max_pixels": 4704})
    run = make_run(tmp_path / "run", tiny_base)
    sft(cfg, run, 1)
    stage_dir = run.stage_dir("grpo", 1)
    with crash_after_step(monkeypatch, 2), pytest.raises(Crash):
        grpo(cfg, run, 1)
    assert [p.name for p in (stage_dir / "shards" / "trainer").glob("checkpoint-*")] == ["checkpoint-1"]

    with caplog.at_level("INFO", logger="ovlt.stages.training.common"):
        manifest = grpo(cfg, run, 1)
    assert "resuming training from step 1" in caplog.text
    assert manifest["train"]["resumed_from_step"] == 1 and manifest["counts"]["steps"] == 3
    assert not (stage_dir / "shards").exists()
    rows = log_rows(stage_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert saved_pixel_bounds(stage_dir / "checkpoint")["longest_edge"] == 4704
    resumed = weights(stage_dir / "checkpoint")

    (stage_dir / "manifest.json").unlink()  # so that the same stage trains again, uninterrupted
    straight = grpo(cfg, run, 1)
    assert straight["train"]["resumed_from_step"] is None
    assert all(torch.equal(resumed[k], v) for k, v in weights(stage_dir / "checkpoint").items())
    # The same completions were sampled after the resume (RNG state restored), not just the same weights reached.
    assert [r["completions/mean_length"] for r in rows] == [r["completions/mean_length"] for r in log_rows(stage_dir)]


@pytest.mark.slow
def test_grpo_in_phases_continues_from_each_phase_and_records_each(trained):
    """Two phases in one grpo stage: the first on its set with the vision tower frozen, the second on another set
    from the first one's weights; one checkpoint, one log counting steps on, one manifest recording both."""
    _, run, _ = trained
    hard_sets = run.stage_dir("select_hard", 1)
    problems = datasets.load_from_disk(str(hard_sets / "grpo"))
    for name, rows in (("medium", range(0, 8)), ("hard", range(8, 16))):
        save_dataset(problems.select(rows), hard_sets / "sets" / name)
    cfg = tiny_config(
        grpo={"format_reward_weight": 0.0, "learning_rate": 1e-4, "max_completion_length": 24, "temperature": 0.5,
              "reward_funcs": ["accuracy_reward", "format_reward"],
              "phases": [{"name": "medium", "set": "medium", "max_steps": 1, "freeze_vision": True},
                         {"name": "hard", "set": "hard", "max_steps": 2}]},
        select_hard={"sets": [{"name": "medium", "bands": [[0.5, 0.9]]}, {"name": "hard", "bands": [[0.1, 0.4]]}]},
    )
    stage_dir = run.stage_dir("grpo", 1)
    real_train_grpo = train_grpo
    phase_weights = {}

    def keeping_each_phase(cfg, run, iteration, stage_dir, phase=None):
        result = real_train_grpo(cfg, run, iteration, stage_dir, phase)
        phase_weights[phase] = weights(job_dir(cfg, stage_dir, phase) / "checkpoint")
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ovlt.stages.training.grpo.train_grpo", keeping_each_phase)
        manifest = grpo(cfg, run, 1)
    train = manifest["train"]
    assert [(p["phase"], p["set"], p["examples"], p["steps"], p["vision_frozen"]) for p in train["phases"]] == [
        ("medium", "medium", 8, 1, True), ("hard", "hard", 8, 2, False)]
    assert train["phases"][1]["start"] == str(phase_dir(stage_dir, "medium") / "checkpoint")
    assert manifest["counts"] == {"problems": {"medium": 8, "hard": 8}, "steps": {"medium": 1, "hard": 2},
                                  "processes": 1}
    assert [(r["phase"], r["step"]) for r in log_rows(stage_dir)] == [("medium", 1), ("hard", 2), ("hard", 3)]
    assert sorted(p.name for p in (stage_dir / "tb").iterdir()) == ["hard", "medium"]
    assert not (stage_dir / "shards").exists()  # the phases' folders went with the stage's shards
    sft_weights, medium, final = (weights(run.stage_dir("sft", 1) / "checkpoint"), phase_weights[0],
                                  weights(stage_dir / "checkpoint"))
    vision = [k for k in medium if k.startswith("visual.")]
    assert all(torch.equal(medium[k], sft_weights[k]) for k in vision)  # frozen in the medium phase
    assert any(not torch.equal(final[k], medium[k]) for k in vision)  # trained in the hard one
    assert all(torch.equal(final[k], phase_weights[1][k]) for k in final)  # the last phase's checkpoint is the stage's
