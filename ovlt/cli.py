"""The `ovlt` command: plan, reproduce, score, report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ovlt.ground.config import ConfigError, load_config


def _plan(args: argparse.Namespace) -> int:
    from ovlt.study.plan import format_plan

    print(format_plan(load_config(args.config)))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from ovlt.study import reproduce

    reproduce(args.config, run_name=args.run, runs_root=args.runs_root, reports_root=args.reports_root)
    return 0


def _report(args: argparse.Namespace) -> int:
    from ovlt.study import render_report

    path = render_report(Path(args.runs_root) / args.run, Path(args.reports_root) / args.run)
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
    p.add_argument("--run", required=True)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--reports-root", default="reports")
    p.set_defaults(func=_report)
    sub.add_parser("score", help="score benchmark responses (see `ovlt score --help`)")
    args = parser.parse_args(argv)
    from ovlt.ground.artifacts import ArtifactError
    from ovlt.study import StudyError

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StudyError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
