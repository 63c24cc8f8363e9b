"""Evaluate checkpoints on the configured benchmarks, and summarise the study.

`evaluate(cfg, run, checkpoint)` generates one greedy response per benchmark item with the student's
generation backend, scores it with the benchmark's protocol (the one scorer in `ovlt.scoring.answers`) and writes
`eval/<checkpoint>/<benchmark>/predictions.jsonl` and `metrics.json`. `write_summary` gathers every
checkpoint into `summary.json`: accuracy with its 95% interval and n, the majority-answer baseline, wall
times, and paired comparisons between stages.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

import datasets
from PIL import Image

from ovlt.engines.generation import SamplingParams, study_backend
from ovlt.ground.artifacts import MANIFEST, Run, Stage, atomic_write_json, atomic_write_text, load_dataset_dir
from ovlt.ground.config import BenchmarkRef, StudyConfig
from ovlt.ground.layout import checkpoint_names, checkpoint_path
from ovlt.scoring import benchmarks as bench
from ovlt.scoring import statistics
from ovlt.scoring.prompts import student_chat
from ovlt.stages.registry import Outcome, checkpoint_stage, stage

log = logging.getLogger(__name__)

SHARD_SIZE = 256


def benchmark_records(ref: BenchmarkRef, run: Run, hub_root: str | None = None) -> list[dict]:
    """A configured benchmark's records: the run's held-out set, the official local files, or the hub (read from
    `hub_root`, the config's data.hub_root, when set)."""
    if ref.name == "synthetic":
        records = bench.load_local("synthetic", run.stage_dir("data") / "heldout")
    elif ref.annotations:
        records = bench.load_local(ref.name, ref.annotations, ref.images)
    else:
        records = bench.load_hub(ref.name, hub_root)
    return records[: ref.limit] if ref.limit else records


def _open_image(value) -> Image.Image:
    image = value if isinstance(value, Image.Image) else Image.open(value)
    return image.convert("RGB")


def benchmark_problems(ref: BenchmarkRef, run: Run, hub_root: str | None = None) -> datasets.Dataset:
    """Benchmark items as problem-schema rows (id, image, question, choices), for decontamination."""
    rows = [{"id": r["id"], "image": _open_image(r["image"]), "question": r["question"], "choices": r["choices"],
             "scene": ""} for r in benchmark_records(ref, run, hub_root) if r["image"] is not None]
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"), "choices": datasets.Sequence(datasets.Value("string")),
                                  "scene": datasets.Value("string")})
    return datasets.Dataset.from_list(rows, features=features)


def _checkpoint_manifest(run: Run, checkpoint: str) -> dict:
    return run.manifest(*checkpoint_stage(checkpoint))


def _prompts(ref: BenchmarkRef, records: list[dict]) -> tuple[list, list[list[Image.Image]]]:
    """The student's chats and images for benchmark records, as every evaluation asks them."""
    chats = [student_chat(bench.build_prompt(ref.name, r, ref.prompt), with_image=r["image"] is not None) for r in records]
    return chats, [[_open_image(r["image"])] if r["image"] is not None else [] for r in records]


@stage("evaluate")
def evaluate(cfg: StudyConfig, run: Run, st: Stage, checkpoint: str) -> Outcome:
    """Stage `evaluate` of one checkpoint: predictions and metrics for every configured benchmark."""
    path = checkpoint_path(cfg, run, checkpoint)
    sampling = cfg.evaluation.sampling
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=sampling.max_new_tokens, seed=cfg.seed)
    counts = {}
    # The backend opens at the first benchmark with items left to generate (none after a resume past the last shard)
    # and closes however the stage ends.
    with ExitStack() as opened:
        backend = None
        for ref in cfg.evaluation.benchmarks:
            records = benchmark_records(ref, run, cfg.data.hub_root)
            shards = st.shards(ref.name)
            done = shards.done_keys()
            todo = [r for r in records if r["id"] not in done]
            if todo and backend is None:
                backend = opened.enter_context(study_backend(cfg, cfg.models.student, path))
            size = SHARD_SIZE * (backend.engines if backend is not None else 1)  # SHARD_SIZE items per engine
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                completions = backend.generate(*_prompts(ref, chunk), params)
                shards.write([{"id": r["id"], "response": c[0].text, "num_tokens": c[0].num_tokens}
                              for r, c in zip(chunk, completions, strict=True)])
            generated = {row["id"]: row for row in shards.rows()}
            rows, summary = bench.score_responses(ref.name, records, {i: g["response"] for i, g in generated.items()},
                                                  protocol=ref.protocol)
            interval = statistics.accuracy_ci([r["correct"] for r in rows], n_boot=cfg.evaluation.bootstrap_samples,
                                              seed=cfg.seed)
            summary.update(ci95=[interval["low"], interval["high"]], n=interval["n"], prompt=ref.prompt,
                           protocol_requested=ref.protocol)
            predictions = [{**row, "response": generated[row["id"]]["response"],
                            "num_tokens": generated[row["id"]]["num_tokens"]} for row in rows]
            atomic_write_text(run.predictions_path(checkpoint, ref.name),
                              "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
            atomic_write_json(run.metrics_path(checkpoint, ref.name), summary)
            counts[ref.name] = {"items": len(records), "correct": summary["correct"], "accuracy": summary["accuracy"]}
            log.info("%s on %s: %d/%d = %.3f [%.3f, %.3f]", checkpoint, ref.name, summary["correct"], len(records),
                     summary["accuracy"], *summary["ci95"])
    return Outcome(counts, {"checkpoint": checkpoint, "model_path": path})


# --- the study's summary -------------------------------------------------------------------------------


def read_predictions(run: Run, checkpoint: str, benchmark: str) -> list[dict]:
    """The rows `evaluate` wrote for a checkpoint on a benchmark (id, extracted, rule, correct, response, ...)."""
    return [row for _, row in bench.read_jsonl(run.predictions_path(checkpoint, benchmark))]


def majority_baseline(ref: BenchmarkRef, run: Run, hub_root: str | None = None) -> float:
    """Accuracy of always giving the most common answer (option position for multiple choice) per group.

    Groups: source and question kind for the synthetic set (ovlt.ground.procedural.majority_baseline); answer type and
    number of options for the real benchmarks.
    """
    if ref.name == "synthetic":
        from ovlt.ground.procedural import majority_baseline as synthetic_baseline

        return synthetic_baseline(load_dataset_dir(run.stage_dir("data") / "heldout"))["overall"]
    groups = defaultdict(Counter)
    for r in benchmark_records(ref, run, hub_root):
        answer = r["answer"]
        if r["choices"] and answer in r["choices"]:
            answer = r["choices"].index(answer)
        groups[r["answer_type"], len(r["choices"] or ())][str(answer)] += 1
    hits = sum(c.most_common(1)[0][1] for c in groups.values())
    return hits / max(1, sum(sum(c.values()) for c in groups.values()))


def _comparison_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Consecutive stages, plus each iteration's final GRPO against the previous iteration's."""
    pairs = list(zip(names, names[1:], strict=False))
    grpos = [n for n in names if n.startswith("grpo-")]
    pairs += [(a, b) for a, b in zip(grpos, grpos[1:], strict=False) if (a, b) not in pairs]
    return pairs


def write_summary(cfg: StudyConfig, run: Run, config_path: Path | str | None = None, wall_seconds: float | None = None) -> dict:
    """Gather every evaluated checkpoint into runs/<run>/summary.json (its shape: docs/ARCHITECTURE.md, "The run folder")."""
    names = [n for n in checkpoint_names(cfg) if (run.eval_dir(n) / MANIFEST).exists()]
    stages, verdicts = [], {}
    for name in names:
        entry = {"name": name, "wall_seconds": _checkpoint_manifest(run, name)["wall_seconds"], "benchmarks": {}}
        for ref in cfg.evaluation.benchmarks:
            metrics = json.loads(run.metrics_path(name, ref.name).read_text())
            entry["benchmarks"][ref.name] = {
                "accuracy": metrics["accuracy"], "ci95": metrics["ci95"], "n": metrics["n"],
                "protocol": metrics["protocol"], "prompt": metrics["prompt"], "breakdowns": metrics["breakdowns"],
            }
            verdicts[name, ref.name] = [p["correct"] for p in read_predictions(run, name, ref.name)]
        stages.append(entry)
    comparisons = []
    for a, b in _comparison_pairs(names):
        for ref in cfg.evaluation.benchmarks:
            test = statistics.paired_bootstrap(verdicts[a, ref.name], verdicts[b, ref.name], seed=cfg.seed)
            exact = statistics.mcnemar(verdicts[a, ref.name], verdicts[b, ref.name])
            low, high = test["ci95"]
            comparisons.append({"from": a, "to": b, "benchmark": ref.name, "diff": test["diff"], "ci95": [low, high],
                                "p_value": test["p_value"], "mcnemar_p": exact["p_value"],
                                "significant": not (low <= 0 <= high)})
    stage_walls = {}
    for path in sorted(run.root.glob("**/manifest.json")):
        manifest = json.loads(path.read_text())
        stage_walls[str(path.parent.relative_to(run.root))] = manifest.get("wall_seconds", math.nan)
    summary = {
        "run": run.name,
        "config": str(config_path) if config_path else None,
        "wall_seconds": wall_seconds if wall_seconds is not None else sum(stage_walls.values()),
        "teacher": {"captioner": cfg.models.captioner.model_dump(mode="json"),
                    "reasoner": cfg.models.reasoner.model_dump(mode="json"), "scripted": cfg.uses_scripted_teacher},
        "stages": stages,
        "baselines": {ref.name: majority_baseline(ref, run, cfg.data.hub_root) for ref in cfg.evaluation.benchmarks},
        "comparisons": comparisons,
        "stage_wall_seconds": stage_walls,
    }
    atomic_write_json(run.summary_path, summary)
    return summary


def sampled_accuracy(cfg: StudyConfig, run: Run, checkpoint: str, n: int, temperature: float = 1.0,
                     benchmark: str = "synthetic") -> dict[str, float]:
    """Per item, the share of `n` samples at `temperature` that the benchmark's scorer marks correct.

    The study's measure is greedy (`evaluate`); this one is what GRPO's accuracy reward estimates. Where a
    change moves the sampling distribution but not the most likely answer, only this one sees it. A diagnostic:
    nothing is written to the run.
    """
    ref = next((b for b in cfg.evaluation.benchmarks if b.name == benchmark), None)
    if ref is None:
        raise KeyError(f"benchmark {benchmark!r} is not in the config's evaluation.benchmarks")
    records = benchmark_records(ref, run, cfg.data.hub_root)
    params = SamplingParams(n=n, temperature=temperature, top_p=1.0,
                            max_new_tokens=cfg.evaluation.sampling.max_new_tokens, seed=cfg.seed)
    with study_backend(cfg, cfg.models.student, checkpoint_path(cfg, run, checkpoint)) as backend:
        completions = backend.generate(*_prompts(ref, records), params)
    hits = Counter()
    for j in range(n):
        rows, _ = bench.score_responses(ref.name, records, {r["id"]: c[j].text for r, c in
                                                            zip(records, completions, strict=True)},
                                        protocol=ref.protocol)
        hits.update(row["id"] for row in rows if row["correct"])
    return {r["id"]: hits[r["id"]] / n for r in records}
