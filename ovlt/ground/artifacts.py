"""Run folders, stage manifests, fingerprints and resume.

A stage is done if and only if its `manifest.json` exists and records the fingerprint the stage would
have now. The fingerprint covers the config sections the stage reads and the fingerprints of the stages it
consumes, so changing a parameter redoes exactly the stages downstream of it. Everything a stage writes
is written atomically (temp file or folder, then rename), and the manifest is written last: a stage
killed midway leaves no manifest and nothing a later stage could mistake for finished output.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PREDICTIONS = "predictions.jsonl"  # per evaluated checkpoint and benchmark, one scored response a line
METRICS = "metrics.json"  # per evaluated checkpoint and benchmark: accuracy, interval, breakdowns
SHARDS = "shards"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
TRACKED_PACKAGES = ("ovlt", "torch", "transformers", "trl", "datasets", "accelerate", "peft", "math-verify", "vllm")


class ArtifactError(RuntimeError):
    """Writing or reading a run artifact failed; the message names the path and what to do."""


# --- fingerprints and provenance -----------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def safe_name(name: str, what: str = "name") -> str:
    """Reject names that would escape a folder when used as a file name (e.g. ids like `../x`)."""
    if not _SAFE_NAME.match(name) or name in {".", ".."} or ".." in name:
        raise ArtifactError(f"unsafe {what} {name!r}: only letters, digits and _ . : - are allowed, and no '..'")
    return name


# --- atomic writes --------------------------------------------------------------------------------------


def _explain_os_error(path: Path, exc: OSError) -> ArtifactError:
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        why = "the folder is not writable"
    else:
        why = exc.strerror or str(exc)
    return ArtifactError(f"cannot write {path}: {why}. What was there before is intact (earlier stages too); free "
                         "space or fix permissions and rerun.")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary sibling and one rename: a failure at any point (text UTF-8 cannot
    encode, a full disk, a folder in the way) leaves `path` as it was."""
    path = Path(path)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArtifactError(f"cannot write {path}: character {exc.start} is {text[exc.start]!r}, which UTF-8 cannot "
                            "encode (a lone surrogate); nothing was written") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):  # e.g. no temporary file where the parent is a file
            tmp.unlink(missing_ok=True)
        raise _explain_os_error(path, exc) from exc


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain_os_error(path, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_dataset(dataset, path: Path) -> Path:
    """Save a `datasets.Dataset` folder atomically (images included)."""
    with atomic_dir(path) as tmp:
        # datasets writes no shard at all for an empty set unless told to, and then cannot load it back
        dataset.save_to_disk(str(tmp), num_shards=1 if len(dataset) == 0 else None)
    return Path(path)


def load_dataset_dir(path: Path):
    import datasets

    if not Path(path).is_dir():
        raise ArtifactError(f"no data set at {path}: has the stage that writes it finished?")
    return datasets.load_from_disk(str(path))


# --- run folders and stages ------------------------------------------------------------------------------


class Run:
    """The folder of one study: `runs/<run>/` with data/, iter<k>/<stage>/, eval/<checkpoint>/, notebooks/."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def name(self) -> str:
        return self.root.name

    def stage_dir(self, stage: str, iteration: int | None = None) -> Path:
        safe_name(stage, "stage name")
        return self.root / stage if iteration is None else self.root / f"iter{iteration}" / stage

    def eval_dir(self, checkpoint: str) -> Path:
        return self.root / "eval" / safe_name(checkpoint, "checkpoint name")

    def predictions_path(self, checkpoint: str, benchmark: str) -> Path:
        return self.eval_dir(checkpoint) / safe_name(benchmark, "benchmark name") / PREDICTIONS

    def metrics_path(self, checkpoint: str, benchmark: str) -> Path:
        return self.eval_dir(checkpoint) / safe_name(benchmark, "benchmark name") / METRICS

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def manifest(self, stage: str, iteration: int | None = None) -> dict:
        """The manifest of a finished stage; an error naming the stage if it has not finished."""
        path = self.stage_dir(stage, iteration) / MANIFEST
        if not path.exists():
            where = stage if iteration is None else f"iteration {iteration}, stage {stage}"
            raise ArtifactError(f"{where} has not finished (no {path}); run it first")
        return json.loads(path.read_text())


def clear_but_shards(folder: Path) -> None:
    """Empty `folder` (made if missing) of everything but its `shards/`, from which a rerun resumes."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    for child in Path(folder).iterdir():
        if child.name != SHARDS:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


class Stage:
    """One stage's folder, its fingerprint and its manifest.

    Usage inside a stage function:
        st = Stage(run, "caption", iteration=1, params=cfg.section(...), inputs=[run.manifest("decontaminate", 1)])
        if st.done:
            return st.manifest
        st.begin()
        ... write outputs under st.dir ...
        return st.finish(counts={...})
    """

    def __init__(self, run: Run, name: str, iteration: int | None = None, params: Any = None, inputs: Iterable[dict] = (),
                 folder: Path | None = None):
        self.run = run
        self.name = name
        self.iteration = iteration
        self.dir = Path(folder) if folder is not None else run.stage_dir(name, iteration)
        self.params = params
        self.input_fingerprints = {f"{m['stage']}@{m.get('iteration')}": m["fingerprint"] for m in inputs}
        self.fingerprint = fingerprint({"stage": name, "params": params, "inputs": self.input_fingerprints})
        self._started = None

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError:
            return None

    @property
    def done(self) -> bool:
        manifest = self.manifest
        return manifest is not None and manifest.get("fingerprint") == self.fingerprint

    def begin(self) -> None:
        """Prepare the folder for a (re)run: stale outputs go, shards of this same fingerprint stay."""
        self._started = time.time()
        if self.manifest_path.exists():
            log.info("%s: parameters or inputs changed since the last run; redoing it", self.label)
            shutil.rmtree(self.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _explain_os_error(self.dir, exc) from exc
        shard_dir = self.dir / SHARDS
        stamp = shard_dir / "fingerprint"
        clear_but_shards(self.dir)
        if shard_dir.exists() and (not stamp.exists() or stamp.read_text() != self.fingerprint):
            shutil.rmtree(shard_dir)
        if not shard_dir.exists():
            atomic_write_text(stamp, self.fingerprint)

    def shards(self, name: str = "rows") -> ShardStore:
        return ShardStore(self.dir / SHARDS / safe_name(name, "shard set"))

    def finish(self, counts: dict[str, Any], outputs: Iterable[str] = (), extra: dict | None = None) -> dict:
        """Write the manifest (last, atomically); the stage is done from this moment on."""
        manifest = {
            "stage": self.name,
            "iteration": self.iteration,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "inputs": self.input_fingerprints,
            "counts": counts,
            "outputs": sorted(outputs),
            "wall_seconds": round(time.time() - (self._started or time.time()), 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "packages": package_versions(),
            "git_commit": git_commit(),
            **(extra or {}),
        }
        shutil.rmtree(self.dir / SHARDS, ignore_errors=True)
        atomic_write_json(self.manifest_path, manifest)
        log.info("%s: done in %.1fs, counts %s", self.label, manifest["wall_seconds"], counts)
        return manifest

    @property
    def label(self) -> str:
        return self.name if self.iteration is None else f"iter{self.iteration}/{self.name}"


class ShardStore:
    """Rows written in numbered JSON-lines shards, each atomically: a killed stage resumes after the last
    complete shard, and no row is written twice or lost."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _paths(self) -> list[Path]:
        return sorted(self.folder.glob("*.jsonl")) if self.folder.exists() else []

    def rows(self) -> list[dict]:
        rows = []
        for path in self._paths():
            with open(path, encoding="utf-8") as handle:
                rows.extend(json.loads(line) for line in handle if line.strip())
        return rows

    def done_keys(self, key: str = "id") -> set:
        return {row[key] for row in self.rows()}

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        index = len(self._paths())
        text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
        atomic_write_text(self.folder / f"{index:06d}.jsonl", text)
