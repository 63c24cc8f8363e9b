"""benchmarks/study_seeds.py: the seed spread of whole studies, read from summary.json files."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _summary(run: Path, sft: float, grpo: float, diff: float, ci: list[float]) -> Path:
    def result(accuracy):
        return {"entry": "synthetic", "protocol": "strict", "accuracy": accuracy,
                "sampled": {"accuracy": accuracy - 0.05}, "pass_at_k": {"k": 4, "accuracy": accuracy + 0.1}}

    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "wall_seconds": 1800.0,
        "stages": [{"name": "sft-1", "results": [result(sft)]}, {"name": "grpo-1", "results": [result(grpo)]}],
        "comparisons": [{"entry": "synthetic", "protocol": "strict", "from": "sft-1", "to": "grpo-1",
                         "measure": "greedy", "diff": diff, "ci95": ci, "significant": not ci[0] <= 0 <= ci[1]}]}))
    return run


def test_means_spreads_and_interval_counts(tmp_path):
    runs = [_summary(tmp_path / "a", 0.70, 0.74, 0.04, [0.01, 0.07]),
            _summary(tmp_path / "b", 0.72, 0.70, -0.02, [-0.05, 0.01])]
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/study_seeds.py"), *map(str, runs)],
                         capture_output=True, text=True, check=True).stdout
    assert "sft-1   greedy 70.0 / 72.0 =  71.0 (sd 1.4)" in out
    assert "pass@4 80.0 / 82.0 =  81.0 (sd 1.4)" in out
    assert "+4.0 [+1.0, +7.0] -2.0 [-5.0, +1.0]  mean +1.0, 1 above / 0 below of 2" in out


def test_an_unfinished_run_is_named(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/study_seeds.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and f"{tmp_path}/summary.json: no summary.json" in done.stderr
