"""Can the student learn to read the pictures? Iteration 1 only: data -> teachers -> SFT -> held-out evaluation,
then accuracy per question kind against that kind's majority-answer baseline, and where it goes wrong.

    python benchmarks/learnability.py                                   # configs/tiny.yaml, runs/learnability
    python benchmarks/learnability.py --set sft.max_steps=2000 --set models.reasoner.stepwise=true --run runs/l2

Per question kind it prints: n, the majority baseline, accuracy, the share of chains whose stated facts are all
true of the picture (`ovlt.engines.scripted.stated_facts_right`), and accuracy among those chains. Facts right but the
answer wrong means the student reads the image and fails the reasoning step; facts wrong means it cannot read it.
Stages are the study's own functions; a rerun with the same settings reuses what is finished.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs/tiny.yaml"))
    parser.add_argument("--run", default="runs/learnability")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from ovlt.engines import scripted
    from ovlt.ground.artifacts import Run, load_dataset_dir
    from ovlt.ground.config import load_config, overrides_from
    from ovlt.ground.procedural import kind_key, majority_baseline
    from ovlt.scoring.predictions import read_predictions
    from ovlt.stages.registry import run_stage
    from ovlt.study.order import stage_order

    overrides = overrides_from(args.set)
    cfg = load_config(args.config, overrides=overrides)
    # One iteration is all this measures; the schedule must match the iteration count.
    cfg = load_config(args.config, overrides={**overrides, "iterations": 1, "schedule": [cfg.schedule[0].model_dump()]})
    run = Run(Path(args.run))
    start = time.perf_counter()
    # The study's stages up to SFT-1's evaluation, leaving out the base model's.
    order = stage_order(cfg)
    for ref in order[: next(k for k, ref in enumerate(order) if ref.checkpoint == "sft-1") + 1]:
        if ref.checkpoint != "base":
            began = time.perf_counter()
            run_stage(cfg, run, ref.name, ref.key)
            print(f"{ref.label:<16}{time.perf_counter() - began:8.1f}s", flush=True)
    manifest = run_stage(cfg, run, "evaluate", "sft-1")  # finished above: its manifest
    train = run.manifest("sft", 1)["train"]

    heldout = load_dataset_dir(run.stage_dir("data") / "heldout")
    baseline = majority_baseline(heldout, by_kind=True)
    problems = {row["id"]: row for row in heldout.select_columns(["id", "source", "scene", "answer_type"])}
    groups = defaultdict(lambda: {"n": 0, "correct": 0, "facts": 0, "facts_correct": 0})
    for prediction in read_predictions(run, "sft-1", "synthetic"):
        problem = problems[prediction["id"]]
        for key in (kind_key(problem), "overall"):
            facts = bool(scripted.stated_facts_right(prediction["response"], problem["scene"]))
            group = groups[key]
            group["n"] += 1
            group["correct"] += prediction["correct"]
            group["facts"] += facts
            group["facts_correct"] += facts and prediction["correct"]

    print(f"\nSFT-1: {train['steps']} steps x {cfg.sft.per_device_train_batch_size} on {train['examples']} chains, "
          f"{train['seconds_per_step']:.2f} s/step; held-out loss {train.get('heldout_loss_before', float('nan')):.3f} -> "
          f"{train.get('heldout_loss_after', float('nan')):.3f}; held-out accuracy "
          f"{manifest['counts']['synthetic']['accuracy']:.3f}")
    print(f"{'question kind':<30}{'n':>5}{'majority':>10}{'accuracy':>10}{'facts right':>13}{'acc | facts':>13}")
    for key in sorted(groups, key=lambda k: (k == "overall", k)):
        g = groups[key]
        given = g["facts_correct"] / g["facts"] if g["facts"] else float("nan")
        print(f"{key:<30}{g['n']:>5}{baseline[key]:>10.3f}{g['correct'] / g['n']:>10.3f}{g['facts'] / g['n']:>13.3f}"
              f"{given:>13.3f}")
    print(f"\nwall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
