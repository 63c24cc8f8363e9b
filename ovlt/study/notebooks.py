"""`ovlt reproduce`: run the study's notebooks with papermill, iteration by iteration, then the report.

Each notebook is executed with its parameters (config, run folder, iteration, checkpoint) and saved, with
its outputs, in `runs/<run>/notebooks/`. A notebook runs its stages through `run_notebook`, which takes them from
the study's order and the stage registry; the stage functions skip finished stages by their manifests, so
rerunning resumes. A notebook error stops the study with the failing cell's message and the executed notebook's
path, and so does a notebook that ends without a manifest for each of its stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from ovlt.ground.artifacts import (
    MANIFEST,
    ArtifactError,
    Run,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
)
from ovlt.ground.config import StudyConfig, load_config
from ovlt.stages.registry import STAGES, run_stage
from ovlt.study.order import Step, notebook_step, steps

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "ovlt"
REPORT_NOTEBOOK = "08_report.ipynb"


class StudyError(RuntimeError):
    """A stage of the study failed; the message names the stage, the failing cell and the notebook."""


def step_manifests(run: Run, step: Step) -> list[Path]:
    return [STAGES[ref.name].folder(run, ref.key) / MANIFEST for ref in step.refs]


def check_step_finished(cfg: StudyConfig, run: Run, step: Step) -> None:
    """A notebook that ran to its end must have finished every stage of its step under this config: otherwise the
    step would be recorded as done and skipped from then on, with a stage missing or stale."""
    for ref in step.refs:
        st = STAGES[ref.name].open(cfg, run, ref.key)
        if not st.done:
            state = "is from other parameters or inputs" if st.manifest_path.exists() else "does not exist"
            raise StudyError(f"notebook {step.notebook} ran to its end without finishing stage {ref.label}: its manifest "
                             f"{st.manifest_path} {state}; its work cell must run its stages with ovlt.study.run_notebook")


def _step_record(run: Run, step: Step) -> Path:
    return run.notebooks_dir / f".{step.output_name}.done.json"


def _manifest_fingerprints(run: Run, paths: list[Path]) -> dict[str, str] | None:
    """Fingerprints by path relative to the run folder (a copied or moved run stays resumable)."""
    if not all(path.exists() for path in paths):
        return None
    return {str(path.relative_to(run.root)): json.loads(path.read_text())["fingerprint"] for path in paths}


def step_is_done(run: Run, step: Step, config_fingerprint: str) -> bool:
    """A step whose notebook ran under this exact config and whose stages' manifests are unchanged since.

    The stage functions would skip every one of its stages anyway; this spares the kernel start. Any change
    of config executes the notebook again, and the stage functions then decide, stage by stage.
    """
    record = _step_record(run, step)
    if not record.exists() or not (run.notebooks_dir / step.output_name).exists():
        return False
    saved = json.loads(record.read_text())
    return saved["config"] == config_fingerprint and saved["manifests"] == _manifest_fingerprints(run, step_manifests(run, step))


def _runs_this_python(spec_dir: str) -> bool:
    argv = json.loads((Path(spec_dir) / "kernel.json").read_text()).get("argv") or [""]
    return os.path.abspath(argv[0]) == os.path.abspath(sys.executable)


def kernel_for_this_python(prefix: str = sys.prefix) -> str:
    """The kernelspec papermill runs the notebooks with: one whose Python is this process's own.

    The notebooks must import the same packages as `ovlt reproduce` (the active conda env or the project's
    .venv), and `accelerate launch` inside them starts that Python again. A spec named `ovlt` that belongs to
    another environment (e.g. the .venv while the conda env is active) is left alone; this environment gets
    a spec of its own under a name that says which, installed under `prefix` (this environment's).
    """
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    own = f"{KERNEL}-{hashlib.sha256(sys.executable.encode()).hexdigest()[:8]}"
    for name in (KERNEL, own):
        if name in specs and _runs_this_python(specs[name]):
            return name
    name = own if KERNEL in specs else KERNEL
    install(kernel_name=name, prefix=prefix, display_name=f"ovlt ({sys.prefix})")
    log.info("registered kernel %s for %s", name, sys.executable)
    return name


def execute(notebook: Path, output: Path, parameters: dict, label: str) -> None:
    """Run one notebook with papermill; a failing cell becomes a StudyError naming it and the output."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel_for_this_python(),
                                   progress_bar=False, cwd=str(NOTEBOOK_DIR.parent))
    except PapermillExecutionError as exc:
        raise StudyError(
            f"stage {label} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"executed notebook (with the traceback): {output}"
        ) from None


def _check_hardware(cfg: StudyConfig, config_path: Path) -> None:
    if cfg.requires_gpu or cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise StudyError(
                f"{config_path} needs CUDA GPUs (device: {cfg.device}, requires_gpu: {cfg.requires_gpu}) and none is "
                "visible. Run it on a GPU machine (see README, 'Paper scale'), or use configs/tiny.yaml here."
            )


def remaining_seconds(steps_left: list, durations: dict[str, list[float]]) -> tuple[float, list[str]]:
    """Time of `steps_left` at the mean time each one's notebook took so far (an SFT step at past SFT steps), and
    the notebooks among them not timed yet. Those are listed, not guessed: on the tiny config the first SFT
    notebook takes 8 minutes where the notebooks before it take seconds."""
    timed = sum(statistics.mean(durations[s.notebook]) for s in steps_left if durations.get(s.notebook))
    untimed = list(dict.fromkeys(Path(s.notebook).stem for s in steps_left if not durations.get(s.notebook)))
    return timed, untimed


def remaining_text(steps_left: list, durations: dict[str, list[float]]) -> str:
    seconds, untimed = remaining_seconds(steps_left, durations)
    if not untimed:
        return f"remaining ~{seconds / 60:.1f} min"
    return f"remaining > {seconds / 60:.1f} min + {', '.join(untimed)} (not timed yet)"


def reproduce(config: str | Path, run_name: str | None = None, runs_root: str | Path = "runs",
              reports_root: str | Path = "reports") -> Path:
    """Run (or resume) the whole study; returns the rendered report's path."""
    config_path = Path(config).resolve()
    cfg = load_config(config_path)
    _check_hardware(cfg, config_path)
    if not cfg.needs_hub:  # nothing to download: no stage may try (the notebooks' kernels inherit this)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = Run(Path(runs_root).resolve() / (run_name or cfg.name))
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.root / "config.yaml", config_path.read_text())
    plan = steps(cfg)
    config_fingerprint = fingerprint(cfg.model_dump(mode="json"))
    started = time.time()
    durations: dict[str, list[float]] = {}  # seconds per notebook run here, by notebook
    for k, step in enumerate(plan, start=1):
        elapsed = time.time() - started
        remaining = remaining_text(plan[k - 1:], durations)
        print(f"[{k}/{len(plan)}] {step.label}  (elapsed {elapsed / 60:.1f} min, {remaining})", flush=True)
        if step_is_done(run, step, config_fingerprint):
            print("      done (manifests unchanged): skipped", flush=True)
            continue
        t0 = time.time()
        execute(NOTEBOOK_DIR / step.notebook, run.notebooks_dir / step.output_name,
                {"config": str(config_path), "run_dir": str(run.root), "iteration": step.iteration or 0,
                 "checkpoint": step.checkpoint or ""}, step.label)
        check_step_finished(cfg, run, step)
        atomic_write_json(_step_record(run, step), {"config": config_fingerprint,
                                                    "manifests": _manifest_fingerprints(run, step_manifests(run, step))})
        durations.setdefault(step.notebook, []).append(time.time() - t0)
    from ovlt.stages.evaluation import write_summary

    summary = write_summary(cfg, run, config_path=config_path, wall_seconds=time.time() - started)
    print(f"summary: {run.summary_path} ({len(summary['stages'])} stages)")
    report = render_report(run.root, Path(reports_root).resolve() / run.name)
    print(f"report: {report}  (study took {(time.time() - started) / 60:.1f} min)")
    return report


def render_report(run_dir: str | Path, report_dir: str | Path) -> Path:
    """Execute the report notebook on an existing run and export it to one self-contained HTML file."""
    from nbconvert import HTMLExporter

    run = Run(Path(run_dir).resolve())
    if not run.summary_path.exists():
        raise ArtifactError(f"{run.summary_path} does not exist: finish the study (ovlt reproduce) before the report")
    executed = run.notebooks_dir / REPORT_NOTEBOOK
    execute(NOTEBOOK_DIR / REPORT_NOTEBOOK, executed, {"run_dir": str(run.root)}, "report")
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_filename(str(executed))
    report_dir = Path(report_dir)
    atomic_write_text(report_dir / "index.html", html)
    return report_dir / "index.html"


def open_study(config: str, run_dir: str, iteration: int = 0, checkpoint: str = "") -> tuple[StudyConfig, Run]:
    """What every stage notebook does first: check its parameters, load the config, open the run folder."""
    for name, value, kind in (("config", config, str), ("run_dir", run_dir, str), ("iteration", iteration, int),
                              ("checkpoint", checkpoint, str)):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"notebook parameter {name!r} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    cfg = load_config(config)
    if not 0 <= iteration <= cfg.iterations:
        raise ValueError(f"notebook parameter 'iteration' = {iteration} is outside 0..{cfg.iterations} ({config})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)
    return cfg, Run(run_dir)


def run_notebook(cfg: StudyConfig, run: Run, notebook: str, iteration: int = 0, checkpoint: str = "") -> dict[str, dict]:
    """What a stage notebook's work cell does: run, in the study's order, the stages the study gives `notebook` for
    this iteration or checkpoint; returns their manifests by stage name."""
    step = notebook_step(cfg, notebook, iteration or None, checkpoint or None)
    return {ref.name: run_stage(cfg, run, ref.name, ref.key) for ref in step.refs}
