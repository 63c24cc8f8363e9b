"""The README's pictures, regenerated from a finished run (`make figures`): the accuracy per stage from its
summary.json and a screenshot of the run's HTML report (headless Chromium).

    python -m ovlt.study.figures --run runs/tiny --report reports/tiny/index.html --out docs [--browser chromium]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ovlt.ground.artifacts import ArtifactError

ACCURACY_FIGURE = "accuracy.png"
REPORT_SCREENSHOT = "report.png"
SCREENSHOT_SIZE = "1280,1800"  # pixels: the report's headline, accuracy figure and table
FIGURE_DPI = 100


def accuracy_figure(summary_path: Path, out: Path) -> Path:
    """Accuracy per stage with its 95% interval and the chance baseline, on the run's first evaluation entry and
    protocol, from its summary.json, as a PNG."""
    import json

    from matplotlib.figure import Figure

    from ovlt.ground.layout import parse_checkpoint
    from ovlt.stages.report import STAGE_COLORS

    if not summary_path.is_file():
        raise ArtifactError(f"{summary_path} does not exist: finish the study (make reproduce) first")
    summary = json.loads(summary_path.read_text())
    first = next((s["results"][0] for s in summary["stages"] if s.get("results")), None)
    if first is None:
        raise ArtifactError(f"{summary_path}: no evaluated checkpoint to draw")
    same = ("entry", "prompt", "protocol")
    points = [(s["name"], r) for s in summary["stages"] for r in s.get("results", [])
              if all(r.get(k) == first.get(k) for k in same)]
    figure = Figure(figsize=(6.4, 3.6), dpi=FIGURE_DPI, layout="constrained")
    axes = figure.add_subplot()
    for x, (name, r) in enumerate(points):
        low, high = r["ci95"]
        axes.bar(x, 100 * r["accuracy"], color=STAGE_COLORS[parse_checkpoint(name)[0]])
        axes.errorbar(x, 100 * r["accuracy"], yerr=[[100 * (r["accuracy"] - low)], [100 * (high - r["accuracy"])]],
                      color="black", capsize=4)
        axes.annotate(f"{100 * r['accuracy']:.1f}", (x, 100 * high), ha="center", va="bottom", fontsize=9)
    baseline = summary.get("baselines", {}).get(first["entry"])
    if baseline is not None:
        axes.axhline(100 * baseline, color="grey", linestyle="--", label=f"chance (majority answer) {100 * baseline:.1f}")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xticks(range(len(points)), [name for name, _ in points])
    axes.set_ylim(0, 100)
    axes.set_ylabel("accuracy (%), 95% CI")
    axes.set_title(f"{summary.get('run', '')}: {first['entry']} held-out, n={first['n']} ({first['protocol']} scorer)",
                   fontsize=10)
    path = out / ACCURACY_FIGURE
    figure.savefig(path)
    return path


def report_screenshot(report: Path, out: Path, browser: str) -> Path:
    """The top of the rendered report, as the headless browser shows it."""
    if not report.is_file():
        raise ArtifactError(f"{report} does not exist: render it first (make reproduce, or make report)")
    executable = shutil.which(browser)
    if executable is None:
        raise ArtifactError(f"browser {browser!r} not found: install Chromium or pass CHROMIUM=/path/to/chrome")
    path = out / REPORT_SCREENSHOT
    # --no-sandbox: Chromium's sandbox refuses root, as in most containers.
    subprocess.run([executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={SCREENSHOT_SIZE}", f"--screenshot={path.resolve()}", report.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovlt.study.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="the finished run's folder (runs/<run>, with summary.json)")
    parser.add_argument("--report", required=True, type=Path, help="its rendered report (reports/<run>/index.html)")
    parser.add_argument("--out", required=True, type=Path, help="where the PNGs go (docs)")
    parser.add_argument("--browser", default="chromium")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for path in (accuracy_figure(args.run / "summary.json", args.out),
                     report_screenshot(args.report, args.out, args.browser)):
            print(f"wrote {path}")
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
