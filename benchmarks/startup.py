"""Where a stage notebook's start-up goes: kernel start, the imports before its stage line, and the imports its stage
pulls in, with the heavy libraries each step loads.

    python benchmarks/startup.py [RUN_DIR]

1. In a fresh interpreter per notebook (as a kernel is), the seconds of each import a stage notebook makes before
   its stage's own work: `ovlt.study` (the open_study cell), the notebook's stage functions (`STAGES[...].resolve()`,
   what `run_notebook` imports), and `ovlt.stages.report` (the evidence cells); and which of the heavy libraries
   (torch, transformers, trl, datasets, vllm, matplotlib, pandas, ...) are loaded after each.
2. A Jupyter kernel's start (jupyter_client, the kernel `ovlt reproduce` uses), three times.
3. With RUN_DIR (a finished run): from papermill's timings in its executed notebooks, each notebook's seconds before
   its stage cell, in it, and after it.
Run it on quiet cores: the figures are wall-clock seconds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets", "vllm", "peft", "accelerate", "matplotlib", "pandas", "PIL",
         "sympy", "math_verify", "papermill", "IPython")

PROBE = """
import json, sys, time
heavy = {heavy!r}
def loaded():
    return sorted(h for h in heavy if h in sys.modules)
out = []
t = time.perf_counter()
import ovlt.study
out.append(["ovlt.study", time.perf_counter() - t, loaded()])
from ovlt.stages.registry import STAGES
for name in {stages!r}:
    t = time.perf_counter()
    STAGES[name].resolve()
    out.append([name + " (its module)", time.perf_counter() - t, loaded()])
t = time.perf_counter()
from ovlt.stages import report
out.append(["ovlt.stages.report", time.perf_counter() - t, loaded()])
print(json.dumps(out))
"""


def notebooks() -> dict[str, list[str]]:
    from ovlt.stages.registry import STAGES

    by_notebook: dict[str, list[str]] = {}
    for name, spec in STAGES.items():
        by_notebook.setdefault(spec.notebook, []).append(name)
    return dict(sorted(by_notebook.items()))


def imports(stages: list[str]) -> list[tuple[str, float, list[str]]]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, stages=stages)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def kernel_start_seconds() -> float:
    from jupyter_client.manager import start_new_kernel

    started = time.perf_counter()
    manager, client = start_new_kernel(kernel_name="ovlt", stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    client.stop_channels()
    manager.shutdown_kernel(now=True)
    return seconds


def run_timings(run_dir: Path) -> None:
    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp)

    print(f"\npapermill timings of {run_dir / 'notebooks'} (seconds)")
    print(f"{'notebook':32s} {'total':>7s} {'before stage':>13s} {'stage cell':>11s} {'after':>7s}")
    for path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        meta = notebook["metadata"].get("papermill") or {}
        cells = [c for c in notebook["cells"] if c["cell_type"] == "code" and c["metadata"].get("papermill")]
        stage = next((c for c in cells if "run_notebook(" in "".join(c["source"])), None)
        if not meta.get("end_time") or stage is None or not stage["metadata"]["papermill"].get("end_time"):
            continue  # still running
        start, end = at(meta["start_time"]), at(meta["end_time"])
        cell = stage["metadata"]["papermill"]
        before = (at(cell["start_time"]) - start).total_seconds()
        after = (end - at(cell["end_time"])).total_seconds()
        print(f"{path.name:32s} {meta['duration']:7.1f} {before:13.1f} {cell['duration']:11.1f} {after:7.1f}")


def main(argv: list[str]) -> None:
    print("imports in a fresh interpreter, per stage notebook (seconds; heavy libraries loaded after each step)")
    for notebook, stages in notebooks().items():
        print(f"\n{notebook}")
        for what, seconds, loaded in imports(stages):
            print(f"  {what:36s} {seconds:6.2f}  {', '.join(loaded)}")
    starts = [kernel_start_seconds() for _ in range(3)]
    print(f"\nkernel start (ovlt kernel): median {statistics.median(starts):.2f} s of {[round(s, 2) for s in starts]}")
    if argv:
        run_timings(Path(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
