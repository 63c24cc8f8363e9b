"""The prepared GPU check's scripts: the guard that stops them without a GPU, and which wheels travel."""

import os
import subprocess
import sys

import pytest
from helpers import REPO


def test_gpu_check_stops_at_once_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the check would run for minutes")
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 1
    assert "no CUDA device visible" in done.stderr
    assert "===" not in done.stdout  # no check started


def test_gpu_wheels_fetches_only_what_the_gpu_machine_lacks(tmp_path):
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    names = [line.split("==")[0] for line in frozen.splitlines() if "==" in line]
    assert "tenacity" in names and "jupyterlab" in names
    # The GPU machine has everything but tenacity (needed by papermill) and JupyterLab (not needed to run notebooks).
    present = tmp_path / "present.txt"
    present.write_text("\n".join(n.upper().replace("-", "_") for n in names if n not in ("tenacity", "jupyterlab")))
    done = subprocess.run(["bash", "benchmarks/gpu_wheels.sh", str(present)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "LIST_ONLY": "1", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split()
    assert listed[0] == "tenacity" and "jupyterlab" not in listed
    # DeepSpeed always travels (source only on PyPI: built into a wheel here), with what it needs that is missing.
    assert listed[1].startswith("deepspeed==") and set(listed[2:]) <= {"einops", "hjson", "msgpack", "ninja",
                                                                         "py-cpuinfo", "psutil"}
