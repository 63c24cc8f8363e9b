"""A lost node, on purpose: the kill-and-resume rehearsal of a stage trained through `accelerate launch`.

Used by the chaos test on two CPU processes (tests/test_launch.py) and by the GPU rehearsal with ZeRO-3
(benchmarks/gpu_rehearsal.py). psutil, which finds the launch's processes, is one of accelerate's own requirements.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from ovlt.stages.training.common import trainer_dir

LAUNCHER = "accelerate.commands.launch"  # the module `ovlt.stages.training.launch.accelerate_command` runs


@contextmanager
def kill_launch_after_checkpoint(stage_dir: Path, step: int, *, wait_s: float, poll_s: float) -> Iterator[list[int]]:
    """SIGKILL the `accelerate launch` this process started, launcher and workers at once, as soon as the
    checkpoint of `step` under `stage_dir` is complete, while the body of the `with` runs the stage.

    A checkpoint is complete once its trainer_state.json reads whole (transformers writes it last); it is polled every
    `poll_s` seconds for at most `wait_s`, after which the launch is killed anyway. Only children of this process
    whose command line runs the launcher are killed, with all their descendants: its other children (the scorer's
    math-verify worker) live on, since a pool worker killed holding its queue's lock hangs the interpreter's exit.
    Yields the list the killed pids go into; leaving the block normally waits for the killer to finish (an exception
    leaves at once). The stage run in the body fails with `LaunchError` (status -9); the caller checks that, then
    runs the stage again, which must resume from `step`:

        with kill_launch_after_checkpoint(run.stage_dir("sft", 1), 2, wait_s=300, poll_s=0.01) as killed:
            with pytest.raises(LaunchError, match="status -9"):
                sft(cfg, run, 1)
        assert sft(cfg, run, 1)["train"]["resumed_from_step"] == 2
    """
    state = trainer_dir(stage_dir) / f"checkpoint-{step}" / "trainer_state.json"
    killed: list[int] = []

    def kill_when_saved() -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                json.loads(state.read_text())  # whole: transformers writes this file last
                break
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(poll_s)
        for launcher in psutil.Process().children():
            if LAUNCHER in " ".join(launcher.cmdline()):
                for process in [launcher, *launcher.children(recursive=True)]:
                    process.kill()
                    killed.append(process.pid)

    killer = threading.Thread(target=kill_when_saved, daemon=True)
    killer.start()
    yield killed
    killer.join()
