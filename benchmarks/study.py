"""Where the embedded default's time goes: wall time per stage, the notebook overhead, and a profile.

    python benchmarks/study.py --run runs/tiny                 # read a finished run's manifests
    python benchmarks/study.py --config configs/tiny.yaml      # run the study first (fresh run folder)
    python benchmarks/study.py --run runs/tiny --profile iter1/sft   # profile one stage again (on a copy)

Prints one row per stage (from its manifest), the sum, the study's wall time from summary.json, and the
difference: what papermill, kernel start-up and imports cost. `--profile` reruns one stage under cProfile on a
copy of the run and prints the functions with the most cumulative time, ovlt's own first.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage_table(run: Path) -> list[tuple[str, float]]:
    rows = []
    for manifest in sorted(run.glob("**/manifest.json"), key=lambda p: p.stat().st_mtime):
        data = json.loads(manifest.read_text())
        rows.append((str(manifest.parent.relative_to(run)), float(data.get("wall_seconds", 0.0))))
    return rows


def print_table(run: Path) -> None:
    rows = stage_table(run)
    total = sum(seconds for _, seconds in rows)
    print(f"{'stage':<28}{'seconds':>10}{'share':>8}")
    for name, seconds in rows:
        print(f"{name:<28}{seconds:>10.1f}{seconds / total:>8.1%}")
    print(f"{'sum of stages':<28}{total:>10.1f}")
    summary = run / "summary.json"
    if summary.exists():
        wall = json.loads(summary.read_text())["wall_seconds"]
        print(f"{'study wall time':<28}{wall:>10.1f}")
        print(f"{'notebooks, kernels, imports':<28}{wall - total:>10.1f}{(wall - total) / wall:>8.1%}")


def stage_key(label: str) -> tuple[str, int | str | None]:
    """(stage name, key) of a stage folder relative to the run: `data`, `iter1/sft`, `eval/base`."""
    parts = Path(label).parts
    if parts[0] == "eval":
        return "evaluate", parts[1]
    if len(parts) == 2:
        return parts[1], int(parts[0].removeprefix("iter"))
    return parts[0], None


def profile(run: Path, label: str, config: Path, top: int = 25) -> None:
    from ovlt.ground.artifacts import Run
    from ovlt.ground.config import load_config
    from ovlt.stages.registry import run_stage

    work = Path(tempfile.mkdtemp(prefix="ovlt-profile-")) / run.name
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("notebooks"))
    (work / label / "manifest.json").unlink()
    cfg = load_config(config)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(run_stage, cfg, Run(work), *stage_key(label))
    print(f"\nprofile of {label}: {time.perf_counter() - start:.1f}s")
    for title, pattern in (("ovlt's own functions", "ovlt/"), ("everything", "")):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(pattern, top) if pattern else stats.print_stats(top)
        print(f"--- {title} (by cumulative time)")
        print("\n".join(out.getvalue().splitlines()[-(top + 2):]))
    shutil.rmtree(work.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished run folder")
    parser.add_argument("--config", type=Path, default=REPO / "configs/tiny.yaml")
    parser.add_argument("--profile", help="a stage label to profile, e.g. iter1/sft")
    args = parser.parse_args()
    run = args.run
    if run is None:
        root = Path(tempfile.mkdtemp(prefix="ovlt-study-bench-"))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(args.config), "--run", "bench",
                        "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")], check=True)
        print(f"study ran in {time.perf_counter() - start:.1f}s")
        run = root / "runs" / "bench"
    print_table(run)
    if args.profile:
        config = run / "config.yaml" if (run / "config.yaml").exists() else args.config
        profile(run, args.profile, config)


if __name__ == "__main__":
    main()
