"""Would stopping a response once it can no longer become well formed change a verdict? (issue 35)

    python benchmarks/generation_length.py runs/tiny

For every checkpoint a finished run evaluated on the synthetic benchmark, each greedy response (as
`eval/<checkpoint>/synthetic/predictions.jsonl` keeps it) is cut where its text stops being the start of a
well-formed think/answer response (`ovlt.scoring.chains.WELL_FORMED`, read as a partial match): the text a stopping
rule would have kept. Only greedy responses are measured: the sampled ones are not stored. (A sampled response
would keep its own text up to its cut: transformers seeds each batch, and a finished row keeps drawing.) Printed per
checkpoint: responses, those the rule would cut, the share of characters it keeps, right verdicts before, and
verdicts the cut changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import regex

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ovlt.ground.artifacts import Run  # noqa: E402
from ovlt.scoring import benchmarks as bench  # noqa: E402
from ovlt.scoring.chains import WELL_FORMED  # noqa: E402
from ovlt.scoring.predictions import read_responses  # noqa: E402
from ovlt.stages.registry import output  # noqa: E402

PREFIX_OF_WELL_FORMED = regex.compile(WELL_FORMED.pattern, regex.DOTALL)


def cut(text: str) -> str:
    """`text` up to and including its first character after which it can no longer become well formed."""
    for end in range(1, len(text) + 1):
        if PREFIX_OF_WELL_FORMED.fullmatch(text[:end], partial=True) is None:
            return text[:end]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    run = Run(args.run)
    records = bench.load_local("synthetic", output(run, "data", "heldout"))
    print(f"{'checkpoint':<12}{'responses':>10}{'cut':>6}{'chars kept':>12}{'right':>7}{'verdicts changed':>18}")
    for folder in sorted((args.run / "eval").iterdir(), key=lambda p: p.stat().st_mtime):
        if not (folder / "synthetic" / "predictions.jsonl").is_file():
            continue
        rows = read_responses(run, folder.name, "synthetic")
        protocol = next(iter(rows[0]["verdicts"]))
        cuts = {row["id"]: cut(row["response"]) for row in rows}
        rescored, _ = bench.score_responses("synthetic", records, cuts, protocol=protocol)
        after = {row["id"]: row["correct"] for row in rescored}
        changed = sum(after[row["id"]] != row["verdicts"][protocol]["correct"] for row in rows)
        kept = sum(map(len, cuts.values())) / max(1, sum(len(row["response"]) for row in rows))
        print(f"{folder.name:<12}{len(rows):>10}{sum(cuts[r['id']] != r['response'] for r in rows):>6}{kept:>12.3f}"
              f"{sum(r['verdicts'][protocol]['correct'] for r in rows):>7}{changed:>18}")


if __name__ == "__main__":
    main()
