"""`ovlt plan` for both shipped configs: every stage, in paper order, with volumes, and no model loaded."""

import subprocess
import sys
from pathlib import Path

import pytest

from ovlt.config import load_config
from ovlt.pipeline import checkpoint_names, plan, pool_ranges, stage_order

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["tiny.yaml", "openvlthinker-7b.yaml"])
def test_plan_cli_runs_without_loading_models(name):
    code = (
        "import sys; from ovlt.cli import main; rc = main(['plan', '--config', sys.argv[1]]);"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'plan must not load models';"
        "sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "configs" / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cfg = load_config(REPO / "configs" / name)
    for i in range(1, cfg.iterations + 1):
        assert f"iteration {i}:" in out.stdout
        assert f"iter{i}/grpo" in out.stdout and f"evaluate grpo-{i}" in out.stdout
    assert "samples=" in out.stdout and "max_tokens=" in out.stdout


def test_iteration_semantics():
    cfg = load_config(REPO / "configs/openvlthinker-7b.yaml")
    labels = [ref.label for ref in stage_order(cfg)]
    assert labels.index("iter1/caption") < labels.index("iter1/distill") < labels.index("iter1/sft")
    assert "iter2/caption" not in labels and "iter2/self_generate" in labels and "iter1/self_generate" not in labels
    assert [lab.split()[1] for lab in labels if lab.startswith("evaluate")] == checkpoint_names(cfg)


def test_paper_volumes():
    cfg = load_config(REPO / "configs/openvlthinker-7b.yaml")
    by_label = {p.ref.label: p.volumes for p in plan(cfg)}
    assert by_label["iter1/distill"]["samples"] == 25000 * 4
    # 25k examples, global batch 32, 1 epoch
    assert by_label["iter1/sft"]["steps"] == 25000 // 32
    assert by_label["iter2/self_generate"]["samples"] == 5000 * 4


def test_pool_ranges_are_disjoint():
    cfg = load_config(REPO / "configs/tiny.yaml")
    spans = sorted(pool_ranges(cfg).values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
