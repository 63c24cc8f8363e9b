"""Scoring speed: ovlt.scoring.matching.score on real and long responses, beside a baseline that sends every response
through math-verify parse/verify. Goal: >= 2,000 responses/s per core and >= 20x the baseline, the same verdicts;
a hostile file of 1,000 responses scored in under a minute under every protocol.

    python benchmarks/scoring.py [--baseline-items 300] [--profile SET]

Sets: the 3,000 MathVista fixture responses (short), the 6,080 MATH-V chain-of-thought responses (GPT-4 and
ChatGPT-3.5), 1,000 synthetic chains of about 2,000 tokens (seeded), and 1,000 hostile responses (power towers,
20,000-character spans, deep nesting). The fixtures (docs/scoring.md) are read from $OVLT_FIXTURES, else from where
tests/helpers.py looks for them; they are never copied into the project.

Each line gives responses/s by the wall clock and per core: responses over the CPU seconds spent, this process's
(`time.process_time`) plus the sympy worker's (read from /proc), so a busy shared machine does not distort it. Both
protocols of a set run in the same process one after the other, and the baseline in the same run, so the ratios
compare like with like. --profile SET prints where the time goes (cProfile, by cumulative time) for that set.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ovlt.scoring import benchmarks, matching  # noqa: E402

MATHVISTA_MODELS = ("gpt4_2shot_solution", "claude_2shot_solution", "llava_llama_2_13b")
MATHVISION_MODELS = ("gpt4_cot_text_only", "chatgpt35_cot_caption")
SETS = ("mathvista", "mathvision", "chains", "hostile")


def fixtures_dir() -> Path:
    return Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_items(benchmark: str, annotations: Path, models: tuple[str, ...], id_key: str) -> list[tuple]:
    """(response, answer, answer_type, choices, precision) for every model x problem of a fixture folder."""
    records = {r["id"]: r for r in benchmarks.load_local(benchmark, annotations)}
    items = []
    for model in models:
        for line in (annotations.parent / f"{model}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            r = records[str(row[id_key])]
            items.append((row["response"], r["answer"], r["answer_type"], r["choices"], r["precision"]))
    return items


def mathvista_items(folder: Path) -> list[tuple]:
    """Every MathVista fixture model's responses; official = MathVista's."""
    return fixture_items("mathvista", folder / "testmini.json", MATHVISTA_MODELS, "pid")


def mathvision_items(folder: Path) -> list[tuple]:
    return fixture_items("mathvision_test", folder / "test.jsonl", MATHVISION_MODELS, "id")


def chain_items(count: int = 1000, seed: int = 0) -> list[tuple]:
    """Chains of about 2,000 tokens (~9,000 characters): steps of arithmetic in prose and LaTeX, then a conclusion in
    one of the usual forms; golds right about half the time; free-form, LaTeX and multiple-choice problems."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        steps = []
        while sum(map(len, steps)) < 9000:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            steps.append(rng.choice([
                f"Step {len(steps) + 1}: the side is {a} cm and the height {b} cm, so the area is {a} \\times {b} = "
                f"{a * b}. ",
                f"Next, \\frac{{{a}}}{{{b}}} of the total is taken, and $\\sqrt{{{a * a}}} = {a}$ gives the radius. ",
                f"We check the angle: {a}^\\circ + {b}^\\circ = {a + b}^\\circ, which is not the answer yet. ",
                f"Since there are {a} marbles and {b} of them are red, the ratio is {a}:{b}; we keep going.\n",
            ]))
        value = rng.randint(1, 500)
        kind = i % 3
        if kind == 0:
            answer, answer_type, choices = str(value if rng.random() < 0.5 else value + 1), "integer", []
            ending = rng.choice([f"Therefore, the answer is {value}.", f"So the final answer is \\boxed{{{value}}}."])
        elif kind == 1:
            answer, answer_type, choices = rng.choice(["\\frac{1}{2}", "2\\sqrt{3}", "6\\pi"]), "latex", []
            said = rng.choice(["0.5", "\\sqrt{12}", "3\\pi", "\\frac{2}{4}"])
            ending = f"Thus the answer is $\\boxed{{{said}}}$."
        else:
            choices = [str(value), str(value + 3), str(value + 7), str(value + 9)]
            answer, answer_type = rng.choice(choices), "multiple_choice"
            ending = f"Comparing with the options, the correct option is ({rng.choice('ABCD')})."
        items.append(("".join(steps) + ending, answer, answer_type, choices, -1))
    return items


def hostile_items(count: int = 1000) -> list[tuple]:
    """What an attacker (or a degenerate model) writes: power towers, huge factorials and exponents, 20,000-character
    spans of prose, sums and nesting, for a free-form LaTeX gold (strict then tries math-verify)."""
    forms = [lambda i: f"The answer is 9^{{9^{{9^{{9^{i % 9 + 1}}}}}}}",
             lambda i: "\\boxed{" + "9**" * (i % 5 + 3) + "9}",
             lambda i: f"\\boxed{{{i + 10}0000!}}",
             lambda i: f"So the answer is 2^{{{10 ** 5 + i}}}",
             lambda i: "x" * 19990 + f" so the answer is {i}",
             lambda i: "The answer is " + "+".join(["1"] * 3000),
             lambda i: "\\boxed{\\frac{" + "\\sqrt{" * 200 + "2" + "}" * 200 + "}{3}}",
             lambda i: "(" * 5000 + "1" + ")" * 5000,
             lambda i: "Yes " * 5000,
             lambda i: "\\boxed{" + "{" * 3000 + "}" * 3000 + "}"]
    return [(forms[i % len(forms)](i), "\\frac{1}{2}", "latex", [], -1) for i in range(count)]


def _children_cpu() -> float:
    """CPU seconds of this process's live child processes (the sympy worker), from /proc (Linux)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measure(fn, items) -> tuple[float, float, list[bool]]:
    """(responses/s by the wall clock, responses/s per core of CPU, verdicts)."""
    cpu, worker, wall = time.process_time(), _children_cpu(), time.perf_counter()
    verdicts = [fn(*item) for item in items]
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu + max(0.0, _children_cpu() - worker)
    return len(items) / wall, len(items) / cpu, verdicts


def math_verify_baseline(response, answer, *_):
    from math_verify import parse, verify

    return verify(parse("$" + answer + "$"), parse(response))


def official(spec: str):
    protocol = benchmarks.get_benchmark(spec).protocol("official")
    return lambda *item: matching.score(*item, protocol=protocol).correct


def strict(*item):
    return matching.score(*item, protocol="strict").correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-items", type=int, default=300, help="responses the baseline scores per set")
    parser.add_argument("--profile", choices=SETS, help="print cProfile's top functions for this set")
    args = parser.parse_args()
    root = fixtures_dir()
    if not (root / "mathvista" / "testmini.json").is_file() or not (root / "mathvision" / "test.jsonl").is_file():
        sys.exit(f"fixtures not found under {root}; set OVLT_FIXTURES")
    sets = {"mathvista": (mathvista_items(root / "mathvista"), "mathvista"),
            "mathvision": (mathvision_items(root / "mathvision"), "mathvision_test"),
            "chains": (chain_items(), "mathvision_test"),
            "hostile": (hostile_items(), "mathvision_test")}
    matching.SYMPY_WORKER.equal("1", "1")  # start the scorer's sympy worker outside the timing
    math_verify_baseline("1", "1")  # import outside the timing
    print(f"{'set':<11} {'n':>5} {'chars':>6}  {'protocol':<11} {'wall/s':>8} {'per core/s':>10} {'x baseline':>10}")
    for name, (items, spec) in sets.items():
        if name == "hostile":
            continue
        chars = sum(len(item[0]) for item in items) // len(items)
        sample = items[: args.baseline_items]
        base_wall, base_cpu, _ = measure(math_verify_baseline, sample)
        for label, fn in (("official", official(spec)), ("strict", strict)):
            wall, cpu, _ = measure(fn, items)
            print(f"{name:<11} {len(items):>5} {chars:>6}  {label:<11} {wall:8.0f} {cpu:10.0f} {cpu / base_cpu:9.0f}x")
        print(f"{name:<11} {len(sample):>5} {chars:>6}  {'math-verify':<11} {base_wall:8.0f} {base_cpu:10.0f} {'1x':>10}")
    items = sets["hostile"][0]
    print(f"hostile: {len(items)} responses (power towers, 20,000-character spans, nesting), seconds for all:")
    for protocol in matching.PROTOCOLS:
        timeouts, refused = matching.SYMPY_WORKER.timeouts, matching.SYMPY_WORKER.refused
        start, worst = time.perf_counter(), 0.0
        for item in items:
            one = time.perf_counter()
            matching.score(*item, protocol=protocol)
            worst = max(worst, time.perf_counter() - one)
        print(f"  {protocol:<11} {time.perf_counter() - start:6.1f} s (worst response {worst:.2f} s), sympy refused "
              f"{matching.SYMPY_WORKER.refused - refused}, timed out {matching.SYMPY_WORKER.timeouts - timeouts}")
    if args.profile:
        items, spec = sets[args.profile]
        for label, fn in (("official", official(spec)), ("strict", strict)):
            profile = cProfile.Profile()
            profile.runcall(lambda f=fn: [f(*item) for item in items])
            print(f"\n--- profile: {args.profile}, {label} ---")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
