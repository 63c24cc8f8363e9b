"""The study's first two stages: draw the training pool and the held-out set, then decontaminate the pool.

The pool holds every iteration's fresh problems (SFT problems and GRPO candidates, see
`ovlt.ground.layout.pool_ranges`), drawn from the configured sources in proportion to their weights (what a
source cannot supply is drawn from the others, with a warning), plus a margin for what decontamination
drops. The held-out synthetic benchmark is drawn from the test split, which never shares a scene with train.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import datasets

from ovlt.ground.artifacts import Run, Stage, atomic_write_text, load_dataset_dir, save_dataset
from ovlt.ground.config import StudyConfig
from ovlt.ground.hub import load_source
from ovlt.ground.layout import pool_size
from ovlt.ground.procedural import generate
from ovlt.ground.schema import check_unique_ids
from ovlt.stages.registry import Outcome, output, stage

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic/"
DECONTAMINATION_MARGIN = 0.1  # extra problems drawn so that drops do not starve the schedule


def _split_by_weight(weights: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` over the named weights (largest remainders, so the counts add up exactly)."""
    scale = total / sum(weights.values())
    counts = {name: int(w * scale) for name, w in weights.items()}
    by_remainder = sorted(weights, key=lambda name: weights[name] * scale - counts[name], reverse=True)
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def _draw(cfg: StudyConfig, name: str, count: int, split: str) -> datasets.Dataset:
    if name.startswith(SYNTHETIC):
        family = name[len(SYNTHETIC):]
        level = cfg.data.procedural.difficulty.get(family)
        return generate(count, seed=cfg.seed, split=split, families=[family],
                        difficulty=None if level is None else {family: level}, image_size=cfg.data.procedural.image_size)
    return load_source(name, split=split, limit=count, hub_root=cfg.data.hub_root)


def _draw_pool(cfg: StudyConfig, wanted: int) -> tuple[dict[str, datasets.Dataset], dict[str, dict[str, int]]]:
    """`wanted` training problems split over the sources by weight: (problems per source, per source its
    {"asked": share by weight, "supplied": what it gave of that share, "final": what the pool holds}).

    A source that cannot supply what it is asked (GEOS has 498 problems, FigureQA 100,000) is logged as a
    WARNING, and the shortfall goes to the sources that still have problems, in proportion to their weights,
    until the pool is full or every source is exhausted.
    """
    weights = {s.name: s.weight for s in cfg.data.sources}
    asked = _split_by_weight(weights, wanted)
    target, drawn, supplied, exhausted = dict(asked), {}, {}, set()
    while True:
        fell_short = []
        for name, count in target.items():
            if count and name not in exhausted and len(drawn.get(name, ())) < count:
                drawn[name] = _draw(cfg, name, count, "train")
                supplied.setdefault(name, min(len(drawn[name]), asked[name]))
                if len(drawn[name]) < count:
                    fell_short.append((name, count, len(drawn[name])))
                    exhausted.add(name)
                    target[name] = len(drawn[name])
        short = wanted - sum(len(part) for part in drawn.values())
        open_sources = {name: weight for name, weight in weights.items() if name not in exhausted}
        for name, count, gave in fell_short:
            log.warning("data: source %r supplied %d of the %d problems it was asked for; %s", name, gave, count,
                        f"the shortfall goes to {', '.join(open_sources)} in proportion to their weights"
                        if open_sources else "no other source has problems left")
        if short <= 0 or not open_sources:
            break
        for name, extra in _split_by_weight(open_sources, short).items():
            target[name] += extra
    if short > 0:
        log.warning("data: every source is exhausted; the pool holds %d of the %d problems wanted", wanted - short,
                    wanted)
    by_source = {name: {"asked": asked[name], "supplied": supplied.get(name, 0), "final": len(drawn.get(name, ()))}
                 for name in weights}
    return drawn, by_source


def synthetic_families(cfg: StudyConfig) -> list[str]:
    return [s.name[len(SYNTHETIC):] for s in cfg.data.sources if s.name.startswith(SYNTHETIC)]


@stage("data")
def build_data(cfg: StudyConfig, run: Run, st: Stage) -> Outcome:
    """Stage `data`: data/train (the pool, shuffled) and data/heldout (the synthetic benchmark)."""
    wanted = int(pool_size(cfg) * (1 + DECONTAMINATION_MARGIN)) + 1
    drawn, by_source = _draw_pool(cfg, wanted)
    train = datasets.concatenate_datasets(list(drawn.values())).shuffle(seed=cfg.seed).flatten_indices()
    check_unique_ids(train["id"], f"{run.stage_dir('data')} (sources {', '.join(s.name for s in cfg.data.sources)})")
    save_dataset(train, st.dir / "train")
    counts = {"train": len(train), "train_by_source": dict(Counter(train["source"])), "by_source": by_source,
              "shortfall_by_source": {name: c["asked"] - c["supplied"] for name, c in by_source.items()
                                      if c["supplied"] < c["asked"]}}
    families = synthetic_families(cfg)
    if families:
        levels = {f: cfg.data.procedural.difficulty[f] for f in families if f in cfg.data.procedural.difficulty}
        heldout = generate(cfg.data.heldout_size, seed=cfg.seed, split="test", families=families,
                           difficulty=levels or None, image_size=cfg.data.procedural.image_size)
        save_dataset(heldout, st.dir / "heldout")
        counts["heldout"] = len(heldout)
    return Outcome(counts)


def benchmark_items(cfg: StudyConfig, run: Run, name: str) -> datasets.Dataset:
    """A benchmark's items as problems (image + question) for decontamination."""
    if name == "synthetic":
        return load_dataset_dir(output(run, "data", "heldout"))
    from ovlt.ground.config import BenchmarkRef
    from ovlt.stages.evaluation import benchmark_problems

    ref = next((b for b in cfg.evaluation.benchmarks if b.name == name), None) or BenchmarkRef(name=name)
    return benchmark_problems(ref, run, cfg.data.hub_root)


@stage("decontaminate")
def decontaminate_pool(cfg: StudyConfig, run: Run, st: Stage) -> Outcome:
    """Stage `decontaminate`: drop every pool problem that matches a benchmark item (image or question)."""
    from ovlt.ground.decontaminate import decontaminate

    d = cfg.decontaminate
    pool = load_dataset_dir(output(run, "data", "train"))
    drops = []
    if d.enabled and d.benchmarks:
        benchmarks = {name: benchmark_items(cfg, run, name) for name in d.benchmarks}
        pool, drops = decontaminate(pool, benchmarks, phash_distance=d.phash_max_distance, ngram=d.ngram,
                                    threshold=d.ngram_overlap)
    save_dataset(pool, st.dir / "train")
    atomic_write_text(st.dir / "drops.jsonl", "".join(json.dumps(row) + "\n" for row in drops))
    by_pair = Counter(f"{row['source']} x {row['benchmark']}" for row in drops)
    log.info("decontaminate: kept %d problems, dropped %d %s", len(pool), len(drops), dict(by_pair))
    counts = {"in": len(pool) + len(drops), "out": len(pool), "dropped": len(drops),
              "dropped_by_source_and_benchmark": dict(by_pair),
              "dropped_by_reason": dict(Counter(row["reason"].split(" ")[0] for row in drops))}
    return Outcome(counts)
