"""One environment runs the study: the active conda env (paper scale) or the project's .venv, for the notebooks'
kernel and `accelerate launch` alike; a config that needs the hub is never forced offline."""

import json
import os
import stat
import subprocess
import sys

from ovlt.ground.config import load_config
from ovlt.study import notebooks as study


def _fake_env(tmp_path):
    """A conda-like prefix whose python records how it was called, and with which HF_HUB_OFFLINE."""
    prefix = tmp_path / "envs" / "ovlt"
    (prefix / "bin").mkdir(parents=True)
    record = tmp_path / "calls.jsonl"
    python = prefix / "bin" / "python"
    python.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(record)!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "offline": os.environ.get("HF_HUB_OFFLINE")}}) + "\\n")
""")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return prefix, record


def test_make_reproduce_uses_the_active_conda_env_online(tmp_path, repo):
    prefix, record = _fake_env(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VIRTUAL_ENV")}
    env.update(CONDA_DEFAULT_ENV="ovlt", CONDA_PREFIX=str(prefix))
    done = subprocess.run(["make", "-s", "reproduce", "CONFIG=configs/openvlthinker-7b.yaml"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    reproduce = [c for c in calls if "reproduce" in c["argv"]]
    assert reproduce and reproduce[0]["argv"][:2] == ["-m", "ovlt.cli"], calls
    assert "configs/openvlthinker-7b.yaml" in reproduce[0]["argv"]
    assert all(c["offline"] is None for c in calls), "a hub config must not be forced offline"
    assert any(c["argv"][:3] == ["-m", "ipykernel", "install"] for c in calls)  # the kernel is this env's
    assert "venv" not in done.stdout + done.stderr


def test_make_without_conda_uses_the_venv(repo):
    env = {k: v for k, v in os.environ.items() if k not in ("CONDA_DEFAULT_ENV", "CONDA_PREFIX", "VIRTUAL_ENV")}
    dry = subprocess.run(["make", "-n", "reproduce"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert ".venv/bin/python -m ovlt.cli reproduce --config configs/tiny.yaml" in dry.stdout


def test_notebook_kernel_runs_this_python(tmp_path, monkeypatch):
    """A kernelspec named `ovlt` from another environment is not used: papermill would import other packages."""
    foreign = tmp_path / "jupyter" / "kernels" / "ovlt"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps(
        {"argv": ["/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "ovlt (elsewhere)", "language": "python"}))
    prefix = tmp_path / "env"  # where this environment's spec is installed: here, not in the real environment
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "jupyter"), str(prefix / "share" / "jupyter")]))
    from jupyter_client.kernelspec import KernelSpecManager

    name = study.kernel_for_this_python(prefix=str(prefix))
    spec = KernelSpecManager().get_kernel_spec(name)
    assert os.path.abspath(spec.argv[0]) == os.path.abspath(sys.executable)
    assert (prefix / "share" / "jupyter" / "kernels" / name / "kernel.json").exists()
    assert study.kernel_for_this_python(prefix=str(prefix)) == name  # found again, not registered twice


def test_only_configs_that_need_nothing_from_the_hub_go_offline(repo):
    assert not load_config(repo / "configs" / "tiny.yaml").needs_hub
    assert load_config(repo / "configs" / "openvlthinker-7b.yaml").needs_hub


def test_an_active_virtualenv_is_the_environment_unless_it_is_the_projects_own(repo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CONDA_DEFAULT_ENV", "CONDA_PREFIX")}
    for active, expected in ((str(tmp_path / "gpu-venv"), f"{tmp_path}/gpu-venv/bin/python"),
                             (str(repo / ".venv"), ".venv/bin/python")):
        dry = subprocess.run(["make", "-n", "plan"], cwd=repo, env={**env, "VIRTUAL_ENV": active},
                             capture_output=True, text=True, timeout=60)
        assert f"{expected} -m ovlt.cli plan" in dry.stdout, dry.stdout + dry.stderr
