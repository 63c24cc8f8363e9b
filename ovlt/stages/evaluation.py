"""Evaluate checkpoints on the configured benchmarks, and summarise the study.

`evaluate(cfg, run, checkpoint)` generates, per configured benchmark entry, one greedy response per item under the
entry's prompt style, with the student's generation backend, and scores that one generation by each of the entry's
protocols (the one scorer in `ovlt.scoring.matching`), and, unless `evaluation.sampled.n` is 0, `n` samples per item at
`evaluation.sampled.temperature`, scored likewise: accuracy under sampling (the mean share of an item's samples that
are right, what GRPO's accuracy reward estimates) and pass@k (k = n: an item counts when any sample is right), the
two measures GRPO moves where greedy accuracy may not. Where the entry sets `judge`, a language-model judge
(`ovlt.stages.judge`) re-checks the free-form answers the rules marked wrong, as a further verdict set
`<protocol>+judge` (greedy only). It writes `eval/<checkpoint>/<entry>/predictions.jsonl` (each response once, with
its verdict per protocol and its samples' count of right ones per protocol) and `metrics.json` (one result per
protocol). `write_summary` gathers every checkpoint into `summary.json`: per entry and protocol, greedy accuracy,
accuracy under sampling and pass@k, each with its 95% interval, named with the prompt and protocol that produced them;
the majority-answer baseline, wall times, and paired comparisons between stages under each protocol on each measure.
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
from ovlt.scoring.predictions import grpo_effect_counts, read_predictions, read_responses
from ovlt.scoring.prompts import student_chat
from ovlt.stages.judge import ChatJudge
from ovlt.stages.registry import Outcome, checkpoint_stage, output, stage

log = logging.getLogger(__name__)

SHARD_SIZE = 256
JUDGE_SHARD_SIZE = 64  # judged answers saved together: a failed judge loses at most this many


def benchmark_records(ref: BenchmarkRef, run: Run, hub_root: str | None = None) -> list[dict]:
    """A configured benchmark's records: the run's held-out set, the official local files, or the hub (read from
    `hub_root`, the config's data.hub_root, when set)."""
    if ref.name == "synthetic":
        records = bench.load_local("synthetic", output(run, "data", "heldout"))
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
    """The student's chats and images for benchmark records, as the entry's prompt style asks them."""
    images = [[_open_image(i) for i in record_images(r)] for r in records]
    chats = [student_chat(bench.build_prompt(ref.name, r, ref.prompt), images=len(shown))
             for r, shown in zip(records, images, strict=True)]
    return chats, images


def record_images(record: dict) -> list:
    """A benchmark record's images, in the order the prompt shows them (EMMA and MMMU-Pro items can carry several)."""
    return record.get("images") or ([record["image"]] if record["image"] is not None else [])


def scored_by(ref: BenchmarkRef) -> list[str]:
    """The protocols that score a benchmark entry's responses (`protocols`, else the one `protocol`), the headline
    first."""
    return list(ref.protocols) or [ref.protocol]


def max_new_tokens(cfg: StudyConfig, ref: BenchmarkRef) -> int:
    """The entry's response budget: its own, else evaluation.sampling's."""
    return ref.max_new_tokens or cfg.evaluation.sampling.max_new_tokens


def _result(protocol: str, scorer: str, rows: list[dict], breakdowns: dict, cfg: StudyConfig) -> dict:
    """One protocol's numbers over one generation: accuracy with its 95% interval, n, breakdowns."""
    interval = statistics.accuracy_ci([r["correct"] for r in rows], n_boot=cfg.evaluation.bootstrap_samples,
                                      seed=cfg.seed)
    correct = sum(r["correct"] for r in rows)
    return {"protocol": protocol, "scorer": scorer, "accuracy": correct / len(rows) if rows else 0.0,
            "ci95": [interval["low"], interval["high"]], "n": interval["n"], "correct": correct,
            "breakdowns": breakdowns}


def sampled_params(cfg: StudyConfig, ref: BenchmarkRef) -> SamplingParams | None:
    """The sampling behind accuracy under sampling and pass@k (`evaluation.sampled`); None when it is off."""
    sampled = cfg.evaluation.sampled
    if not sampled.n:
        return None
    return SamplingParams(n=sampled.n, temperature=sampled.temperature, top_p=1.0,
                          max_new_tokens=max_new_tokens(cfg, ref), seed=cfg.seed)


def sample_hits(ref: BenchmarkRef, records: list[dict], samples: dict[str, list[str]], protocol: str) -> dict[str, int]:
    """Per item, how many of its samples `protocol` marks correct (an item without samples: 0)."""
    n = max((len(texts) for texts in samples.values()), default=0)
    hits = dict.fromkeys((r["id"] for r in records), 0)
    for j in range(n):
        rows, _ = bench.score_responses(ref.name, records, {i: texts[j] for i, texts in samples.items()
                                                            if j < len(texts)}, protocol=protocol)
        for row in rows:
            hits[row["id"]] += row["correct"]
    return hits


def sampled_measures(hits: list[int], n: int, temperature: float, cfg: StudyConfig) -> dict:
    """Accuracy under sampling (mean share of right samples) and pass@k (share of items with a right sample), each
    with its 95% bootstrap interval over items."""

    def measure(values: list[float]) -> dict:
        interval = statistics.accuracy_ci(values, n_boot=cfg.evaluation.bootstrap_samples, seed=cfg.seed)
        return {"accuracy": sum(values) / len(values), "ci95": [interval["low"], interval["high"]]}

    return {"sampled": {"n": n, "temperature": temperature, **measure([h / n for h in hits])},
            "pass_at_k": {"k": n, **measure([float(h > 0) for h in hits])}}


def score_generation(cfg: StudyConfig, ref: BenchmarkRef, records: list[dict],
                     responses: dict[str, str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """The entry's responses scored by each of its protocols: {protocol: rows (id, extracted, rule, correct)}, and
    one result per protocol (`protocol` as configured, `scorer` the rules that ran, e.g. official -> mathvista)."""
    verdicts, results = {}, []
    for protocol in scored_by(ref):
        rows, scored = bench.score_responses(ref.name, records, responses, protocol=protocol)
        verdicts[protocol] = rows
        results.append({**_result(protocol, scored["protocol"], rows, scored["breakdowns"], cfg),
                        "missing": scored["missing"], "rules": scored["rules"],
                        **({"benchmark_metrics": scored["benchmark_metrics"]} if "benchmark_metrics" in scored else {})})
    return verdicts, results


def _write_entry(run: Run, checkpoint: str, ref: BenchmarkRef, generated: dict[str, dict],
                 verdicts: dict[str, list[dict]], metrics: dict, hits: dict[str, dict[str, int]]) -> None:
    """predictions.jsonl (each response once, with its verdict per protocol and, when sampled, its samples' count of
    right ones per protocol) and metrics.json of one entry."""
    by_protocol = {p: {row["id"]: row for row in rows} for p, rows in verdicts.items()}
    order = [row["id"] for row in next(iter(verdicts.values()))]
    predictions = [{"id": i, "response": generated[i]["response"] if i in generated else "",
                    "num_tokens": generated[i]["num_tokens"] if i in generated else 0,
                    "verdicts": {p: {k: rows[i][k] for k in ("extracted", "rule", "correct")}
                                 for p, rows in by_protocol.items()},
                    **({"sampled_right": {p: counts[i] for p, counts in hits.items()}} if hits else {})}
                   for i in order]
    atomic_write_text(run.predictions_path(checkpoint, ref.key),
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
    atomic_write_json(run.metrics_path(checkpoint, ref.key), metrics)


def _judge_entry(cfg: StudyConfig, st: Stage, ref: BenchmarkRef, records: list[dict],
                 verdicts: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], list[dict], dict]:
    """Each protocol's verdicts re-checked by the judge where the rules said wrong on a free-form answer they could
    extract, as `<protocol>+judge`, their results, and the judge as summary.json names it. Answers already judged (in
    this stage's shards) are not asked again, so a rerun after a failure asks only the rest."""
    judge = ChatJudge.from_config(cfg.evaluation.judge)
    by_id = {r["id"]: r for r in records}
    store = st.shards(f"{ref.key}.judge")

    def key(row: dict) -> str:
        return json.dumps([row["id"], row["extracted"]])

    wanted = {key(row): row for rows in verdicts.values() for row in rows if not row["correct"] and row["extracted"]
              and by_id[row["id"]]["answer_type"] != "multiple_choice"}
    todo = [k for k in wanted if k not in store.done_keys("key")]
    for start in range(0, len(todo), JUDGE_SHARD_SIZE):
        chunk = [wanted[k] for k in todo[start:start + JUDGE_SHARD_SIZE]]
        answers = judge.ask_many([(by_id[r["id"]]["prompt"], by_id[r["id"]]["answer"], r["extracted"]) for r in chunk])
        store.write([{"key": key(r), **a} for r, a in zip(chunk, answers, strict=True)])
    judged = {row["key"]: row for row in store.rows()}
    spec = bench.get_benchmark(ref.name)
    extra_verdicts, extra_results = {}, []
    for protocol, rows in verdicts.items():
        asked = [judged[key(r)] for r in rows if key(r) in wanted]
        rechecked = [{**r, "correct": True, "rule": "judge"} if key(r) in wanted and judged[key(r)]["correct"] else r
                     for r in rows]
        name = f"{protocol}+judge"
        extra_verdicts[name] = rechecked
        breakdowns = {field: bench.tally(rechecked, by_id, field) for field in spec.breakdown_keys}
        extra_results.append({**_result(name, f"{spec.protocol(protocol)}+judge", rechecked, breakdowns, cfg),
                              "judge": {"asked": len(asked), "overturned": sum(a["correct"] is True for a in asked),
                                        "no_verdict": sum(a["correct"] is None for a in asked)}})
    return extra_verdicts, extra_results, judge.describe()


@stage("evaluate")
def evaluate(cfg: StudyConfig, run: Run, st: Stage, checkpoint: str) -> Outcome:
    """Stage `evaluate` of one checkpoint: for every configured benchmark entry, one greedy generation under the
    entry's prompt, scored by each of its protocols (and re-checked by the judge where the entry asks), and the
    samples behind accuracy under sampling and pass@k (`evaluation.sampled`)."""
    path = checkpoint_path(cfg, run, checkpoint)
    counts = {}
    # The backend opens at the first generation with items left (none after a resume past the last shard) and
    # closes however the stage ends.
    with ExitStack() as opened:
        backend = None

        def generate(ref: BenchmarkRef, records: list[dict], store, params: SamplingParams) -> dict[str, list]:
            """Each record's completions under `params`, generated in shards of `store` (those saved are kept)."""
            nonlocal backend
            done = store.done_keys()
            todo = [r for r in records if r["id"] not in done]
            if todo and backend is None:
                backend = opened.enter_context(study_backend(cfg, cfg.models.student, path))
            size = SHARD_SIZE * (backend.engines if backend is not None else 1)  # SHARD_SIZE items per engine
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                completions = backend.generate(*_prompts(ref, chunk), params)
                store.write([{"id": r["id"], "responses": [c.text for c in cs], "num_tokens": cs[0].num_tokens}
                             for r, cs in zip(chunk, completions, strict=True)])
            return {row["id"]: row for row in store.rows()}

        for ref in cfg.evaluation.benchmarks:
            params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens(cfg, ref),
                                    seed=cfg.seed)
            records = benchmark_records(ref, run, cfg.data.hub_root)
            generated = {i: {"response": row["responses"][0], "num_tokens": row["num_tokens"]}
                         for i, row in generate(ref, records, st.shards(ref.key), params).items()}
            verdicts, results = score_generation(cfg, ref, records, {i: g["response"] for i, g in generated.items()})
            hits = {}
            sampling = sampled_params(cfg, ref)
            if sampling is not None:
                samples = {i: row["responses"] for i, row in
                           generate(ref, records, st.shards(f"{ref.key}.sampled"), sampling).items()}
                for result in results:
                    hits[result["protocol"]] = sample_hits(ref, records, samples, result["protocol"])
                    result |= sampled_measures([hits[result["protocol"]][r["id"]] for r in records], sampling.n,
                                               sampling.temperature, cfg)
            metrics = {"benchmark": ref.name, "entry": ref.key, "prompt": ref.prompt,
                       "max_new_tokens": params.max_new_tokens, "results": results}
            # The rules' verdicts are on disk before the judge is asked: a judge that fails loses none of them.
            _write_entry(run, checkpoint, ref, generated, verdicts, metrics, hits)
            if ref.judge:
                judged_verdicts, judged_results, judge = _judge_entry(cfg, st, ref, records, verdicts)
                verdicts |= judged_verdicts
                metrics = {**metrics, "results": results + judged_results, "judge": judge}
                _write_entry(run, checkpoint, ref, generated, verdicts, metrics, hits)
            counts[ref.key] = {"items": len(records), **{r["protocol"]: {"correct": r["correct"], "accuracy": r["accuracy"]}
                                                         for r in metrics["results"]}}
            for r in metrics["results"]:
                log.info("%s on %s (prompt %s, protocol %s): %d/%d = %.3f [%.3f, %.3f]", checkpoint, ref.key,
                         ref.prompt, r["protocol"], r["correct"], r["n"], r["accuracy"], *r["ci95"])
    return Outcome(counts, {"checkpoint": checkpoint, "model_path": path})


# --- the study's summary -------------------------------------------------------------------------------


def majority_baseline(ref: BenchmarkRef, run: Run, hub_root: str | None = None) -> float:
    """Accuracy of always giving the most common answer (option position for multiple choice) per group.

    Groups: source and question kind for the synthetic set (ovlt.ground.procedural.majority_baseline); answer type and
    number of options for the real benchmarks.
    """
    if ref.name == "synthetic":
        from ovlt.ground.procedural import majority_baseline as synthetic_baseline

        return synthetic_baseline(load_dataset_dir(output(run, "data", "heldout")))["overall"]
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


# What summary.json compares between stages: greedy accuracy (each item right or wrong), accuracy under sampling (each
# item's share of right samples) and pass@k (each item right in any sample).
MEASURES = ("greedy", "sampled", "pass@k")


def write_summary(cfg: StudyConfig, run: Run, config_path: Path | str | None = None, wall_seconds: float | None = None) -> dict:
    """Gather every evaluated checkpoint into runs/<run>/summary.json (its shape: docs/ARCHITECTURE.md, "The run folder").

    Every accuracy is one result of one entry under one protocol, and names both: the benchmark, the entry, the
    prompt style and the protocol (with the scorer that ran it); comparisons are made within one entry and protocol,
    on each measure (MEASURES) both checkpoints have. `grpo_effects` holds, per GRPO-i against SFT-i, entry and
    protocol where both sampled, the item counts behind those comparisons (`ovlt.scoring.predictions.grpo_effect_counts`).
    """
    names = [n for n in checkpoint_names(cfg) if (run.eval_dir(n) / MANIFEST).exists()]
    stages, verdicts, judges = [], {}, {}  # verdicts: (checkpoint, entry, protocol, measure) -> per-item values
    sampled_n = {}  # (checkpoint, entry, protocol) -> samples per item
    for name in names:
        entry = {"name": name, "wall_seconds": _checkpoint_manifest(run, name)["wall_seconds"], "results": []}
        for ref in cfg.evaluation.benchmarks:
            metrics = json.loads(run.metrics_path(name, ref.key).read_text())
            if "judge" in metrics:
                judges[ref.key] = metrics["judge"]
            for result in metrics["results"]:
                entry["results"].append({
                    "benchmark": ref.name, "entry": ref.key, "prompt": metrics["prompt"], **{
                        k: result[k] for k in ("protocol", "scorer", "accuracy", "ci95", "n", "sampled", "pass_at_k",
                                               "breakdowns", "judge") if k in result}})
                verdicts[name, ref.key, result["protocol"], "greedy"] = [
                    p["correct"] for p in read_predictions(run, name, ref.key, result["protocol"])]
                if "sampled" in result:
                    n = sampled_n[name, ref.key, result["protocol"]] = result["sampled"]["n"]
                    right = [row["sampled_right"][result["protocol"]] for row in read_responses(run, name, ref.key)]
                    verdicts[name, ref.key, result["protocol"], "sampled"] = [h / n for h in right]
                    verdicts[name, ref.key, result["protocol"], "pass@k"] = [h > 0 for h in right]
        stages.append(entry)
    comparisons = []
    for a, b in _comparison_pairs(names):
        for result in stages[names.index(b)]["results"]:
            entry, protocol = result["entry"], result["protocol"]
            for measure in MEASURES:
                if (a, entry, protocol, measure) not in verdicts or (b, entry, protocol, measure) not in verdicts:
                    continue
                before, after = verdicts[a, entry, protocol, measure], verdicts[b, entry, protocol, measure]
                test = statistics.paired_bootstrap(before, after, seed=cfg.seed)
                low, high = test["ci95"]
                comparisons.append({"from": a, "to": b, "benchmark": result["benchmark"], "entry": entry,
                                    "prompt": result["prompt"], "protocol": protocol, "measure": measure,
                                    "diff": test["diff"], "ci95": [low, high], "p_value": test["p_value"],
                                    # McNemar's test needs a right/wrong verdict per item: not for shares of samples
                                    "mcnemar_p": (statistics.mcnemar(before, after)["p_value"]
                                                  if measure != "sampled" else None),
                                    "significant": not (low <= 0 <= high)})
    # Each GRPO-i against SFT-i where both sampled: the greedy flips and the moves of the share of right samples
    # behind the comparisons, which the report puts in words.
    effects = []
    for a, b in _comparison_pairs(names):
        if not (a.startswith("sft-") and b == "grpo-" + a.removeprefix("sft-")):
            continue
        for result in stages[names.index(b)]["results"]:
            entry, protocol = result["entry"], result["protocol"]
            if (a, entry, protocol) in sampled_n and (b, entry, protocol) in sampled_n:
                effects.append({"from": a, "to": b, "benchmark": result["benchmark"], "entry": entry,
                                "prompt": result["prompt"], "protocol": protocol,
                                **grpo_effect_counts(read_responses(run, a, entry), read_responses(run, b, entry), protocol,
                                              sampled_n[a, entry, protocol])})
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
        "baselines": {ref.key: majority_baseline(ref, run, cfg.data.hub_root) for ref in cfg.evaluation.benchmarks},
        "comparisons": comparisons,
        "grpo_effects": effects,
        # The judge behind every `<protocol>+judge` result, per entry: its endpoint, model and prompt.
        "judges": judges,
        "stage_wall_seconds": stage_walls,
    }
    atomic_write_json(run.summary_path, summary)
    return summary


def sampled_accuracy(cfg: StudyConfig, run: Run, checkpoint: str, n: int, temperature: float = 1.0,
                     benchmark: str = "synthetic") -> dict[str, float]:
    """Per item, the share of `n` samples at `temperature` that the entry's headline protocol marks correct: the
    `evaluate` stage's accuracy under sampling for other `n` or `temperature`, as a diagnostic that writes nothing to
    the run. `benchmark` names a configured entry (its label, else its benchmark).
    """
    ref = next((b for b in cfg.evaluation.benchmarks if b.key == benchmark), None)
    if ref is None:
        raise KeyError(f"benchmark {benchmark!r} is not in the config's evaluation.benchmarks")
    records = benchmark_records(ref, run, cfg.data.hub_root)
    params = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens(cfg, ref),
                            seed=cfg.seed)
    with study_backend(cfg, cfg.models.student, checkpoint_path(cfg, run, checkpoint)) as backend:
        completions = backend.generate(*_prompts(ref, records), params)
    samples = {r["id"]: [c.text for c in cs] for r, cs in zip(records, completions, strict=True)}
    hits = sample_hits(ref, records, samples, scored_by(ref)[0])
    return {i: h / n for i, h in hits.items()}
