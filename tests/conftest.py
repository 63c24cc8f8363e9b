"""Shared test setup: offline, quiet, and the fixtures several modules use. Shared helpers that are not fixtures
(paths, markers, test configs) are in helpers.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, reproduce_command, write_test_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> Path:
    """The rehearsal's stand-in models and local hub (`python -m ovlt.rehearsal`), built once per session."""
    root = tmp_path_factory.mktemp("rehearsal")
    built = subprocess.run([sys.executable, "-m", "ovlt.rehearsal", str(root)], cwd=REPO, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-5000:]
    return root


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The tiny student, built once per session (the teacher and curation stages' tests)."""
    from ovlt.engines.models import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def study_run(tmp_path_factory) -> Path:
    """The folder of a finished test-sized study (summary.json, notebooks, report), run once per session."""
    root = tmp_path_factory.mktemp("study")
    config = write_test_config(root)
    done = subprocess.run(reproduce_command(config, root), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"ovlt reproduce failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return root / "runs" / "test-study"
