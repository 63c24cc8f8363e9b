"""`ovlt reproduce`: run the study's notebooks with papermill, iteration by iteration, then the report.

Each notebook is executed with its parameters (config, run folder, iteration, checkpoint) and saved, with
its outputs, in `runs/<run>/notebooks/`. A notebook runs its stages through `run_notebook`, which takes them from
the study's order and the stage registry; the stage functions skip finished stages by their manifests, so
rerunning resumes. A notebook error stops the study with the failing cell, its error and the executed notebook's
path, and so does a notebook that ends without a manifest for each of its stages. What papermill and the kernels
say goes to the run's log file (`study.log`); the terminal shows the study's progress (`ovlt.study.terminal`).

A saved notebook reads as a page (`clean_outputs`): its stage cell keeps no output but an error, and no cell keeps a
progress bar's frames or what went to stderr (library warnings, the stages' log lines, all in `study.log`). The
kernel itself is run as JupyterLab runs it, so a person running a notebook there sees the same progress live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import ovlt.ground.progress  # noqa: F401  first: a kernel's first import of tqdm.auto warns of no widgets otherwise
from ovlt.ground.artifacts import (
    MANIFEST,
    ArtifactError,
    Run,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
)
from ovlt.ground.config import StudyConfig, load_config, resolved_text
from ovlt.stages.registry import STAGES, run_stage
from ovlt.study.order import StageRef, Step, notebook_step, stage_order, steps

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "ovlt"
REPORT_NOTEBOOK = "08_report.ipynb"
PROGRESS_FILE = ".training_progress.json"  # under notebooks/: the running training stage's step (terminal.py)


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


LOG_FILE = "study.log"  # in the run folder: what papermill and the kernels said
CHATTY_LOGGERS = ("papermill", "traitlets")  # traitlets: nbconvert's (e.g. "Alternative text is missing")
SOURCE_LINES = 8  # of a failing cell, in the error


def _quiet_kernel_manager():
    """Jupyter's kernel manager with the kernel process's own output (its start-up warnings, its shutdown log) sent to
    the file its `output` names, not the terminal: a clean run's terminal shows no kernel chatter."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class QuietKernelManager(AsyncKernelManager):
        output = Unicode("", config=True, help="file the kernel process writes its own stdout and stderr to")

        async def start_kernel(self, **kw):
            with open(self.output or os.devnull, "a", encoding="utf-8") as handle:
                await super().start_kernel(stdout=handle, stderr=handle, **kw)

    return QuietKernelManager


def execute(notebook: Path, output: Path, parameters: dict, label: str, log_path: Path | None = None,
            kernel_output=None) -> None:
    """Run one notebook with papermill; a failing cell becomes a StudyError naming it and the output.

    With `log_path`, what papermill and the kernel say goes there, not to the terminal; what the kernel's cells print
    goes to `kernel_output` (a file-like object; default: the log too)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    output.parent.mkdir(parents=True, exist_ok=True)
    quiet = {}
    if log_path is not None:
        manager = _quiet_kernel_manager()
        cell_output = kernel_output or open(log_path, "a", encoding="utf-8")  # closed below
        quiet = {"kernel_manager_class": manager, "config": Config({manager.__name__: {"output": str(log_path)}}),
                 "stdout_file": cell_output, "stderr_file": cell_output}
    try:
        with logged_to(log_path):
            papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                       kernel_name=kernel_for_this_python(), progress_bar=False,
                                       cwd=str(NOTEBOOK_DIR.parent), **quiet)
    except PapermillExecutionError as exc:
        source = exc.source.strip().splitlines()
        shown = "\n".join(f"    {line}" for line in source[:SOURCE_LINES]) + ("\n    ..." if len(source) > SOURCE_LINES else "")
        raise StudyError(
            f"stage {label} failed in cell {exc.exec_count}:\n{shown}\n{exc.ename}: {exc.evalue}\n"
            f"executed notebook (with the traceback): {output}"
            + ("" if log_path is None else f"\nlog of the kernel and papermill: {log_path}")
        ) from None
    finally:
        if log_path is not None and kernel_output is None:
            quiet["stdout_file"].close()
        if output.exists():
            try:
                clean_outputs(output)
            except (OSError, ValueError, ArtifactError) as exc:  # one papermill left unreadable: as it is
                log.warning("could not clean the saved outputs of %s: %s", output, exc)


STAGE_CELL = "stage"  # the tag of a stage notebook's cell that runs its stages (`run_notebook`)
# A tqdm frame, as a kernel's stream carries it: "generate:  40%|####      | 4/10 [00:01<00:02, 3.1prompt/s]", with
# or without a description (transformers' training bar has none).
PROGRESS_FRAME = re.compile(r"^\s*(?:[^|\n]*?:\s*)?\d{1,3}%\|[^|\n]*\|")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDGET = "application/vnd.jupyter.widget-view+json"


def shown_text(text: str) -> str:
    """What a stream's text leaves on a page: each line as a terminal would end up showing it (after its last carriage
    return, without escape sequences), progress frames and blank lines at either end left out."""
    lines = []
    for line in ANSI_ESCAPE.sub("", text).split("\n"):
        last = next((part for part in reversed(line.split("\r")) if part.strip()), "")
        if not PROGRESS_FRAME.match(last):
            lines.append(last.rstrip())
    return "\n".join(lines).strip("\n")


def clean_output_list(outputs: list, stage_cell: bool = False) -> list:
    """A cell's outputs as a saved page keeps them: no stderr, no progress frames, no widgets; a stage cell keeps only
    an error. A cell that failed keeps its stderr (less the frames) beside its traceback, to say what led there."""
    failed = any(output.get("output_type") == "error" for output in outputs)
    kept = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            if not failed and (stage_cell or output.get("name") == "stderr"):
                continue
            text = shown_text("".join(output.get("text", "")))
            if text.strip():
                kept.append({**output, "text": text + "\n"})
        elif kind in ("display_data", "execute_result"):
            if stage_cell or WIDGET in output.get("data", {}):
                continue
            kept.append(output)
        else:
            kept.append(output)
    return kept


def clean_outputs(path: Path) -> None:
    """Rewrite an executed notebook as a page (`clean_output_list` on every code cell). What it leaves out went to the
    run's log file as the kernel said it (`execute`'s `log_path`)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            stage_cell = STAGE_CELL in cell.get("metadata", {}).get("tags", [])
            cell.outputs = [nbformat.from_dict(o) for o in clean_output_list(cell.outputs, stage_cell)]
    atomic_write_text(path, nbformat.writes(notebook))


@contextmanager
def logged_to(log_path: Path | None, names: tuple[str, ...] = CHATTY_LOGGERS):
    """What the `names` loggers say (papermill's progress, nbconvert's remarks) goes to `log_path` only, meanwhile."""
    if log_path is None:
        yield
        return
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S"))
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (level, propagate) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


def _check_hardware(cfg: StudyConfig, config_path: Path) -> None:
    if cfg.requires_gpu or cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise StudyError(
                f"{config_path} needs CUDA GPUs (device: {cfg.device}, requires_gpu: {cfg.requires_gpu}) and none is "
                "visible. Run it on a GPU machine (see README, 'Paper scale'), or use configs/tiny.yaml here."
            )


def reproduce(config: str | Path, run_name: str | None = None, runs_root: str | Path = "runs",
              reports_root: str | Path = "reports", interactive: bool | None = None) -> tuple[Path, dict, float]:
    """Run (or resume) the whole study; returns the rendered report's path, the summary and the study's seconds.

    `interactive`: a live progress line (default: when stdout is a terminal), else one plain line per step."""
    from ovlt.stages.training.progress import PROGRESS_ENV
    from ovlt.study.plan import NOTEBOOK_SECONDS, stage_seconds
    from ovlt.study.terminal import Estimate, KernelOutput, StudyProgress

    config_path = Path(config).resolve()
    cfg = load_config(config_path)
    _check_hardware(cfg, config_path)
    if not cfg.needs_hub:  # nothing to download: no stage may try (the notebooks' kernels inherit this)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = Run(Path(runs_root).resolve() / (run_name or cfg.name))
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.root / "config.yaml", resolved_text(config_path))
    plan = steps(cfg)
    config_fingerprint = fingerprint(cfg.model_dump(mode="json"))
    seconds = stage_seconds(cfg, cuda=_uses_cuda(cfg))
    estimate = Estimate([NOTEBOOK_SECONDS + sum(seconds[ref] for ref in step.refs) for step in plan],
                        [step_is_done(run, step, config_fingerprint) for step in plan])
    training_progress = run.notebooks_dir / PROGRESS_FILE
    os.environ[PROGRESS_ENV] = str(training_progress)  # the training callback writes it (kernels inherit it)
    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.root / LOG_FILE
    display = StudyProgress(plan, estimate, interactive=interactive, training_progress=training_progress)
    started = time.time()
    try:
        with open(log_path, "a", encoding="utf-8") as log_file:
            kernel_output = KernelOutput(log_file, display)
            for k, step in enumerate(plan):
                display.start(k)
                if step_is_done(run, step, config_fingerprint):  # again: a step rerun before may have changed it
                    display.skipped(k)
                    continue
                t0 = time.time()
                execute(NOTEBOOK_DIR / step.notebook, run.notebooks_dir / step.output_name,
                        {"config": str(config_path), "run_dir": str(run.root), "iteration": step.iteration or 0,
                         "checkpoint": step.checkpoint or ""}, step.label, log_path=log_path,
                        kernel_output=kernel_output)
                check_step_finished(cfg, run, step)
                atomic_write_json(_step_record(run, step), {
                    "config": config_fingerprint, "manifests": _manifest_fingerprints(run, step_manifests(run, step))})
                display.finished(k, time.time() - t0)
    finally:
        display.close()
        os.environ.pop(PROGRESS_ENV, None)
        training_progress.unlink(missing_ok=True)
    from ovlt.stages.evaluation import write_summary

    summary = write_summary(cfg, run, config_path=config_path, wall_seconds=time.time() - started)
    report = render_report(run.root, Path(reports_root).resolve() / run.name, log_path=log_path)
    return report, summary, time.time() - started


def _uses_cuda(cfg: StudyConfig) -> bool:
    if cfg.device != "auto":
        return cfg.device == "cuda"
    import torch

    return torch.cuda.is_available()


def render_report(run_dir: str | Path, report_dir: str | Path, log_path: Path | None = None) -> Path:
    """Execute the report notebook on an existing run and export it to one self-contained HTML file (what papermill
    and the kernel say to `log_path`, by default the run's log file)."""
    from nbconvert import HTMLExporter

    run = Run(Path(run_dir).resolve())
    if not run.summary_path.exists():
        raise ArtifactError(f"{run.summary_path} does not exist: finish the study (ovlt reproduce) before the report")
    executed = run.notebooks_dir / REPORT_NOTEBOOK
    execute(NOTEBOOK_DIR / REPORT_NOTEBOOK, executed, {"run_dir": str(run.root)}, "report",
            log_path=log_path or run.root / LOG_FILE)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    with logged_to(log_path or run.root / LOG_FILE):
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


class NotebookStop(StudyError):
    """A notebook run by hand before what it needs: one sentence naming what to run first, shown in place of a
    traceback (IPython prints `_render_traceback_`)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def first_missing_upstream(cfg: StudyConfig, run: Run, step: Step) -> StageRef | None:
    """The earliest stage, in the study's order, that `step` needs (directly or through other stages) and that has
    not finished in `run`; None when all it needs is there."""
    own = {(ref.name, ref.key) for ref in step.refs}
    wanted, todo = set(), list(own)
    while todo:
        name, key = todo.pop()
        for upstream in STAGES[name].upstream(cfg, key):
            if upstream not in wanted and upstream not in own:
                wanted.add(upstream)
                todo.append(upstream)
    for ref in stage_order(cfg):
        if (ref.name, ref.key) in wanted and not (STAGES[ref.name].folder(run, ref.key) / MANIFEST).exists():
            return ref
    return None


def run_notebook(cfg: StudyConfig, run: Run, notebook: str, iteration: int = 0, checkpoint: str = "") -> dict[str, dict]:
    """What a stage notebook's work cell does: run, in the study's order, the stages the study gives `notebook` for
    this iteration or checkpoint; returns their manifests by stage name. A stage it needs that has not run stops it
    at once, naming the notebook to run first."""
    step = notebook_step(cfg, notebook, iteration or None, checkpoint or None)
    missing = first_missing_upstream(cfg, run, step)
    if missing is not None:
        first = next(s for s in steps(cfg) if (missing.name, missing.key) in {(r.name, r.key) for r in s.refs})
        where = (f" with checkpoint = \"{first.checkpoint}\"" if first.checkpoint else
                 f" with iteration = {first.iteration}" if first.iteration else "")
        raise NotebookStop(f"{step.label} needs {missing.label}, which has not run in {run.root}: run "
                           f"notebooks/{first.notebook}{where} first, or `make reproduce` for the whole study.")
    return {ref.name: run_stage(cfg, run, ref.name, ref.key) for ref in step.refs}


def open_report(run_dir: str) -> Run:
    """What the report notebook does first: the run folder, finished or still running (then it shows what exists so
    far); a folder where no stage has finished stops it, naming the command to run first."""
    run = Run(Path(run_dir).resolve())
    if not any(run.root.glob("**/" + MANIFEST)):
        raise NotebookStop(f"no stage has finished in {run.root}: run `make reproduce` (or the stage notebooks in order)"
                           " first.")
    if not run.summary_path.exists():
        print(f"The study in {run.root} has not finished (no summary.json yet): this shows what exists so far.")
    return run
