"""Seed spread of whole studies: the same config run with other seeds, read from each run's summary.json.

    python benchmarks/study_seeds.py runs/tiny runs/tiny-seed1 runs/tiny-seed2

A run with another seed is the config plus `seed: k` (a config that `extends` it; docs/ARCHITECTURE.md,
"The config"), so its pool, held-out set, teachers' draws and trainers all differ. Prints, per benchmark entry and
protocol, every stage's greedy accuracy, accuracy under sampling and pass@k in each run with the mean and standard
deviation over runs; then every paired comparison between stages (summary.json's `comparisons`) in each run, with its
95% interval, and how many runs' intervals lie above and below 0. `benchmarks/seeds.py` instead reruns one
training stage of one run with other trainer seeds, on the same data.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def read(run: Path) -> dict:
    path = run / "summary.json"
    if not path.exists():
        raise SystemExit(f"error: {path}: no summary.json (is the study finished?)")
    return json.loads(path.read_text())


def measures(result: dict) -> dict[str, float]:
    """A stage's result on one entry and protocol: greedy accuracy, and under sampling and pass@k where sampled."""
    out = {"greedy": result["accuracy"]}
    if "sampled" in result:
        out["sampled"] = result["sampled"]["accuracy"]
        out[f"pass@{result['pass_at_k']['k']}"] = result["pass_at_k"]["accuracy"]
    return out


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} (sd {100 * sd:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders of one config, one per seed")
    args = parser.parse_args()
    summaries = [read(run) for run in args.runs]
    walls = [f"{run} ({summary['wall_seconds'] / 60:.1f} min)" for run, summary in zip(args.runs, summaries, strict=True)]
    print(f"runs: {', '.join(walls)}")

    table: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for summary in summaries:
        for stage in summary["stages"]:
            for result in stage["results"]:
                by_stage = table.setdefault((result["entry"], result["protocol"]), {}).setdefault(stage["name"], {})
                for measure, value in measures(result).items():
                    by_stage.setdefault(measure, []).append(value)
    for (entry, protocol), by_stage in table.items():
        print(f"\n{entry} ({protocol}): accuracy per stage, each run then mean (sd) over runs, %")
        for stage, by_measure in by_stage.items():
            cells = [f"{measure} {' / '.join(f'{100 * v:.1f}' for v in values)} = {spread(values)}"
                     for measure, values in by_measure.items()]
            print(f"  {stage:<8}" + "   ".join(cells))

    comparisons: dict[tuple, list[dict]] = {}
    for summary in summaries:
        for c in summary["comparisons"]:
            key = (c["entry"], c["protocol"], c["from"], c["to"], c["measure"])
            comparisons.setdefault(key, []).append(c)
    print("\npaired changes, points [95% CI] in each run; runs whose interval lies above / below 0")
    for (entry, protocol, a, b, measure), found in comparisons.items():
        cells = " ".join(f"{100 * c['diff']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]" for c in found)
        up = sum(c["significant"] and c["diff"] > 0 for c in found)
        down = sum(c["significant"] and c["diff"] < 0 for c in found)
        mean = statistics.mean(c["diff"] for c in found)
        print(f"  {entry} {protocol} {a:>6} -> {b:<6} {measure:<8} {cells}  mean {100 * mean:+.1f}, "
              f"{up} above / {down} below of {len(found)}")


if __name__ == "__main__":
    main()
