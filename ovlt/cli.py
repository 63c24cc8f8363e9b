"""The `ovlt` command: plan, reproduce, score, report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ovlt.ground.artifacts import ArtifactError, safe_name
from ovlt.ground.config import ConfigError, StudyConfig, load_config


class BadInput(ValueError):
    """An argument the command refuses before doing any work (exit status 2)."""


def _run_name(name: str) -> str:
    try:
        return safe_name(name, "run name")
    except ArtifactError as exc:
        raise BadInput(f"--run: {exc}") from None


def _study_config(path: str) -> StudyConfig:
    """The config, with what loading it cannot check: its local models are on this machine, and the benchmarks it
    names are the scorer's (a layer above the config's)."""
    from ovlt.scoring.benchmarks import get_benchmark

    cfg = load_config(path)
    missing = cfg.missing_models()
    if missing:
        raise ConfigError(f"{path}: {'; '.join(missing)}")
    named = [(f"evaluation.benchmarks.{i}.name", ref.name) for i, ref in enumerate(cfg.evaluation.benchmarks)]
    named += [(f"decontaminate.benchmarks.{i}", name) for i, name in enumerate(cfg.decontaminate.benchmarks)]
    for key, name in named:
        try:
            get_benchmark(name)
        except KeyError as exc:
            raise ConfigError(f"{path}: {key}: {exc.args[0]}") from None
    return cfg


def _plan(args: argparse.Namespace) -> int:
    from ovlt.study.plan import format_plan

    print(format_plan(_study_config(args.config)))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from ovlt.study import reproduce
    from ovlt.study.terminal import closing_message

    _study_config(args.config)
    if args.run is not None:
        _run_name(args.run)
    # The study shows its own progress; this process's log lines would break its live line.
    logging.getLogger().setLevel(logging.WARNING)
    report, summary, seconds = reproduce(args.config, run_name=args.run, runs_root=args.runs_root,
                                         reports_root=args.reports_root)
    print(closing_message(summary, report, seconds))
    return 0


def _report_run(run: str, runs_root: str) -> Path:
    """--run of `ovlt report`: a run name (runs_root/<name>) or an existing run folder, whose report goes to
    reports_root/<its name> like any other."""
    try:
        return Path(runs_root) / safe_name(run, "run name")
    except ArtifactError as exc:
        folder = Path(run)
        if not folder.is_dir():
            raise BadInput(f"--run: {exc}; nor is it an existing run folder") from None
    _run_name(folder.resolve().name)
    return folder


def _report(args: argparse.Namespace) -> int:
    from ovlt.stages import report
    from ovlt.study import render_report

    run_dir = _report_run(args.run, args.runs_root)
    try:
        report.load(run_dir)  # a missing or corrupt summary.json is named before anything is written
    except ArtifactError as exc:
        raise BadInput(str(exc)) from None
    path = render_report(run_dir, Path(args.reports_root) / run_dir.resolve().name)
    print(f"report: {path}")
    return 0


def _score(argv: list[str]) -> int:
    from ovlt.score_cli import score_main

    return score_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if argv[:1] == ["score"]:  # `ovlt score` owns its arguments
        return _score(argv[1:])
    parser = argparse.ArgumentParser(prog="ovlt", description="OpenVLThinker reproduction: iterative SFT + GRPO.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="print the stages a config would run, with volumes, loading no model")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_plan)
    p = sub.add_parser("reproduce", help="run the study's notebooks in order (resumes a stopped run)")
    p.add_argument("--config", required=True)
    p.add_argument("--run", default=None, help="run name (default: the config's name)")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--reports-root", default="reports")
    p.set_defaults(func=_reproduce)
    p = sub.add_parser("report", help="render reports/<run>/index.html from an existing run")
    p.add_argument("--run", required=True, help="run name (runs/<run>) or an existing run folder")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--reports-root", default="reports")
    p.set_defaults(func=_report)
    sub.add_parser("score", help="score benchmark responses (see `ovlt score --help`)")
    args = parser.parse_args(argv)
    from ovlt.study import StudyError

    try:
        return args.func(args)
    except (ConfigError, BadInput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StudyError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
