"""Shared test setup: offline, quiet, and the repository's paths."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path | None:
    """shared/fixtures beside the project (as in CI), or OVLT_FIXTURES; None in a user's clone."""
    candidate = Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


@pytest.fixture
def repo() -> Path:
    return REPO
