"""What `ovlt reproduce` shows while it runs: one live tqdm line in a terminal (the step k of n, inside it the
training step with its loss or reward or the prompts sampled, and the whole study's remaining time), one plain line
per step anywhere else (CI, a pipe: no control characters). What papermill and the kernels say goes to the run's
log file instead (`KernelOutput`), where the live line also reads the prompts sampled.

The remaining time starts from the plan's per-stage estimates for this config and machine
(`ovlt.study.plan.stage_seconds`) and is refined as steps finish (`Estimate`)."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from ovlt.stages.training import progress
from ovlt.study.order import Step

REFRESH_SECONDS = 0.5
# A tqdm bar as the kernel writes it (each update after a carriage return): "generate:  40%|####  | 40/100 [...]".
TQDM_BAR = re.compile(r"(?P<desc>[^\r\n|:]+):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")
# The bars of the sampling loops (ovlt.engines.generation; vLLM's own) and the unit they count.
SAMPLING_BARS = {"generate": "prompts", "Processed prompts": "prompts"}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class Estimate:
    """The study's remaining seconds: each step's planned seconds, scaled by how much slower (or faster) than planned
    the steps run so far have run (`factor`), with the running step's share still to go (from its own progress once
    it reports any)."""

    # The plan counts as this many steps that ran as planned: one slow step (a cold cache, a job beside it) moves the
    # estimate little, and a machine slower throughout moves it from its third step on.
    PLAN_AS_STEPS = 2

    def __init__(self, planned: list[float], skipped: list[bool]):
        self.planned = planned
        self.skipped = skipped  # steps whose notebooks will not run (manifests unchanged)
        self.ratios: list[float] = []  # each finished step's seconds over its planned seconds

    @property
    def factor(self) -> float:
        """The median of the finished steps' ratios of taken to planned seconds, the plan's own (1) among them
        `PLAN_AS_STEPS` times: a mean of the ratios (or of the seconds) follows one outlier step, which once took
        the estimate from 33 to 120 minutes after a base evaluation that took 5.6 minutes against 1 planned."""
        return statistics.median([1.0] * self.PLAN_AS_STEPS + self.ratios)

    def finished(self, index: int, seconds: float) -> None:
        if self.planned[index] > 0:
            self.ratios.append(max(seconds, 0.0) / self.planned[index])

    def remaining(self, index: int, running_for: float = 0.0, fraction: float | None = None) -> float:
        """Seconds left from step `index` on, that step having run `running_for` seconds and done `fraction`."""
        later = sum(p for p, skip in zip(self.planned[index + 1:], self.skipped[index + 1:], strict=True) if not skip)
        if self.skipped[index]:
            current = 0.0
        elif fraction:
            current = running_for * (1 - fraction) / fraction
        else:
            current = max(0.0, self.planned[index] * self.factor - running_for)
        return current + later * self.factor


def _fixed_size(stream: TextIO) -> os.terminal_size | None:
    """None for a terminal that reports its size (tqdm follows it); else COLUMNS x LINES or 80 x 24: a
    pseudo-terminal without a size (under `script`, some container shells) reports 0 x 0, and tqdm then hides its
    line."""
    try:
        if os.get_terminal_size(stream.fileno()).lines:
            return None
    except (OSError, ValueError, AttributeError):
        pass
    return shutil.get_terminal_size()


class StudyProgress:
    """The display of one study run. `interactive`: a live tqdm line (default: when `stream` is a terminal)."""

    def __init__(self, steps: list[Step], estimate: Estimate, stream: TextIO = sys.stdout,
                 interactive: bool | None = None, training_progress: Path | None = None):
        self.steps, self.estimate, self.stream = steps, estimate, stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.training_progress = training_progress  # the file the training callback writes (PROGRESS_ENV)
        self.started = time.time()
        self.index = 0
        self.step_started = self.started
        self.inner: tuple[str, float | None] = ("", None)  # what the running step reports, and its fraction done
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the study's events ---------------------------------------------------------------------------------------

    def start(self, index: int) -> None:
        step, n = self.steps[index], len(self.steps)
        with self._lock:
            self.index, self.step_started, self.inner = index, time.time(), ("", None)
        if self.training_progress is not None:
            self.training_progress.unlink(missing_ok=True)
        remaining = self.estimate.remaining(index)
        if not self.interactive:
            print(f"[{index + 1}/{n}] {step.label}  (elapsed {minutes(time.time() - self.started)},"
                  f" remaining ~{minutes(remaining)})", file=self.stream, flush=True)
            return
        if self._bar is None:
            size = _fixed_size(self.stream)
            self._bar = _StatusBar(total=n, file=self.stream, bar_format="{desc} |{bar:16}| {status}",
                                   dynamic_ncols=size is None, ncols=size and size.columns,
                                   nrows=size and size.lines)
            self._thread = threading.Thread(target=self._refresh, daemon=True)
            self._thread.start()
        self._render()

    def skipped(self, index: int) -> None:
        self._done(index, "done (manifests unchanged): skipped")

    def finished(self, index: int, seconds: float) -> None:
        self.estimate.finished(index, seconds)
        self._done(index, f"done in {minutes(seconds)}")

    def sampling(self, what: str, done: int, total: int) -> None:
        """Progress a kernel reported from inside a sampling loop (`KernelOutput`). Shown, not used for the time left:
        one step may sample several times (an evaluation greedily, then under sampling)."""
        with self._lock:
            self.inner = (f"{what} {done:,}/{total:,}", None)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # --- rendering ------------------------------------------------------------------------------------------------

    def _done(self, index: int, text: str) -> None:
        if not self.interactive:
            print(f"      {text}", file=self.stream, flush=True)
            return
        if self._bar is not None:
            self._bar.write(f"[{index + 1}/{len(self.steps)}] {self.steps[index].label}: {text}", file=self.stream)
            self._bar.update(1)

    def _training(self) -> tuple[str, float | None] | None:
        if self.training_progress is None:
            return None
        state = progress.read(self.training_progress)
        if not state or not state.get("total"):
            return None
        # GRPO's reward says how it goes (its loss hovers near 0 by construction), SFT's loss.
        metrics = next((f" {k} {state[k]:.3f}" for k in ("reward", "loss") if k in state), "")
        return f"step {state['step']:,}/{state['total']:,}{metrics}", state["step"] / state["total"]

    def status(self) -> str:
        """The live line's text after the step's name: what it is doing, elapsed, remaining."""
        with self._lock:
            index, running_for, (inner, fraction) = self.index, time.time() - self.step_started, self.inner
        training = self._training()
        if training is not None:
            inner, fraction = training
        remaining = self.estimate.remaining(index, running_for, fraction)
        parts = [inner] if inner else []
        return " | ".join(parts + [f"elapsed {minutes(time.time() - self.started)}", f"~{minutes(remaining)} left"])

    def _render(self) -> None:
        if self._bar is not None:
            self._bar.status = self.status()
            self._bar.set_description_str(f"[{self.index + 1}/{len(self.steps)}] {self.steps[self.index].label}")

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self._render()


class _StatusBar(tqdm):
    """tqdm's line with one more field for its bar_format, `{status}` (tqdm passes format_dict's keys on)."""

    status = ""

    @property
    def format_dict(self):
        return {**super().format_dict, "status": self.status}


class KernelOutput:
    """A file for papermill's `stdout_file`/`stderr_file`: what the kernel prints goes to the run's log file, and the
    sampling loops' tqdm bars in it become the live line's progress."""

    def __init__(self, log: TextIO, progress: StudyProgress):
        self.log, self.progress = log, progress

    def write(self, text: str) -> int:
        self.log.write(text)
        for match in TQDM_BAR.finditer(text):
            desc = match["desc"].strip()
            if desc in SAMPLING_BARS:
                self.progress.sampling(SAMPLING_BARS[desc], int(match["done"]), int(match["total"]))
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def headline(summary: dict) -> str:
    """Each checkpoint's accuracy on the study's first evaluation entry: `synthetic (strict): base 4.7% -> ...`."""
    first = next((s["results"][0] for s in summary["stages"] if s.get("results")), None)
    if first is None:
        return "no checkpoint was evaluated"
    same = ("entry", "prompt", "protocol")
    accuracies = [f"{s['name']} {r['accuracy']:.1%}" for s in summary["stages"] for r in s.get("results", [])
                  if all(r.get(k) == first.get(k) for k in same)]
    baseline = summary.get("baselines", {}).get(first["entry"])
    chance = "" if baseline is None else f" (chance {baseline:.1%})"
    return f"accuracy on {first['entry']} ({first['protocol']}, n={first['n']}): " + " -> ".join(accuracies) + chance


def closing_message(summary: dict, report: Path, wall_seconds: float) -> str:
    """What the study prints when it ends: where the report is, the headline numbers, and how to open it."""
    return "\n".join([
        f"study finished in {minutes(wall_seconds)}",
        headline(summary),
        f"report: {report}",
        f"open it: python3 -m webbrowser {report.resolve().as_uri()}",
    ])
