"""Every stage of the study, declared once: its function, its notebook, what it fingerprints, consumes and writes.

The study (`ovlt.study`) takes its stages' notebooks and folders from here, the plan their outputs, the benchmarks
their functions. Functions are named by dotted path and imported only when a stage runs, so this module (and `ovlt
plan`) loads no model. `@stage(name)` turns a stage's body into its public function, doing what every stage does
around its work: skip it when its manifest is current, otherwise clear its folder, run the body and write the
manifest.

A stage's key says which instance runs: None for a run-level stage, the iteration for an iteration's stage, the
checkpoint name for an evaluation.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ovlt.ground.artifacts import METRICS, PREDICTIONS, Run, Stage
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_names, parse_checkpoint

RUN, ITERATION, CHECKPOINT = "run", "iteration", "checkpoint"

Key = int | str | None
Sections = tuple[str, ...]


@dataclass(frozen=True)
class StageSpec:
    """One stage. `config`: the config sections its fingerprint covers (or a function of (cfg, key) giving them);
    `consumes`: the stages whose manifests it reads, by name (a run-level one, or the same iteration's), or a
    function of (cfg, key) giving (name, key) pairs; `writes`: what it may write in its folder (or a function of
    cfg giving it), recorded in its manifest as far as it did."""

    name: str
    function: str  # "module:attribute"
    notebook: str
    scope: str
    config: Sections | Callable[[StudyConfig, Key], Sections]
    consumes: tuple[str, ...] | Callable[[StudyConfig, Key], list[tuple[str, Key]]] = ()
    writes: tuple[str, ...] | Callable[[StudyConfig], tuple[str, ...]] = ()

    def folder(self, run: Run, key: Key) -> Path:
        return run.eval_dir(key) if self.scope == CHECKPOINT else run.stage_dir(self.name, key)

    def params(self, cfg: StudyConfig, key: Key) -> dict:
        sections = self.config(cfg, key) if callable(self.config) else self.config
        return ({"checkpoint": key} if self.scope == CHECKPOINT else {}) | cfg.section(*sections)

    def upstream(self, cfg: StudyConfig, key: Key) -> list[tuple[str, Key]]:
        if callable(self.consumes):
            return self.consumes(cfg, key)
        return [(name, None if STAGES[name].scope == RUN else key) for name in self.consumes]

    def outputs(self, cfg: StudyConfig) -> tuple[str, ...]:
        return self.writes(cfg) if callable(self.writes) else self.writes

    def open(self, cfg: StudyConfig, run: Run, key: Key) -> Stage:
        """The stage's folder and fingerprint; an error naming an upstream stage that has not finished."""
        self._check_key(key)
        inputs = [run.manifest(name, upstream_key) for name, upstream_key in self.upstream(cfg, key)]
        return Stage(run, self.name, key if self.scope == ITERATION else None, params=self.params(cfg, key),
                     inputs=inputs, folder=self.folder(run, key))

    def resolve(self) -> Callable[..., dict]:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def _check_key(self, key: Key) -> None:
        wanted = {RUN: type(None), ITERATION: int, CHECKPOINT: str}[self.scope]
        if not isinstance(key, wanted) or isinstance(key, bool):
            raise TypeError(f"stage {self.name} runs per {self.scope}: its key must be {wanted.__name__}, got {key!r}")


def output(run: Run, name: str, what: str, key: Key = None) -> Path:
    """Where stage `name` (its instance `key`) writes `what`, one of the outputs its entry declares (`writes`), or a
    path under one (`sets/<name>`); an undeclared name, or a key of the wrong kind, is refused, so a reader and its
    writer cannot drift apart. (Evaluation's outputs depend on the config; `ovlt.scoring.predictions` reads them.)"""
    spec = STAGES[name]
    spec._check_key(key)
    declared = spec.writes if not callable(spec.writes) else ()
    if what.split("/")[0] not in declared:
        raise KeyError(f"stage {name} declares no output {what!r} (it writes {list(declared)})")
    return spec.folder(run, key) / what


def checkpoint_stage(checkpoint: str) -> tuple[str, Key]:
    """The stage that writes a named checkpoint, with its key: `base` the student, `sft-<i>`/`grpo-<i>` the training."""
    kind, iteration = parse_checkpoint(checkpoint)
    return ("student", None) if kind == "base" else (kind, iteration)


def _student_consumes(cfg: StudyConfig, key: Key) -> list[tuple[str, Key]]:
    return [("decontaminate", None)] if cfg.models.student.name == "tiny" else []  # the tiny tokenizer reads the pool


def _self_generate_consumes(cfg: StudyConfig, iteration: int) -> list[tuple[str, Key]]:
    if iteration < 2:
        raise ValueError(f"self_generate runs from iteration 2 on (it needs grpo-{iteration - 1}); got {iteration}")
    return [("decontaminate", None), ("grpo", iteration - 1)]


def chains_stage(iteration: int) -> str:
    """The stage whose chains make an iteration's SFT set: the teachers' (distill) in iteration 1, the previous
    iteration's GRPO model's own (self_generate) from then on, as in the paper."""
    return "distill" if iteration == 1 else "self_generate"


def _select_consumes(cfg: StudyConfig, iteration: int) -> list[tuple[str, Key]]:
    return [(chains_stage(iteration), iteration)]


def _select_config(cfg: StudyConfig, iteration: int) -> Sections:
    # Self-generated chains are balanced across sources by their caps; the teacher's are not.
    return ("select", "seed") + (("self_generate.max_share",) if iteration > 1 else ())


def _evaluate_consumes(cfg: StudyConfig, checkpoint: str) -> list[tuple[str, Key]]:
    if checkpoint not in checkpoint_names(cfg):
        raise ValueError(f"unknown checkpoint {checkpoint!r}; expected one of {checkpoint_names(cfg)}")
    return [checkpoint_stage(checkpoint)]


def _evaluate_writes(cfg: StudyConfig) -> tuple[str, ...]:
    return tuple(f"{b.key}/{file}" for b in cfg.evaluation.benchmarks for file in (PREDICTIONS, METRICS))


TRAINING_OUTPUTS = ("checkpoint", "log.jsonl", "tb")

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    StageSpec("data", "ovlt.stages.data:build_data", "00_data.ipynb", RUN, ("seed", "data", "schedule"),
              writes=("train", "heldout")),  # heldout: the synthetic benchmark, drawn when a source is synthetic
    StageSpec("decontaminate", "ovlt.stages.data:decontaminate_pool", "00_data.ipynb", RUN, ("decontaminate",),
              ("data",), ("train", "drops.jsonl")),
    StageSpec("student", "ovlt.stages.student:build_student", "00_data.ipynb", RUN, ("seed", "models.student"),
              _student_consumes, ("checkpoint",)),  # a checkpoint when the student is built here (tiny)
    # device: the stages that sample choose their engines' devices by it (`study_backend`); the training stages
    # cover it, and so every stage downstream of one
    StageSpec("caption", "ovlt.stages.teachers:caption", "01_caption.ipynb", ITERATION,
              ("caption", "models.captioner", "seed", "device"), ("decontaminate",), ("captions",)),
    StageSpec("distill", "ovlt.stages.teachers:distill", "02_distill.ipynb", ITERATION,
              ("distill", "models.reasoner", "seed", "device"), ("caption",), ("chains",)),
    StageSpec("self_generate", "ovlt.stages.teachers:self_generate", "02_distill.ipynb", ITERATION,
              ("self_generate.sampling", "models.student", "seed"), _self_generate_consumes, ("chains",)),
    StageSpec("select", "ovlt.stages.curation:select", "03_filter.ipynb", ITERATION, _select_config,
              _select_consumes, ("selected",)),
    StageSpec("filter", "ovlt.stages.curation:filter_reflections", "03_filter.ipynb", ITERATION,
              ("filter", "models.student.name"), ("select", "student"), ("sft", "cut.jsonl")),
    StageSpec("sft", "ovlt.stages.training.sft:sft", "04_sft.ipynb", ITERATION, ("sft", "models.student", "seed", "device"),
              ("filter",), TRAINING_OUTPUTS),
    StageSpec("select_hard", "ovlt.stages.curation:select_hard", "05_select.ipynb", ITERATION,
              lambda cfg, iteration: ("select_hard", f"schedule.{iteration - 1}", "models.student", "seed"),
              ("decontaminate", "sft"), ("grpo", "sets", "pass_rates.jsonl")),
    StageSpec("grpo", "ovlt.stages.training.grpo:grpo", "06_grpo.ipynb", ITERATION, ("grpo", "models.student", "seed", "device"),
              ("sft", "select_hard"), TRAINING_OUTPUTS),
    # the pixel bounds: evaluation samples through study_backend, which resizes every image to them (a hub student's
    # base checkpoint consumes no stage that covers them, nor the device)
    StageSpec("evaluate", "ovlt.stages.evaluation:evaluate", "07_evaluate.ipynb", CHECKPOINT,
              ("evaluation", "models.student", "data.image_min_pixels", "data.image_max_pixels", "device"),
              _evaluate_consumes,
              _evaluate_writes),
)}


@dataclass(frozen=True)
class Outcome:
    """What a stage's body returns: the manifest's counts and any further manifest fields."""

    counts: dict
    extra: dict = field(default_factory=dict)


def stage(name: str, ready: Callable[[StudyConfig, Run, Key], None] | None = None):
    """Make `body(cfg, run, st[, key]) -> Outcome` the public stage function `(cfg, run[, key]) -> manifest`.

    A current manifest is returned as it is; otherwise `ready` (if any) may refuse before the folder is touched,
    the folder is cleared, the body runs and the manifest is written with the declared outputs it wrote.
    """
    spec = STAGES[name]

    def decorate(body: Callable[..., Outcome]) -> Callable[..., dict]:
        def run_stage_function(cfg: StudyConfig, run: Run, key: Key = None) -> dict:
            st = spec.open(cfg, run, key)
            if st.done:
                return st.manifest
            if ready is not None:
                ready(cfg, run, key)
            st.begin()
            outcome = body(cfg, run, st) if spec.scope == RUN else body(cfg, run, st, key)
            written = [out for out in spec.outputs(cfg) if (st.dir / out).exists()]
            return st.finish(counts=outcome.counts, outputs=written, extra=outcome.extra)

        run_stage_function.__name__ = run_stage_function.__qualname__ = body.__name__
        run_stage_function.__module__, run_stage_function.__doc__ = body.__module__, body.__doc__
        run_stage_function.spec = spec
        return run_stage_function

    return decorate


def run_stage(cfg: StudyConfig, run: Run, name: str, key: Key = None) -> dict:
    """Run (or find finished) one stage by name; returns its manifest."""
    function = STAGES[name].resolve()
    return function(cfg, run) if key is None else function(cfg, run, key)

