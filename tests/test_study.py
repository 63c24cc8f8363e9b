"""The study through papermill: summary structure, clean notebooks, resume after SIGKILL at every stage kind."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import datasets
import nbformat
import pytest
import yaml
from helpers import REPO, reproduce_command, write_test_config

from ovlt.ground.config import load_config
from ovlt.ground.layout import checkpoint_names
from ovlt.study.notebooks import LOG_FILE
from ovlt.study.order import steps

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean_with_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{path.name} has outputs"
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
    assert "run_dir" in code[0].source


@pytest.mark.slow
def test_summary_has_every_stage_with_intervals_and_baselines(study_run):
    summary = json.loads((study_run / "summary.json").read_text())
    cfg = load_config(study_run / "config.yaml")
    assert [s["name"] for s in summary["stages"]] == checkpoint_names(cfg)
    for stage in summary["stages"]:
        [result] = stage["results"]  # one entry, one protocol: every number names its benchmark, prompt and protocol
        assert (result["benchmark"], result["entry"], result["prompt"]) == ("synthetic", "synthetic", "paper")
        assert result["protocol"] == result["scorer"] == "strict"
        assert result["n"] == cfg.data.heldout_size
        low, high = result["ci95"]
        assert 0 <= low <= result["accuracy"] <= high <= 1
        assert stage["wall_seconds"] >= 0
    assert 0 < summary["baselines"]["synthetic"] < 1
    pairs = {(c["from"], c["to"]) for c in summary["comparisons"]}
    assert pairs == {("base", "sft-1"), ("sft-1", "grpo-1")}
    assert {(c["entry"], c["prompt"], c["protocol"]) for c in summary["comparisons"]} == {("synthetic", "paper", "strict")}
    assert summary["judges"] == {}
    assert summary["teacher"]["scripted"] is True
    assert summary["wall_seconds"] > 0


@pytest.mark.slow
def test_sampled_accuracy_asks_and_scores_as_the_evaluation_does(study_run):
    from ovlt.ground.artifacts import Run
    from ovlt.scoring.predictions import read_predictions
    from ovlt.stages.evaluation import sampled_accuracy

    cfg, run = load_config(study_run / "config.yaml"), Run(study_run)
    greedy = {p["id"]: p["correct"] for p in read_predictions(run, "sft-1", "synthetic")}
    shares = sampled_accuracy(cfg, run, "sft-1", n=3)
    assert sorted(shares) == sorted(greedy) and set(shares.values()) <= {0, 1 / 3, 2 / 3, 1}
    assert shares == sampled_accuracy(cfg, run, "sft-1", n=3)  # seeded
    # Near temperature 0 a sample is the greedy answer: the same prompts and scorer give the same verdicts (but
    # for near-ties that batching can flip).
    near_greedy = sampled_accuracy(cfg, run, "sft-1", n=1, temperature=1e-4)
    assert sum(near_greedy[i] == greedy[i] for i in greedy) >= 0.9 * len(greedy)
    with pytest.raises(KeyError, match="mathvista_testmini"):
        sampled_accuracy(cfg, run, "sft-1", n=1, benchmark="mathvista_testmini")


@pytest.mark.slow
def test_every_step_left_an_executed_notebook_and_the_report(study_run):
    cfg = load_config(study_run / "config.yaml")
    for step in steps(cfg):
        executed = nbformat.read(study_run / "notebooks" / step.output_name, as_version=4)
        assert any(cell.get("outputs") for cell in executed.cells if cell.cell_type == "code"), step.output_name
    assert (study_run.parent.parent / "reports" / "test-study" / "index.html").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_skips_finished_steps(study_run, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(study_run, root / "runs" / "test-study")
    config = write_test_config(tmp_path)
    start = time.perf_counter()
    done = subprocess.run(reproduce_command(config, root), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skipped") == len(steps(load_config(config)))
    _assert_quiet(done, root / "runs" / "test-study")
    report = root / "reports" / "test-study" / "index.html"
    assert f"report: {report}" in done.stdout and f"python3 -m webbrowser {report.as_uri()}" in done.stdout
    assert re.search(r"accuracy on synthetic \(strict, n=24\): base [\d.]+% -> sft-1 [\d.]+% -> grpo-1", done.stdout)
    assert time.perf_counter() - start < 60
    assert _comparable(root / "runs" / "test-study") == _comparable(study_run)


@pytest.mark.slow
def test_a_failing_stage_stops_the_study_naming_cell_and_notebook(tmp_path):
    config = write_test_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    # A hub source in a local hub folder that lacks it: the data stage fails, inside its notebook.
    raw["data"]["sources"], raw["self_generate"]["max_share"] = [{"name": "geometry3k"}], {}
    raw["data"]["hub_root"] = str(tmp_path / "hub")
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(reproduce_command(config, tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "stage data+decontaminate+student failed in cell" in done.stderr and "geometry3k" in done.stderr
    assert 'run_notebook(cfg, run, "00_data.ipynb"' in done.stderr  # the failing cell's source
    run = tmp_path / "runs" / "test-study"
    assert f"executed notebook (with the traceback): {run / 'notebooks' / '00_data.ipynb'}" in done.stderr
    assert "[IPKernelApp]" not in done.stdout + done.stderr and (run / LOG_FILE).exists()


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline: \r, ANSI escapes...


def _assert_quiet(done: subprocess.CompletedProcess, run: Path) -> None:
    """A clean study's output without a terminal: plain lines, no warning, error or kernel chatter (that goes to
    the run's log file, with what papermill says)."""
    output = done.stdout + done.stderr
    for alarming in ("WARNING", "ERROR", "Warning", "Traceback", "[IPKernelApp]", "papermill"):
        assert alarming not in output, f"{alarming!r} in the study's output:\n{output[-3000:]}"
    assert not CONTROL.search(output), "control characters in a non-interactive output"
    log = (run / LOG_FILE).read_text()
    assert "Kernel is running over TCP without encryption" in log and "papermill INFO: Input Notebook" in log


def _comparable(run: Path) -> dict:
    """summary.json without what legitimately differs between two runs: wall times and paths."""
    summary = json.loads((run / "summary.json").read_text())
    for stage in summary["stages"]:
        stage.pop("wall_seconds")
    for key in ("wall_seconds", "stage_wall_seconds", "config"):
        summary.pop(key)
    return summary


def _dataset_ids(run: Path) -> dict[str, list[str]]:
    ids = {}
    for info in run.glob("**/dataset_info.json"):
        folder = info.parent
        data = datasets.load_from_disk(str(folder))
        if "id" in data.column_names:
            ids[str(folder.relative_to(run))] = sorted(data["id"])
    return ids


def _killed_at(config: Path, root: Path, target: str, delay: float) -> str:
    """Start the study, SIGKILL its whole process group `delay` seconds after step `target` starts (or when the
    study ends first); return the label of the step that was running."""
    proc = subprocess.Popen(reproduce_command(config, root), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    running = "startup"
    deadline = None
    try:
        for line in proc.stdout:
            match = re.match(r"\[\d+/\d+\] (.+?)  \(", line)
            if match:
                running = match.group(1)
                if running == target and deadline is None:
                    deadline = time.monotonic() + delay
                    break
        if deadline is not None:
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return running


@pytest.mark.slow
def test_chaos_sigkill_at_every_stage_kind_then_resume(study_run, tmp_path):
    config = write_test_config(tmp_path)
    labels = [step.label for step in steps(load_config(config))]
    rng = random.Random(0)
    killed = [_killed_at(config, tmp_path, target, rng.uniform(0.5, 6.0)) for target in labels + labels[-1:]]
    assert len(killed) >= 10 and len(set(killed)) >= len(labels) // 2, killed
    done = subprocess.run(reproduce_command(config, tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "test-study"
    _assert_quiet(done, run)  # a clean run (resuming, so its notebooks run again): nothing alarming
    leftovers = [p for p in run.rglob("*") if ".tmp" in p.name and "notebooks" not in p.parts]
    assert not leftovers, f"half-written artifacts left behind: {leftovers}"
    assert not list(run.rglob("shards")), "finished stages keep no shards"
    chaos_ids, clean_ids = _dataset_ids(run), _dataset_ids(study_run)
    assert chaos_ids.keys() == clean_ids.keys()
    for name, ids in chaos_ids.items():
        assert len(ids) == len(set(ids)), f"{name}: duplicated problems"
        assert ids == clean_ids[name], f"{name}: problems lost or added"
    assert _comparable(run) == _comparable(study_run)


def test_paper_config_without_gpu_stops_at_once(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the paper config would start for real")
    start = time.perf_counter()
    done = subprocess.run(reproduce_command(REPO / "configs/openvlthinker-7b.yaml", tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "needs CUDA GPUs" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - start < 30 and not (tmp_path / "runs" / "test-study" / "data").exists()


