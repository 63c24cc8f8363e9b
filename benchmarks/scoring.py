"""Scoring speed: ovlt.scoring.answers.score on the 3,000 MathVista fixture responses, beside a baseline that sends every
response through math-verify parse/verify. Goal: >= 2,000 responses/s and >= 20x the baseline on one core.

    python benchmarks/scoring.py [--baseline-items 300]

The fixtures (docs/scoring.md, "Conformance with MathVista's official verdicts") are read from $OVLT_FIXTURES,
else from where tests/conftest.py looks for them; they are never copied into the project.
The baseline is slow, so by default it runs on a sample of the responses and reports its rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ovlt.scoring import answers  # noqa: E402

MODELS = ("gpt4_2shot_solution", "claude_2shot_solution", "llava_llama_2_13b")


def fixtures_dir() -> Path:
    return Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures")) / "mathvista"


def load_items(folder: Path) -> list[tuple]:
    """(response, answer, answer_type, choices, precision) for every model x problem."""
    problems = json.loads((folder / "testmini.json").read_text(encoding="utf-8"))
    items = []
    for model in MODELS:
        for line in (folder / f"{model}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            p = problems[row["pid"]]
            answer_type = "multiple_choice" if p["question_type"] == "multi_choice" else p["answer_type"]
            items.append((row["response"], p["answer"], answer_type, p["choices"] or [],
                          -1 if p["precision"] is None else int(p["precision"])))
    return items


def rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(*item)
    return len(items) / (time.perf_counter() - start)


def math_verify_baseline(response, answer, *_):
    from math_verify import parse, verify

    return verify(parse("$" + answer + "$"), parse(response))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-items", type=int, default=300, help="responses the baseline scores")
    args = parser.parse_args()
    folder = fixtures_dir()
    if not (folder / "testmini.json").is_file():
        sys.exit(f"fixtures not found at {folder}; set OVLT_FIXTURES")
    items = load_items(folder)
    answers.SYMPY_WORKER.equal("1", "1")  # start the scorer's sympy worker outside the timing
    official = rate(lambda *it: answers.score(*it, protocol="official"), items)
    strict = rate(lambda *it: answers.score(*it, protocol="strict"), items)
    math_verify_baseline(*items[0])  # import outside the timing
    baseline = rate(math_verify_baseline, items[: args.baseline_items])
    print(f"responses: {len(items)} (baseline on {min(args.baseline_items, len(items))})")
    print(f"ovlt official : {official:9.0f} responses/s  ({official / baseline:.0f}x baseline)")
    print(f"ovlt strict   : {strict:9.0f} responses/s  ({strict / baseline:.0f}x baseline)")
    print(f"math-verify   : {baseline:9.0f} responses/s  (parse + verify on every response)")


if __name__ == "__main__":
    main()
