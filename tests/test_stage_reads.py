"""A stage's fingerprint covers what it reads: every config key a stage's body reads lies in the sections the
registry declares for it or for a stage upstream of it (whose manifests its fingerprint covers), or is operational
or the study's shape (`ovlt.ground.config.OPERATIONAL`, `STUDY_SHAPE`: where things are read from or logged, which
stages exist; never what one computes).

The test study's stages run in this process on a config that records, per stage, every key read on it (on copies
made from it too); the registry's declarations are then checked against the records.

What it cannot see: reads inside pydantic's own dumps (`model_dump`, e.g. a section's `passed_to_trl`: those dump a
section the stage declares whole), reads on sections copied with `model_copy` (GRPO's phase sections, copies of the
declared `grpo`), reads in launched processes (the test study trains in-process), and iteration 2's stages after
self-generation (they need a student that writes well-formed chains).
A key read outside them is a stage that stays "done" when that key changes: the defect this file exists to catch
(the evaluate stage read the pixel bounds without covering them).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import pytest
from helpers import write_test_config
from pydantic import BaseModel

from ovlt.ground.artifacts import Run
from ovlt.ground.config import OPERATIONAL, STUDY_SHAPE, Section, StudyConfig, load_config
from ovlt.stages.registry import STAGES, StageSpec, run_stage
from ovlt.study.order import stage_order


class ReadRecorder:
    """Records the dotted path of every field read on a StudyConfig (and the sections reached from it) while on.

    Sections are tracked by identity from the study config they were reached from; a section inside a list is its
    list's path plus its index (`schedule.0`), as the registry names one. A list of plain values, a dict and a
    scalar are read as a whole."""

    def __init__(self):
        self.paths: dict[int, tuple[BaseModel, str]] = {}  # id -> (the section, kept alive so ids stay unique; its path)
        self.reads: set[str] = set()
        self.on = False

    def _path(self, model: BaseModel) -> str | None:
        if id(model) not in self.paths and isinstance(model, StudyConfig):
            self.paths[id(model)] = (model, "")  # any study config is a root (a launched job's rebuilt one too)
        return self.paths[id(model)][1] if id(model) in self.paths else None

    def saw(self, model: BaseModel, name: str, value: object) -> None:
        base = self._path(model)
        if base is None:
            return
        path = f"{base}.{name}" if base else name
        if isinstance(value, Section):
            self.paths[id(value)] = (value, path)
        elif isinstance(value, list) and value and all(isinstance(item, Section) for item in value):
            for index, item in enumerate(value):
                self.paths[id(item)] = (item, f"{path}.{index}")
        else:
            self.reads.add(path)

    def paused(self, function):
        def unrecorded(*args, **kwargs):
            on, self.on = self.on, False
            try:
                return function(*args, **kwargs)
            finally:
                self.on = on
        return unrecorded

    @contextmanager
    def recording(self):
        self.on, self.reads = True, set()
        try:
            yield self.reads
        finally:
            self.on = False


def install_recorder(monkeypatch: pytest.MonkeyPatch) -> ReadRecorder:
    """A recorder of every study config's reads, off until `recording()`."""
    recorder = ReadRecorder()

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        if recorder.on and name in type(self).model_fields:
            recorder.saw(self, name, value)
        return value

    monkeypatch.setattr(Section, "__getattribute__", getattribute)
    # The registry's own reads (the fingerprint's sections, the upstream stages) are not the body's, nor are the
    # config's validators' (cross-section checks, run wherever a config is built from another's dump).
    monkeypatch.setattr(StageSpec, "open", recorder.paused(StageSpec.open))
    monkeypatch.setattr(StudyConfig, "model_validate", classmethod(recorder.paused(StudyConfig.model_validate.__func__)))
    return recorder


def covered(cfg: StudyConfig, name: str, key, specs: dict[str, StageSpec]) -> set[str]:
    """The sections a stage's fingerprint covers: its own and, through its inputs' fingerprints, its upstream's."""
    spec = specs[name]
    sections = set(spec.config(cfg, key) if callable(spec.config) else spec.config)
    for upstream, upstream_key in spec.upstream(cfg, key):
        sections |= covered(cfg, upstream, upstream_key, specs)
    return sections


def outside(reads: set[str], sections: set[str]) -> list[str]:
    allowed = sections | set(OPERATIONAL) | set(STUDY_SHAPE)
    return sorted(r for r in reads if not any(r == a or r.startswith(a + ".") for a in allowed))


@pytest.fixture(scope="module")
def study_reads(tmp_path_factory) -> tuple[StudyConfig, dict]:
    """Every stage of the test study (and iteration 2's self-generation) run here, with the keys each body read."""
    root = tmp_path_factory.mktemp("reads")
    cfg = load_config(write_test_config(root, iterations=2, schedule=[
        {"sft_problems": 32, "grpo_candidates": 8, "grpo_problems": 4}] * 2))
    run = Run(root / "run")
    monkeypatch = pytest.MonkeyPatch()
    try:
        recorder = install_recorder(monkeypatch)
        reads: dict[tuple[str, object], set[str]] = {}
        for ref in stage_order(cfg):
            if ref.iteration == 2 and ref.name != "self_generate":
                continue  # iteration 2 past self-generation needs a student that writes well-formed chains
            with recorder.recording() as seen:
                run_stage(cfg, run, ref.name, ref.key)
            reads[(ref.name, ref.key)] = set(seen)
    finally:
        monkeypatch.undo()
    return cfg, reads


def hub_student(cfg: StudyConfig) -> StudyConfig:
    """The same study with a hub student: its base checkpoint consumes no stage, so covers less upstream."""
    raw = cfg.model_dump()
    raw["models"]["student"]["name"] = "Qwen/Qwen2.5-VL-7B-Instruct"
    return StudyConfig.model_validate(raw)


def stray_reads(cfg: StudyConfig, reads: dict, specs: dict[str, StageSpec]) -> dict[str, list[str]]:
    """Per stage, the keys it read that its fingerprint does not cover, with the tiny student or a hub one (the
    bodies read the same keys either way)."""
    stray = defaultdict(set)
    for (name, key), seen in reads.items():
        for study in (cfg, hub_student(cfg)):
            stray[f"{name} {key}"].update(outside(seen, covered(study, name, key, specs)))
    return {stage: sorted(paths) for stage, paths in stray.items() if paths}


@pytest.mark.slow
def test_every_stage_reads_only_keys_its_fingerprint_covers(study_reads):
    cfg, reads = study_reads
    assert {name for name, _ in reads} == set(STAGES), "every registered stage ran"
    assert all(reads.values()), "the recorder saw every stage read its config"
    assert not stray_reads(cfg, reads, STAGES), "stages read keys their fingerprints do not cover"


@pytest.mark.slow
def test_the_check_finds_what_evaluate_read_uncovered_before(study_reads):
    """The registry as the issue found it: evaluate covered `evaluation` and `models.student` only. The pixel bounds
    were the issue's defect (a hub student's base evaluation stayed done at new bounds; declared since 0ae832d); the
    device was found by this check, failing on the registry of 6faa107."""
    cfg, reads = study_reads
    before = dict(STAGES)
    before["evaluate"] = StageSpec(**{**STAGES["evaluate"].__dict__, "config": ("evaluation", "models.student")})
    assert stray_reads(cfg, reads, before)["evaluate base"] == [
        "data.image_max_pixels", "data.image_min_pixels", "device"]
