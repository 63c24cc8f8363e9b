"""The training stages, `sft` and `grpo`: each trains one iteration's checkpoint in its stage folder, in-process or on
many processes through `accelerate launch` (`ovlt.stages.training.launch`)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ovlt.ground.artifacts import SHARDS, Run, Stage, atomic_write_json, atomic_write_text
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path
from ovlt.stages.registry import Outcome, stage
from ovlt.stages.training.common import RESULT_FILE
from ovlt.stages.training.grpo import phase_dir
from ovlt.stages.training.launch import run_job

log = logging.getLogger(__name__)


def _base_exists(cfg: StudyConfig, run: Run, iteration: int) -> None:
    # Said here, before the folder is cleared and the workers start, rather than as a loading error inside them.
    base = checkpoint_path(cfg, run, "base")
    if cfg.models.student.name == "tiny" and not Path(base).is_dir():
        raise FileNotFoundError(f"base model not found at {base}: run the student stage first")


@stage("sft", ready=_base_exists)
def sft(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Stage `sft` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    log.info("%s: SFT from %s on %d process(es)", st.label, checkpoint_path(cfg, run, "base"),
             cfg.sft.launch.num_processes)
    result = run_job(cfg, run, "sft", iteration, st.dir, cfg.sft.launch, bf16=cfg.sft.bf16)
    return Outcome({k: result[k] for k in ("examples", "steps", "processes")}, {"train": result})


@stage("grpo")
def grpo(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Stage `grpo` of one iteration: writes `<stage dir>/checkpoint`, `log.jsonl`, `tb/`; returns the manifest."""
    if cfg.grpo.phases:
        return _grpo_in_phases(cfg, run, st, iteration)
    log.info("%s: GRPO from sft-%d on %d process(es)", st.label, iteration, cfg.grpo.launch.num_processes)
    result = run_job(cfg, run, "grpo", iteration, st.dir, cfg.grpo.launch, bf16=cfg.grpo.bf16)
    counts = {"problems": result["examples"], "steps": result["steps"], "processes": result["processes"]}
    return Outcome(counts, {"train": result})


def _grpo_in_phases(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """The phases of `grpo.phases` one after another, each its own training job (its own processes, optimizer,
    scheduler and reference model, as the authors ran theirs) from the previous phase's checkpoint. A phase that
    finished before the stage died is not trained again. The last phase's checkpoint becomes the stage's; the
    stage's `log.jsonl` holds every phase's lines, each with its `phase`, steps counted on across phases; `tb/<phase>`
    each phase's tensorboard; the manifest's `train.phases` each phase's result."""
    results, lines = [], []
    for index, (phase, section) in enumerate(cfg.grpo.phase_sections()):
        folder = phase_dir(st.dir, phase.name)
        # Done when its result and checkpoint are there: the last phase's checkpoint moves to the stage's folder at
        # the end, and a stage that died after that move trains its last phase again rather than lose it.
        if not ((folder / RESULT_FILE).exists() and (folder / "checkpoint").exists()):
            _clear_but_shards(folder)  # a phase cut short resumes from its trainer checkpoints (under its shards)
            log.info("%s: GRPO phase %s on set %s, %s", st.label, phase.name, phase.set or "grpo",
                     "vision frozen" if section.freeze_vision else "vision trained")
            run_job(cfg, run, "grpo", iteration, folder, section.launch, bf16=section.bf16, phase=index)
        result = {"phase": phase.name, "set": phase.set, **json.loads((folder / RESULT_FILE).read_text())}
        offset = sum(r["steps"] for r in results)
        log_path = folder / "log.jsonl"
        for line in log_path.read_text().splitlines() if log_path.exists() else []:
            row = json.loads(line)
            lines.append(json.dumps({**row, "step": row["step"] + offset, "phase": phase.name}))
        results.append(result)
    last = phase_dir(st.dir, cfg.grpo.phases[-1].name)
    (st.dir / "tb").mkdir(exist_ok=True)
    for phase in cfg.grpo.phases:
        if (phase_dir(st.dir, phase.name) / "tb").exists():
            shutil.move(phase_dir(st.dir, phase.name) / "tb", st.dir / "tb" / phase.name)
    atomic_write_text(st.dir / "log.jsonl", "".join(line + "\n" for line in lines))
    shutil.move(last / "checkpoint", st.dir / "checkpoint")
    summary = {"examples": sum(r["examples"] for r in results), "steps": sum(r["steps"] for r in results),
               "processes": results[-1]["processes"],
               "train_seconds": round(sum(r["train_seconds"] for r in results), 3), "phases": results}
    atomic_write_json(st.dir / RESULT_FILE, summary)
    counts = {"problems": {r["phase"]: r["examples"] for r in results},
              "steps": {r["phase"]: r["steps"] for r in results}, "processes": summary["processes"]}
    return Outcome(counts, {"train": summary})


def _clear_but_shards(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.name != SHARDS:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
