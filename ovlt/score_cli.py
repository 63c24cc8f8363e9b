"""`ovlt score`: score a file of model responses against a benchmark's official annotations.

    ovlt score --benchmark mathvista --annotations testmini.json --responses responses.jsonl
               [--protocol official|strict|authors] [--out verdicts.jsonl]

--responses is JSON lines {"id": ..., "response": "..."} (MathVista ids are the pid). --out writes JSON lines
{"id", "extracted", "rule", "correct"}. stdout prints the breakdowns (MathVista by question and answer type,
MathVerse by problem version, MathVision by subject and level) and ends with `accuracy: C/N = P%`.
Bad input stops with an error naming the file and line; items without a response count as wrong and are listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovlt.scoring import benchmarks


def read_responses(path: Path, known_ids: set[str]) -> dict[str, str]:
    """{id: response} from JSON lines; raises ValueError naming the line for anything malformed."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    responses = {}
    for where, row in benchmarks.read_jsonl(path):
        if not isinstance(row, dict) or "id" not in row or "response" not in row:
            raise ValueError(f"{where}: each line needs an object with 'id' and 'response'")
        if not isinstance(row["response"], str):
            raise ValueError(f"{where}: 'response' must be a string, got {type(row['response']).__name__}")
        item_id = str(row["id"])
        if item_id not in known_ids:
            raise ValueError(f"{where}: unknown id {item_id!r} (not in the annotation file)")
        if item_id in responses:
            raise ValueError(f"{where}: id {item_id!r} appears twice")
        responses[item_id] = row["response"]
    return responses


def format_report(summary: dict) -> str:
    lines = [f"benchmark: {summary['benchmark']}  protocol: {summary['protocol']}"]
    for key, table in summary["breakdowns"].items():
        lines.append(f"by {key}:")
        width = max(len(v) for v in table) if table else 0
        lines += [f"  {v:<{width}}  {t['correct']:>5}/{t['total']:<5} {100 * t['accuracy']:6.2f}%"
                  for v, t in table.items()]
    if summary["missing"]:
        shown = ", ".join(summary["missing"][:20]) + (" ..." if len(summary["missing"]) > 20 else "")
        lines.append(f"missing responses (counted wrong): {len(summary['missing'])}: {shown}")
    lines.append(f"accuracy: {summary['correct']}/{summary['total']} = {100 * summary['accuracy']:.2f}%")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovlt score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, choices=["mathvista", "mathverse", "mathvision"])
    parser.add_argument("--annotations", required=True, type=Path,
                        help="the benchmark's official file: MathVista testmini.json, MathVerse testmini.json, "
                             "MathVision test.jsonl / testmini.jsonl")
    parser.add_argument("--responses", required=True, type=Path, help='JSON lines {"id": ..., "response": ...}')
    parser.add_argument("--protocol", default="official", choices=["official", "strict", "authors"],
                        help="official: the benchmark's own rules (MathVerse: strict); strict: ours; authors: the "
                             "OpenVLThinker authors' harness (mathruler on the \\boxed{} answer their prompt asks "
                             "for), the protocol of the paper's reported numbers")
    parser.add_argument("--out", type=Path, help="write per-item verdicts as JSON lines")
    return parser


def score_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        records = benchmarks.load_local(args.benchmark, args.annotations)
        responses = read_responses(args.responses, {r["id"] for r in records})
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows, summary = benchmarks.score_responses(args.benchmark, records, responses, args.protocol)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(format_report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(score_main())
