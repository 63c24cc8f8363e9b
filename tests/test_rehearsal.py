"""The paper config's rehearsal: configs/rehearsal.yaml through `ovlt reproduce` and papermill, on local stand-ins of
the paper's models and hub data sets, three iterations, to summary.json and the report.

What it checks beyond "it ran" is what stopped or silently bent the paper-scale path before (issue: paper scale,
rehearsed): the reasoner's R1-like chat template, held-out loss under a launcher, pixel bounds on multi-megapixel
photos, iteration 2's SFT set, the pool's mix, periodic checkpoints, data-parallel sampling, truncated chains.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ovlt.ground.config import load_config
from ovlt.ground.layout import checkpoint_names

pytestmark = pytest.mark.slow


def rehearsal_config(repo: Path, root: Path) -> Path:
    """configs/rehearsal.yaml with its `.rehearsal/` root moved to `root` (nothing else changed)."""
    text = (repo / "configs" / "rehearsal.yaml").read_text().replace(".rehearsal/", f"{root}/")
    path = root / "rehearsal.yaml"
    path.write_text(text)
    load_config(path)
    return path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("rehearsal")
    built = subprocess.run([sys.executable, "-m", "ovlt.rehearsal", str(root)], cwd=repo, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-5000:]
    config = rehearsal_config(repo, root)
    done = subprocess.run([sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(config), "--run",
                           "rehearsal", "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")],
                          cwd=repo, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"rehearsal failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return {"root": root, "run": root / "runs" / "rehearsal", "config": load_config(config), "stdout": done.stdout}


def manifest(run: Path, stage: str, iteration: int | None = None) -> dict:
    folder = run / (stage if iteration is None else f"iter{iteration}/{stage}")
    return json.loads((folder / "manifest.json").read_text())


def test_the_rehearsal_reaches_the_summary_and_the_report(rehearsal):
    cfg, run = rehearsal["config"], rehearsal["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == checkpoint_names(cfg)  # base, sft-1 ... grpo-3
    for checkpoint in checkpoint_names(cfg):
        for bench in cfg.evaluation.benchmarks:
            predictions = run / "eval" / checkpoint / bench.name / "predictions.jsonl"
            assert len(predictions.read_text().splitlines()) == bench.limit, predictions
    from bs4 import BeautifulSoup

    report = BeautifulSoup((rehearsal["root"] / "reports" / "rehearsal" / "index.html").read_text(), "html.parser")
    assert len(report.find_all("img")) >= 3  # the report's figures were drawn
    assert not report.select('[data-mime-type="application/vnd.jupyter.stderr"]'), "a report cell wrote to stderr"


def test_pool_mix_shortfalls_are_named_and_made_up(rehearsal):
    counts = manifest(rehearsal["run"], "data")["counts"]
    assert counts["train"] >= int(sum(p.sft_problems + p.grpo_candidates for p in rehearsal["config"].schedule))
    assert "geos" in counts["shortfall_by_source"], counts  # 5 rows cannot supply a sixth of the pool


def test_distillation_through_the_r1_template_keeps_chains(rehearsal):
    counts = manifest(rehearsal["run"], "distill", 1)["counts"]
    assert counts["out"] > 0 and counts["chains"] > 0, counts


def test_every_iteration_trains_on_a_real_sft_set(rehearsal):
    for i in (1, 2, 3):
        train = manifest(rehearsal["run"], "sft", i)["train"]
        assert train["examples"] > 0 and train["processes"] == 2
        assert train["heldout_loss_before"] is not None and train["heldout_loss_after"] is not None
    # From iteration 2 the caps bind only the sources they name: the others keep every verified chain, where
    # equalising to the rarest source cut them all.
    caps = rehearsal["config"].self_generate.max_share
    for i in (2, 3):
        by_source = manifest(rehearsal["run"], "select", i)["counts"]["by_source"]
        assert all(c["dropped"].get("balance", 0) == 0 for s, c in by_source.items() if s not in caps), by_source


def test_checkpoints_carry_the_pixel_bounds(rehearsal):
    cfg, run = rehearsal["config"], rehearsal["run"]
    for stage in ("sft", "grpo"):
        saved = yaml.safe_load((run / f"iter1/{stage}/checkpoint/preprocessor_config.json").read_text())
        size = saved.get("size") or {}
        assert size.get("longest_edge", saved.get("max_pixels")) == cfg.data.image_max_pixels, saved
