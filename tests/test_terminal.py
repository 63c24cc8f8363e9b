"""What `ovlt reproduce` shows: the live line and the plain lines, the remaining-time estimate from the plan, the
training progress the callback writes, the trackers the config names, and the closing message."""

import io
import os
import re
import subprocess

import pytest
from helpers import REPO, write_test_config

from ovlt.ground.config import load_config
from ovlt.stages.training import progress
from ovlt.study.order import Step, stage_order, steps
from ovlt.study.plan import plan, stage_seconds
from ovlt.study.terminal import Estimate, KernelOutput, StudyProgress, closing_message, headline

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline: \r, ANSI escapes...
SFT, EVALUATE = Step("04_sft.ipynb", 1, None, ("sft",)), Step("07_evaluate.ipynb", 1, "sft-1", ("evaluate",))


def test_the_estimate_starts_from_the_plan_and_follows_what_steps_took():
    estimate = Estimate([600.0, 60.0, 300.0], skipped=[False, True, False])
    assert estimate.remaining(0) == 900.0  # a step to skip costs nothing
    assert estimate.remaining(0, running_for=100.0) == 800.0
    assert estimate.remaining(0, running_for=100.0, fraction=0.25) == 300.0 + 300.0  # its own pace once it reports
    estimate.finished(0, 1200.0)  # took twice the plan: one step says little against the plan
    assert estimate.remaining(2) == 300.0
    assert estimate.remaining(2, running_for=700.0) == 0.0


def simulated_study(planned: list[float], took: list[float]) -> list[tuple[float, float]]:
    """(estimated, true) remaining seconds at the start of every step of a study whose steps took `took`."""
    estimate = Estimate(planned, [False] * len(planned))
    said = []
    for index, seconds in enumerate(took):
        said.append((estimate.remaining(index), sum(took[index:])))
        estimate.finished(index, seconds)
    return said


def planned_steps(config: str) -> list[float]:
    """Each step's planned seconds, as `ovlt reproduce` plans them on this machine."""
    from ovlt.study.order import steps
    from ovlt.study.plan import NOTEBOOK_SECONDS

    cfg = load_config(REPO / config)
    seconds = stage_seconds(cfg, cuda=False)
    return [NOTEBOOK_SECONDS + sum(seconds[ref] for ref in step.refs) for step in steps(cfg)]


TINY_PLAN = planned_steps("configs/tiny.yaml")


@pytest.mark.parametrize("outlier", range(len(TINY_PLAN) - 1))
@pytest.mark.parametrize("seed", range(5))
def test_one_step_five_times_its_plan_keeps_the_estimate_within_one_and_a_half_times_the_truth(outlier, seed):
    """Steps take their plan times 0.8-1.25 (noise of a quiet machine), one of them 5 times its plan: after it, every
    estimate stays within 1.5x of the seconds the study really had left (the outlier's own step excluded: it is
    what made the truth long)."""
    import random

    rng = random.Random(seed)
    took = [p * rng.uniform(0.8, 1.25) for p in TINY_PLAN]
    took[outlier] = TINY_PLAN[outlier] * 5
    for estimated, true in simulated_study(TINY_PLAN, took)[outlier + 1:]:
        assert 1 / 1.5 <= estimated / true <= 1.5, (estimated, true)


def test_a_machine_slower_throughout_is_followed_from_its_third_step():
    took = [p * 2.5 for p in TINY_PLAN]
    said = simulated_study(TINY_PLAN, took)
    assert said[1][0] == pytest.approx(sum(TINY_PLAN[1:]))  # one step: the plan still holds
    for estimated, true in said[3:]:
        assert estimated == pytest.approx(true)


def test_the_plan_estimates_every_stage_on_this_machine():
    tiny = load_config(REPO / "configs/tiny.yaml")
    seconds = stage_seconds(tiny, cuda=False)
    assert list(seconds) == stage_order(tiny) and all(s >= 0 for s in seconds.values())
    by_name = {ref.label: s for ref, s in seconds.items()}
    assert by_name["iter1/sft"] > by_name["iter1/grpo"] > by_name["evaluate sft-1"] > 0  # SFT dominates on a CPU
    paper = load_config(REPO / "configs/openvlthinker-7b.yaml")
    on_gpus, on_cpu = stage_seconds(paper, cuda=True), stage_seconds(paper, cuda=False)
    for planned in plan(paper):  # on GPUs the plan's wall-clock hours where it has figures, else the CPU rates
        expected = on_cpu[planned.ref] if planned.wall_hours is None else planned.wall_hours * 3600
        assert on_gpus[planned.ref] == pytest.approx(expected) and expected >= 0
    assert sum(on_gpus.values()) != sum(on_cpu.values())


def test_without_a_terminal_one_plain_line_per_step():
    out = io.StringIO()
    display = StudyProgress([SFT, EVALUATE], Estimate([600.0, 60.0], [False, False]), stream=out)
    assert not display.interactive  # a StringIO is no terminal, as CI's stdout
    display.start(0)
    display.sampling("prompts", 3, 10)
    display.finished(0, 30.0)
    display.start(1)
    display.skipped(1)
    display.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2] iter1/sft  (elapsed 0.0 min, remaining ~11.0 min)")
    assert lines[1].strip() == "done in 0.5 min"
    assert lines[2].startswith("[2/2] evaluate sft-1  (") and lines[3].strip() == "done (manifests unchanged): skipped"
    assert len(lines) == 4 and not CONTROL.search(out.getvalue())


def test_in_a_terminal_one_live_line_with_the_training_step_and_the_time_left(tmp_path):
    out, state = io.StringIO(), tmp_path / "progress.json"
    display = StudyProgress([SFT, EVALUATE], Estimate([600.0, 60.0], [False, False]), stream=out, interactive=True,
                            training_progress=state)
    display.start(0)
    progress.write(state, 250, 1000, {"loss": 1.23456, "grad_norm": 3.0})
    status = display.status()
    assert status.startswith("step 250/1,000 loss 1.235 | elapsed 0.0 min | ~")
    left = float(re.search(r"~([\d.]+) min left", status)[1])
    assert left == pytest.approx(1.0, abs=0.05)  # the step's own pace (~0 s for a quarter) + the evaluation's minute
    progress.write(state, 260, 1000, {"loss": 0.01, "reward": 0.625})
    assert display.status().startswith("step 260/1,000 reward 0.625 | ")  # GRPO: its reward, not its loss
    display.finished(0, 60.0)
    display.close()
    text = out.getvalue()
    assert "\r" in text and "[1/2] iter1/sft: done in 1.0 min\n" in text


def test_a_terminal_that_reports_no_size_still_shows_the_live_line():
    """A fresh pseudo-terminal is 0 x 0 (as under `script` or some container shells): tqdm would hide its line."""
    main, secondary = os.openpty()
    with os.fdopen(secondary, "w") as stream:
        assert stream.isatty() and os.get_terminal_size(stream.fileno()).lines == 0
        display = StudyProgress([SFT, EVALUATE], Estimate([600.0, 60.0], [False, False]), stream=stream)
        display.start(0)
        display.close()
    shown = os.read(main, 65536).decode()
    os.close(main)
    assert "[1/2] iter1/sft |" in shown and "min left" in shown


def test_kernel_output_goes_to_the_log_and_its_sampling_bars_to_the_display(tmp_path):
    display = StudyProgress([EVALUATE], Estimate([60.0], [False]), stream=io.StringIO())
    display.start(0)
    log = io.StringIO()
    kernel = KernelOutput(log, display)
    chatter = ("[IPKernelApp] WARNING | Kernel is running over TCP without encryption.\n"
               "generate:   0%|          | 0/24 [00:00<?, ?prompt/s]\rgenerate:  33%|###3      | 8/24 [00:05<00:10]"
               "\rSaving the dataset (1/1 shards): 100%|##########| 45/45 [00:00<00:00]")
    kernel.write(chatter)
    assert log.getvalue() == chatter
    assert display.status().startswith("prompts 8/24 | ")  # the sampling bar, not the dataset's


SUMMARY = {"run": "tiny", "baselines": {"synthetic": 0.393},
           "stages": [{"name": name, "results": [{"entry": "synthetic", "prompt": "paper", "protocol": "strict",
                                                   "n": 600, "accuracy": acc}]}
                      for name, acc in (("base", 0.047), ("sft-1", 0.725), ("grpo-1", 0.728))]}


def test_the_closing_message_says_where_the_report_is_what_it_found_and_how_to_open_it(tmp_path):
    report = tmp_path / "reports" / "tiny" / "index.html"
    text = closing_message(SUMMARY, report, 1775.0)
    assert headline(SUMMARY) in text
    assert "base 4.7% -> sft-1 72.5% -> grpo-1 72.8% (chance 39.3%)" in headline(SUMMARY)
    assert f"report: {report}" in text and f"python3 -m webbrowser {report.as_uri()}" in text
    assert "29.6 min" in text


def test_training_progress_callback_writes_the_step_total_and_last_loss(tmp_path):
    from transformers import TrainerState

    from ovlt.stages.training.callbacks import TrainingProgress

    callback, path = TrainingProgress(tmp_path / "p.json"), tmp_path / "p.json"
    state = TrainerState(global_step=0, max_steps=90, is_world_process_zero=True)
    callback.on_log(None, state, None, logs={"reward": 0.5, "kl": 0.01})
    state.global_step = 7
    callback.on_step_end(None, state, None)
    assert progress.read(path) == {"step": 7, "total": 90, "reward": 0.5}
    other = TrainerState(global_step=8, max_steps=90, is_world_process_zero=False)
    callback.on_step_end(None, other, None)  # only the main process writes
    assert progress.read(path)["step"] == 7


def test_trackers_come_from_report_to_with_tensorboard_in_the_stage_folder(tmp_path, monkeypatch):
    from transformers.integrations import TensorBoardCallback

    from ovlt.stages.training.callbacks import TrainingProgress, stage_callbacks
    from ovlt.stages.training.common import trl_arguments

    default = load_config(write_test_config(tmp_path))
    assert default.report_to == ["tensorboard"]  # the embedded default stays offline
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    [tensorboard] = stage_callbacks(default, tmp_path / "sft")
    assert isinstance(tensorboard, TensorBoardCallback) and tensorboard.logging_dir == str(tmp_path / "sft" / "tb")
    assert trl_arguments(default, default.sft, tmp_path)["report_to"] == "none"  # TRL adds no second tensorboard
    wandb = load_config(write_test_config(tmp_path, report_to=["wandb"]))
    assert trl_arguments(wandb, wandb.sft, tmp_path)["report_to"] == ["wandb"]
    monkeypatch.setenv(progress.PROGRESS_ENV, str(tmp_path / "p.json"))
    assert [type(c) for c in stage_callbacks(wandb, tmp_path)] == [TrainingProgress]


def test_report_to_in_a_trainer_section_names_the_study_setting(tmp_path):
    from ovlt.ground.config import ConfigError

    with pytest.raises(ConfigError, match=r"sft.report_to.*the study's report_to"):
        load_config(write_test_config(tmp_path, sft={"report_to": ["wandb"]}))


def test_make_lab_starts_as_root_with_a_note():
    done = subprocess.run(["make", "-n", "lab", "OVLT_ENV=/nonexistent"], cwd=REPO, capture_output=True, text=True)
    lab = [line for line in done.stdout.splitlines() if "-m jupyterlab notebooks/" in line]
    assert len(lab) == 1, done.stdout + done.stderr
    assert lab[0].endswith("--allow-root") == (os.geteuid() == 0)
    assert ("--allow-root" in done.stdout.split(lab[0])[0]) == (os.geteuid() == 0)  # the note before it


def test_every_step_of_the_test_study_has_an_estimate(tmp_path):
    cfg = load_config(write_test_config(tmp_path))
    seconds = stage_seconds(cfg, cuda=False)
    assert all(ref in seconds for step in steps(cfg) for ref in step.refs)


def test_the_readme_figure_is_drawn_from_a_summary(tmp_path):
    import json

    from PIL import Image

    from ovlt.ground.artifacts import ArtifactError
    from ovlt.study.figures import accuracy_figure

    with pytest.raises(ArtifactError, match="make reproduce"):
        accuracy_figure(tmp_path / "summary.json", tmp_path)
    summary = {**SUMMARY, "stages": [{**s, "results": [{**s["results"][0], "ci95": [0.0, 0.9]}]}
                                     for s in SUMMARY["stages"]]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    path = accuracy_figure(tmp_path / "summary.json", tmp_path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
