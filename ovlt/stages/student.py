"""Stage `student`: the base model the study trains."""

from __future__ import annotations

import shutil

import datasets

from ovlt.engines.models import build_tiny, count_parameters, load
from ovlt.engines.scripted import ScriptedCaptioner, ScriptedReasoner
from ovlt.ground.artifacts import Run, Stage, load_dataset_dir
from ovlt.ground.config import StudyConfig
from ovlt.scoring.prompts import student_text
from ovlt.stages.registry import Outcome, output, stage


def corpus_for_tokenizer(problems: datasets.Dataset, n: int, seed: int = 0) -> list[str]:
    """Representative study text for training the tiny tokenizer: per problem (up to `n`), the student prompt,
    a scripted caption and a scripted chain (with reflections, as before the filter)."""
    captioner = ScriptedCaptioner(fidelity=0.7, omit_rate=0.1, seed=seed)
    reasoner = ScriptedReasoner(reflection_rate=0.5, verbosity=2, seed=seed)
    texts = []
    for row in problems.select_columns(["id", "question", "choices", "answer", "answer_type", "precision",
                                        "source", "scene"]).select(range(min(n, len(problems)))):
        if not row["scene"]:
            continue
        caption = captioner.describe(row)
        texts += [student_text(row), caption, reasoner.chain(row, caption, 0)]
    return texts



@stage("student")
def build_student(cfg: StudyConfig, run: Run, st: Stage) -> Outcome:
    """Stage `student`: the base model. `tiny` is built locally (its tokenizer trained on the study's own
    text: prompts, captions and chains drawn from the pool); any other name is a hub id or folder, recorded
    as is."""
    spec = cfg.models.student
    if spec.name != "tiny":
        return Outcome({}, {"model": spec.name})
    pool = load_dataset_dir(output(run, "decontaminate", "train"))
    built = build_tiny(st.dir / "build", seed=cfg.seed, corpus=corpus_for_tokenizer(pool, 1000, seed=cfg.seed),
                       **spec.tiny.model_dump())
    built.rename(st.dir / "checkpoint")
    shutil.rmtree(st.dir / "build")
    model, _ = load(st.dir / "checkpoint", device="cpu")
    return Outcome({"parameters": count_parameters(model)}, {"model": "tiny"})
