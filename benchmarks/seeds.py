"""Seed spread of a training stage: rerun SFT-i or GRPO-i of a finished run with other seeds, on the same data,
and evaluate each checkpoint on the held-out benchmark.

    python benchmarks/seeds.py --run runs/tiny --stage grpo --seeds 1 2
    python benchmarks/seeds.py --run runs/tiny --stage sft --seeds 1
    python benchmarks/seeds.py --run runs/tiny --stage grpo --iteration 2 --seeds 1 2
    python benchmarks/seeds.py --run runs/tiny --stage grpo --seeds 0 1 --set grpo.learning_rate=3e-5
    python benchmarks/seeds.py --run runs/tiny --stage grpo --seeds 1 2 --sampled 4
    python benchmarks/seeds.py --run runs/tiny --stage grpo --seeds 0 --grpo-problems 1000 --sampled 4

`--set` overrides the config of the reruns only (the run's own row stays as it ran), so a setting is compared
with the run's stage on the same data; such copies are named
runs/<run>-<stage><i>-seed<k>-<hash of the overrides>.

Each seed works in a copy of the run (runs/<run>-<stage><i>-seed<k>) holding the finished stages before the one
rerun, so data, teachers, earlier iterations and (for GRPO) the SFT-i checkpoint and the problem selection are the
run's own; only the trainer's seed differs. An override of `select_hard` redoes the selection once per copy, with
the run's seed.
Prints per seed: held-out accuracy, its change over the stage's starting point (majority baseline for SFT, SFT-i
for GRPO) and, for GRPO, the accuracy reward of the first and last quarter of the run; then mean and standard
deviation over all seeds, the run's own included. `--sampled N` (GRPO) adds held-out accuracy under sampling, N
samples per problem at temperature 1 (`ovlt.stages.evaluation.sampled_accuracy`), for SFT-i and every GRPO-i, with the
paired bootstrap interval of each change: what GRPO's accuracy reward estimates, where greedy accuracy may not move.

`--grpo-problems N` (GRPO) measures held-out accuracy against the number of distinct GRPO problems: the reruns draw
`--grpo-candidates` candidates (default 3N: a third or more of the default's candidates fall in band) from the
iteration's pool, select_hard keeps N, and GRPO trains for as many steps as show each problem once (N / the
prompts of one step, `generation_batch_size / num_generations`). The candidates come from the run's pool after the
iteration's SFT problems, where the next iteration's would be, so only the iteration itself can be rerun this way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RERUN = {"sft": ("sft", "select_hard", "grpo"), "grpo": ("grpo",)}  # an iteration's stages a rerun redoes


def kept_parts(source: Path, stage: str, iteration: int) -> list[str]:
    """The parts of a finished run that come before `stage` of `iteration`: what a rerun starts from."""
    parts = ["config.yaml", "data", "decontaminate", "student", *(f"iter{j}" for j in range(1, iteration))]
    parts += [f"iter{iteration}/{d.name}" for d in sorted((source / f"iter{iteration}").iterdir())
              if d.name not in RERUN[stage]]
    checkpoints = ["base", *(f"{kind}-{j}" for j in range(1, iteration) for kind in ("sft", "grpo"))]
    checkpoints += [f"sft-{iteration}"] if stage == "grpo" else []
    return parts + [f"eval/{c}" for c in checkpoints if (source / "eval" / c).exists()]


def reward_quarters(stage_dir: Path) -> tuple[float, float]:
    rows = [json.loads(line) for line in (stage_dir / "log.jsonl").read_text().splitlines()]
    rewards = [row["rewards/accuracy_reward/mean"] for row in rows if "rewards/accuracy_reward/mean" in row]
    quarter = max(1, len(rewards) // 4)
    return statistics.mean(rewards[:quarter]), statistics.mean(rewards[-quarter:])


def heldout_accuracy(cfg, run, checkpoint: str) -> float:
    """Greedy held-out accuracy of a checkpoint under the synthetic entry's headline protocol (evaluated if need be)."""
    from ovlt.stages.evaluation import scored_by
    from ovlt.stages.registry import run_stage

    ref = next(b for b in cfg.evaluation.benchmarks if b.key == "synthetic")
    return run_stage(cfg, run, "evaluate", checkpoint)["counts"]["synthetic"][scored_by(ref)[0]]["accuracy"]


def measure(cfg, run, stage: str, iteration: int, selection_cfg=None) -> dict:
    """Train and evaluate `stage` of `iteration`; for GRPO, first redo the problem selection if `selection_cfg`
    changes it (with the run's own seed, so that every trainer seed sees the same problems)."""
    from ovlt.stages.registry import run_stage

    if stage == "grpo" and selection_cfg is not None:
        run_stage(selection_cfg, run, "select_hard", iteration)  # finished (the run's own) unless overrides change it
    run_stage(cfg, run, stage, iteration)
    checkpoint = f"{stage}-{iteration}"
    accuracy = heldout_accuracy(cfg, run, checkpoint)
    row = {"seed": cfg.seed, "accuracy": accuracy}
    if stage == "grpo":
        row["reward_first"], row["reward_last"] = reward_quarters(run.stage_dir("grpo", iteration))
    else:
        train = run.manifest("sft", iteration)["train"]
        row["loss_before"], row["loss_after"] = train.get("heldout_loss_before"), train.get("heldout_loss_after")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished study's run folder")
    parser.add_argument("--stage", choices=["sft", "grpo"], default="grpo")
    parser.add_argument("--iteration", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--grpo-problems", type=int, default=0, metavar="N",
                        help="GRPO: train on N distinct problems, each once (see above)")
    parser.add_argument("--grpo-candidates", type=int, default=0, metavar="M",
                        help="with --grpo-problems: candidates to select them from (default 3N)")
    parser.add_argument("--sampled", type=int, default=0, metavar="N",
                        help="GRPO: also held-out accuracy under sampling, N samples per problem at temperature 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from ovlt.ground.artifacts import Run
    from ovlt.ground.config import load_config, overrides_from
    from ovlt.stages import evaluation

    source = Path(args.run)
    base_cfg = load_config(source / "config.yaml")
    origin = Run(source)
    rows = [measure(base_cfg, origin, args.stage, args.iteration) | {"run": source}]  # finished: read manifests
    overrides = overrides_from(args.set)
    if args.grpo_problems:
        if args.stage != "grpo":
            parser.error("--grpo-problems reruns GRPO: use it with --stage grpo")
        overrides = problem_overrides(base_cfg, args.iteration, args.grpo_problems,
                                      args.grpo_candidates or 3 * args.grpo_problems, overrides)
    tag = f"-{hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]}" if overrides else ""
    selection_cfg = load_config(source / "config.yaml", overrides=overrides)  # the run's seed: one selection
    for seed in args.seeds:
        work = source.with_name(f"{source.name}-{args.stage}{args.iteration}-seed{seed}{tag}")
        for part in kept_parts(source, args.stage, args.iteration):
            if not (work / part).exists():
                copy = shutil.copytree if (source / part).is_dir() else shutil.copy2
                (work / part).parent.mkdir(parents=True, exist_ok=True)
                copy(source / part, work / part)
        cfg = load_config(source / "config.yaml", overrides={**overrides, "seed": seed})
        rows.append(measure(cfg, Run(work), args.stage, args.iteration, selection_cfg) | {"run": work})

    start = f"sft-{args.iteration}"
    baseline = (heldout_accuracy(base_cfg, origin, start)  # finished: read
                if args.stage == "grpo" else evaluation.majority_baseline(base_cfg.evaluation.benchmarks[0], origin))
    label = f"vs {start.upper()}" if args.stage == "grpo" else "vs majority"
    print(f"\n{args.stage.upper()}-{args.iteration} of {source} by seed (held-out n = {base_cfg.data.heldout_size}); "
          f"first row: the run itself{'; the others with ' + ' '.join(args.set) if args.set else ''}")
    columns = ("reward 1st 1/4", "reward last 1/4") if args.stage == "grpo" else ("loss before", "loss after")
    print(f"{'seed':>5}{'accuracy':>10}{label:>13}{columns[0]:>17}{columns[1]:>17}")
    for row in rows:
        extra = (f"{row['reward_first']:>17.3f}{row['reward_last']:>17.3f}" if args.stage == "grpo"
                 else f"{row['loss_before'] or float('nan'):>17.3f}{row['loss_after'] or float('nan'):>17.3f}")
        print(f"{row['seed']:>5}{row['accuracy']:>10.3f}{row['accuracy'] - baseline:>+13.3f}{extra}")
    # The mean is over runs of one setting: with overrides, the reruns only.
    accuracies = [row["accuracy"] for row in (rows[1:] if overrides else rows)]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(f"mean {statistics.mean(accuracies):.3f} ({statistics.mean(accuracies) - baseline:+.3f} {label}), "
          f"standard deviation {spread:.3f} over {len(accuracies)} seeds")
    if args.sampled and args.stage == "grpo":
        print_sampled(base_cfg, origin, rows, args.sampled, args.iteration)


def problem_overrides(cfg, iteration: int, problems: int, candidates: int, overrides: dict) -> dict:
    """`overrides` plus those that make GRPO-i train on `problems` distinct problems, each once: the iteration's
    schedule entry (`candidates` drawn, `problems` kept) and grpo.max_steps."""
    import tempfile

    from ovlt.ground.config import _merge
    from ovlt.stages.training.grpo import grpo_args

    cfg = cfg.model_copy(update={"grpo": cfg.grpo.model_copy(update=overrides.get("grpo", {}))})
    with tempfile.TemporaryDirectory() as scratch:
        args = grpo_args(cfg, scratch)
    per_step = args.generation_batch_size // args.num_generations
    schedule = [plan.model_dump() for plan in cfg.schedule]
    schedule[iteration - 1] |= {"grpo_candidates": candidates, "grpo_problems": problems}
    return _merge(overrides, {"schedule": schedule, "grpo": {"max_steps": -(-problems // per_step)}})


def print_sampled(cfg, origin, rows: list[dict], n: int, iteration: int) -> None:
    """Held-out accuracy under sampling of SFT-i and each row's GRPO-i, with the paired change."""
    from ovlt.ground.artifacts import Run
    from ovlt.scoring.statistics import paired_bootstrap
    from ovlt.stages.evaluation import sampled_accuracy

    start = sampled_accuracy(cfg, origin, f"sft-{iteration}", n)
    ids = list(start)
    print(f"\nheld-out accuracy under sampling ({n} samples per problem, temperature 1): SFT-{iteration} "
          f"{statistics.mean(start.values()):.3f}")
    print(f"{'seed':>5}{'sampled':>10}{f'vs SFT-{iteration}':>10}{'95% CI':>18}")
    for row in rows:
        shares = sampled_accuracy(cfg, Run(row["run"]), f"grpo-{iteration}", n)
        change = paired_bootstrap([start[i] for i in ids], [shares[i] for i in ids], seed=cfg.seed)
        low, high = change["ci95"]
        print(f"{row['seed']:>5}{statistics.mean(shares.values()):>10.3f}{change['diff']:>+10.3f}"
              f"{f'[{low:+.3f}, {high:+.3f}]':>18}")


if __name__ == "__main__":
    main()
