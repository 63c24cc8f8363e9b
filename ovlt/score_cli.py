"""`ovlt score`: score a file of model responses against a benchmark's official annotations.

    ovlt score --benchmark mathvista --annotations testmini.json --responses responses.jsonl
               [--protocol official|strict|authors] [--field response|extraction] [--out verdicts.jsonl]

--responses is JSON lines {"id": ..., "response": "..."} (MathVista ids are the pid), or with --field extraction
{"id": ..., "extraction": "..."}: answers an extractor already made, matched by the protocol's normaliser alone. --out writes JSON lines
{"id", "extracted", "rule", "correct"}. stdout prints the breakdowns (MathVista by question and answer type,
MathVerse by problem version, MathVision by subject and level) and ends with `accuracy: C/N = P%`.
Bad input stops with a one-line error naming the file and line (or entry and key), exit status 2, before anything is
written; --out may not name an input file and is written through a temporary file and one rename, so a failure leaves
what was there before. Items without a response count as wrong and are listed. Responses that repeat few words of
their questions get a warning: they are likely another benchmark's. docs/bad-input.md lists every kind of bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
from pathlib import Path

from ovlt.ground.artifacts import ArtifactError, atomic_write_text
from ovlt.ground.schema import ANSWER_TYPES
from ovlt.scoring import benchmarks

OPTION_LISTS = ("choices", "options")  # the option lists of MathVista's and MathVision's entries


def _is_text(where: str, key: str, value: str) -> None:
    """JSON can carry a lone surrogate ("\\ud800"), which is no text: no file could hold it as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: {key!r} holds {value[err.start]!r} at character {err.start}, a lone surrogate, "
                         "not text") from None


def read_responses(path: Path, known_ids: set[str], field: str = "response") -> dict[str, str]:
    """{id: row[field]} from JSON lines, or a .json list or object of rows as EMMA publishes its results (field:
    "response", or "extraction" for answers already extracted); raises ValueError naming the line for anything
    malformed, and the file when it holds no response. A row's id is its `id`, else its `pid` (EMMA's)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        lines = [(where, {"id": row["pid"], **row} if isinstance(row, dict) and "id" not in row and "pid" in row
                  else row) for where, row in benchmarks.read_rows(path)]
    except RecursionError:
        raise ValueError(f"{path}: a line nests JSON too deeply to read") from None
    responses = {}
    for where, row in lines:
        if not isinstance(row, dict) or "id" not in row or field not in row:
            raise ValueError(f"{where}: each line needs an object with 'id' and {field!r}")
        if row[field] is None:  # no response (EMMA's results keep failed calls so): missing, and so wrong
            continue
        if not isinstance(row[field], str):
            raise ValueError(f"{where}: {field!r} must be a string, got {type(row[field]).__name__}")
        item_id = str(row["id"])
        _is_text(where, "id", item_id)
        _is_text(where, field, row[field])
        if item_id not in known_ids:
            raise ValueError(f"{where}: unknown id {item_id!r} (not in the annotation file)")
        if item_id in responses:
            raise ValueError(f"{where}: id {item_id!r} appears twice")
        responses[item_id] = row[field]
    if not responses:
        raise ValueError(f"{path}: no responses (the file holds no JSON line)")
    return responses


def _checked(spec: benchmarks.BenchmarkSpec) -> benchmarks.BenchmarkSpec:
    """The benchmark with a record builder that refuses, naming the entry and key, what it would otherwise read wrong
    (option lists given as a string, split into characters) or fail on without naming anything."""

    def to_record(row: dict, image_dir: Path | None) -> dict:
        entry = f"entry {row[spec.required_fields[0]]!r}"  # each benchmark lists its id field first
        for key in OPTION_LISTS:
            # MMMU-Pro's data and EMMA's results hold options as a Python-list string, which their builders read
            if isinstance(row.get(key), str) and not spec.name.startswith(("mmmu_pro", "emma")):
                raise ValueError(f"{entry}: {key!r} must be a list of option texts, got the string {row[key][:40]!r}")
        precision = row.get("precision")
        whole = isinstance(precision, int | float) and not isinstance(precision, bool) and float(precision).is_integer()
        if precision is not None and not whole:
            raise ValueError(f"{entry}: 'precision' must be a whole number of decimals or null, got {precision!r}")
        try:
            record = spec.to_record(row, image_dir)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{entry}: {err}") from None
        if record["answer_type"] not in ANSWER_TYPES:
            raise ValueError(f"{entry}: unknown answer_type {record['answer_type']!r}; the scorer knows "
                             f"{', '.join(ANSWER_TYPES)}")
        return record

    return dataclasses.replace(spec, to_record=to_record)


def load_annotations(benchmark: str, path: Path) -> list[dict]:
    """The benchmark's records from its official file; a ValueError naming the file (and entry and key) for anything
    the scorer cannot use."""
    try:
        records = benchmarks.load_local(_checked(benchmarks.get_benchmark(benchmark)), path)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as err:
        raise ValueError(str(err) if str(path) in str(err) else f"{path} {err}") from None
    except (TypeError, KeyError, AttributeError) as err:  # e.g. a file that is one number, not a list of entries
        raise ValueError(f"{path}: not a {benchmark} annotation file ({type(err).__name__}: {err})") from None
    if not records:
        raise ValueError(f"{path}: no entries")
    return records


def check_out(out: Path, inputs: dict[str, Path]) -> None:
    """Refuse, before any scoring, an --out that is an input file (it would be overwritten with verdicts), a folder, or
    under a file."""
    for flag, path in inputs.items():
        if out.resolve() == path.resolve() or (out.exists() and path.exists() and os.path.samefile(out, path)):
            raise ValueError(f"--out {out} is the {flag} file {path}: it would be overwritten; name another file")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name a file")
    ancestor = next(p for p in out.resolve().parents if p.exists())
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder")


_WORD = re.compile(r"[a-z]{4,}")
MIN_WORDS = 20  # shorter responses (a bare answer) need not repeat the question
MIN_RESPONSES = 20  # fewer say little
MISMATCH_OVERLAP = 0.15  # between a benchmark's own responses (0.39-0.70) and another's (0.04-0.08): docs/bad-input.md


def question_overlap(records: list[dict], responses: dict[str, str]) -> tuple[float, int] | None:
    """The mean share of a question's words (4+ letters, options included) that its response repeats, over the
    responses of MIN_WORDS words or more, and how many those are; None if there is none."""
    shares = []
    for record in records:
        response = responses.get(record["id"], "")[:50_000]
        words = set(_WORD.findall(f"{record['question']} {' '.join(record['choices'])}".lower()))
        if words and len(response.split()) >= MIN_WORDS:
            shares.append(len(words & set(_WORD.findall(response.lower()))) / len(words))
    return (statistics.mean(shares), len(shares)) if shares else None


def format_report(summary: dict) -> str:
    lines = [f"benchmark: {summary['benchmark']}  protocol: {summary['protocol']}"
             + ("  (given extractions, not extracted again)" if summary.get("field") == "extraction" else "")]
    for key, table in summary["breakdowns"].items():
        lines.append(f"by {key}:")
        width = max(len(v) for v in table) if table else 0
        lines += [f"  {v:<{width}}  {t['correct']:>5}/{t['total']:<5} {100 * t['accuracy']:6.2f}%"
                  for v, t in table.items()]
    if summary["missing"]:
        shown = ", ".join(summary["missing"][:20]) + (" ..." if len(summary["missing"]) > 20 else "")
        lines.append(f"missing responses (counted wrong): {len(summary['missing'])}: {shown}")
    lines.append(f"accuracy: {summary['correct']}/{summary['total']} = {100 * summary['accuracy']:.2f}%")
    lines += [f"{name.replace('_', ' ')}: {100 * value:.2f}%" for name, value in
              summary.get("benchmark_metrics", {}).items() if name.endswith("accuracy") and name != "accuracy"]
    return "\n".join(lines)


SCORED = ["mathvista", "mathverse", "mathvision", "mmmu_pro_standard4", "mmmu_pro_standard10", "mmmu_pro_vision",
          "emma_math", "emma_physics", "emma_chemistry", "emma_coding", "hallusionbench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovlt score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, choices=SCORED)
    parser.add_argument("--annotations", required=True, type=Path,
                        help="the benchmark's official file: MathVista testmini.json, MathVerse testmini.json, "
                             "MathVision test.jsonl / testmini.jsonl; for MMMU-Pro, EMMA and HallusionBench the "
                             "items as JSON lines or a JSON list in their hub fields, e.g. MMMU-Pro's published "
                             "outputs, whose lines carry each item's id, options and gold answer beside the response")
    parser.add_argument("--responses", required=True, type=Path, help='JSON lines {"id": ..., "response": ...}')
    parser.add_argument("--protocol", default="official",
                        choices=["official", "strict", "authors", "mathvision_strict"],
                        help="official: the benchmark's own rules (MathVerse: strict); strict: ours (MMMU-Pro: its "
                             "parser with a guess scored wrong); authors: the OpenVLThinker authors' harness "
                             "(mathruler on the \\boxed{} answer their prompt asks for), the protocol of the paper's "
                             "reported numbers; mathvision_strict: MATH-V's rules valuing whole strings only")
    parser.add_argument("--field", default="response", choices=benchmarks.FIELDS,
                        help="what each line carries: the model's raw 'response' (extracted, then matched), or an "
                             "'extraction' some extractor already made (lmms-eval, VLMEvalKit, MathVista's GPT "
                             "extractor): matched by the protocol's normaliser alone, never extracted again")
    parser.add_argument("--out", type=Path, help="write per-item verdicts as JSON lines (not over an input file)")
    return parser


def score_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out:
            check_out(args.out, {"--responses": args.responses, "--annotations": args.annotations})
        records = load_annotations(args.benchmark, args.annotations)
        responses = read_responses(args.responses, {r["id"] for r in records}, args.field)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    overlap = question_overlap(records, responses) if args.field == "response" else None  # answers alone
    if overlap is not None and overlap[1] >= MIN_RESPONSES and overlap[0] < MISMATCH_OVERLAP:
        print(f"warning: the responses repeat {100 * overlap[0]:.0f}% of their questions' words on average (a "
              f"benchmark's own responses: 39-70%): are {args.responses} responses to another benchmark than "
              f"{args.benchmark}?", file=sys.stderr)
    rows, summary = benchmarks.score_responses(args.benchmark, records, responses, args.protocol, args.field)
    print(format_report(summary))
    if args.out:
        try:
            atomic_write_text(args.out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        except ArtifactError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(score_main())
