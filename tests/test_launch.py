"""The multi-process path: `accelerate launch` of `python -m ovlt.stages.training.worker`, on CPU with gloo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import log_rows, make_run, tiny_config

from ovlt.engines.models import load
from ovlt.ground.config import Launch
from ovlt.rehearsal.chaos import kill_launch_after_checkpoint
from ovlt.stages.training.grpo import grpo
from ovlt.stages.training.launch import JOB_FILE, LaunchError, accelerate_command, stream
from ovlt.stages.training.sft import sft

REPO = Path(__file__).resolve().parents[1]


def test_accelerate_command_for_cpu_processes():
    cmd = accelerate_command(Launch(num_processes=2, cpu=True), "/tmp/job.json")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    # --cpu would start one process; the torchrun launcher starts N, which join gloo through use_cpu.
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--num_machines") + 1] == "1"
    assert int(cmd[cmd.index("--main_process_port") + 1]) > 0
    assert cmd[-3:] == ["-m", "ovlt.stages.training.worker", "/tmp/job.json"]


def test_accelerate_command_uses_the_shipped_engine_configs():
    for engine in ("zero3", "fsdp"):
        launch = Launch(num_processes=8, accelerate_config=f"configs/accelerate/{engine}.yaml")
        cmd = accelerate_command(launch, "job.json")
        assert cmd[cmd.index("--config_file") + 1] == str(REPO / f"configs/accelerate/{engine}.yaml")
        assert "--multi_gpu" not in cmd and cmd[cmd.index("--num_processes") + 1] == "8"
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        accelerate_command(Launch(num_processes=2, accelerate_config="configs/accelerate/nowhere.yaml"), "job.json")


def test_a_failing_subprocess_raises_with_the_tail_of_its_output(tmp_path):
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit('worker broke: bad column')"
    with pytest.raises(LaunchError, match=r"(?s)status 1.*line 99\n.*worker broke: bad column") as info:
        stream([sys.executable, "-c", script], tmp_path / "launch.log")
    assert "line 10\n" not in str(info.value)  # only the tail
    assert "line 10\n" in (tmp_path / "launch.log").read_text()  # the full output is kept


@pytest.mark.slow
def test_sft_and_grpo_on_two_cpu_processes(tmp_path, tmp_path_factory):
    from ovlt.engines.models import build_tiny

    base = build_tiny(tmp_path_factory.mktemp("models"), seed=0)
    two = {"launch": {"num_processes": 2, "cpu": True}}
    cfg = tiny_config(sft=two, grpo={**two, "per_device_train_batch_size": 4})
    run = make_run(tmp_path / "run", base)

    manifest = sft(cfg, run, 1)
    assert manifest["counts"]["processes"] == 2 and manifest["counts"]["steps"] == 3
    job = json.loads((run.stage_dir("sft", 1) / JOB_FILE).read_text())
    assert job["stage"] == "sft" and job["config"]["sft"]["launch"]["num_processes"] == 2

    manifest = grpo(cfg, run, 1)
    assert manifest["counts"] == {"problems": 16, "steps": 2, "processes": 2}
    assert [r["step"] for r in log_rows(run.stage_dir("grpo", 1))] == [1, 2]
    for stage in ("sft", "grpo"):
        model, processor = load(run.stage_dir(stage, 1) / "checkpoint", device="cpu")
        assert processor.tokenizer.padding_side == "left"


@pytest.mark.slow
def test_a_launch_killed_mid_stage_resumes_from_its_last_checkpoint(tmp_path, tmp_path_factory):
    """The chaos test on two processes: every process of the launch is SIGKILLed (a lost node) as soon as the
    checkpoint of step 2 is complete; run again, the stage resumes from it in a fresh launch."""
    from ovlt.engines.models import build_tiny

    base = build_tiny(tmp_path_factory.mktemp("models"), seed=0)
    cfg = tiny_config(sft={"launch": {"num_processes": 2, "cpu": True}, "max_steps": 6, "save_steps": 2})
    run = make_run(tmp_path / "run", base)
    stage_dir = run.stage_dir("sft", 1)
    # The launcher and its workers, and nothing else (the scorer's math-verify worker lives on).
    with kill_launch_after_checkpoint(stage_dir, 2, wait_s=300, poll_s=0.01) as killed:
        with pytest.raises(LaunchError, match="status -9"):
            sft(cfg, run, 1)
    assert len(killed) >= 3  # accelerate's launcher and both workers
    assert not (stage_dir / "manifest.json").exists()

    manifest = sft(cfg, run, 1)
    assert manifest["train"]["resumed_from_step"] == 2
    assert manifest["counts"]["steps"] == 6 and manifest["counts"]["processes"] == 2
    assert "resuming training from step 2" in (stage_dir / "launch.log").read_text()
    assert [r["step"] for r in log_rows(stage_dir)] == [1, 2, 3, 4, 5, 6]
    model, processor = load(stage_dir / "checkpoint", device="cpu")
    assert not (stage_dir / "shards").exists()


def test_an_accelerate_config_goes_through_the_launcher_even_on_one_process():
    """ZeRO-3 on one GPU needs `accelerate launch`: in-process training would quietly run without DeepSpeed."""
    from ovlt.ground.config import Launch
    from ovlt.stages.training.launch import is_launched

    assert is_launched(Launch(num_processes=1, accelerate_config="configs/accelerate/zero3.yaml"))
    assert is_launched(Launch(num_processes=2))
    assert not is_launched(Launch())
