"""EMMA's rule-based scoring (ovlt.scoring.emma): conformance with the official per-item verdicts, and the rules.

The official verdicts are in hychaochao/EMMA (commit 838b6de9a180a8e1093a4c62a22d6b6d81315dac), files
`results/close-source/gemini-2.0-flash-thinking-exp-1219_Math_CoT.json` and `..._Physics_CoT.json`: Gemini 2.0
Flash Thinking's responses on EMMA-mini (100 items each) with evaluate.py's rule-based `extraction` and `true_false`.
That repository states no licence, so its files are not copied into this project: set OVLT_EMMA_RESULTS to a clone
of it, or to a folder holding those two files, to run the conformance test (it is skipped otherwise).

Measured: verdicts 100/100 (Math) and 100/100 (Physics), extractions 100/100 and 100/100; no disagreement remains
(the Chemistry and Coding files of the same model also agree 100/100 on both).
"""

import json
import os
import time
from pathlib import Path

import pytest

from ovlt.scoring.emma import EmmaVerdict, boxed_contents, extract_answer, is_equal, score_emma, sympy_value
from ovlt.scoring.matching import SYMPY_WORKER

RESULT_FILES = {subject: f"gemini-2.0-flash-thinking-exp-1219_{subject}_CoT.json" for subject in ("Math", "Physics")}
AGREEMENT_FLOOR = 0.99


def _official_results(subject: str) -> dict:
    root = os.environ.get("OVLT_EMMA_RESULTS")
    if not root:
        pytest.skip("OVLT_EMMA_RESULTS is not set: point it at a clone of hychaochao/EMMA (no licence, so its results "
                    "are not shipped here) or at a folder holding " + ", ".join(RESULT_FILES.values()))
    name = RESULT_FILES[subject]
    for path in (Path(root) / name, Path(root) / "results" / "close-source" / name):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    pytest.skip(f"{name} not found in OVLT_EMMA_RESULTS={root} (nor in its results/close-source/)")


@pytest.mark.parametrize("subject", list(RESULT_FILES))
def test_port_reproduces_official_verdicts_and_extractions(subject):
    items = _official_results(subject)
    assert len(items) == 100
    SYMPY_WORKER.value(sympy_value, "1/2")  # start the worker outside the timing
    start = time.perf_counter()
    verdicts = {pid: score_emma(item.get("response"), item) for pid, item in items.items()}
    elapsed = time.perf_counter() - start
    verdicts_agree = sum(verdicts[pid].correct == item["true_false"] for pid, item in items.items())
    extractions_agree = sum(verdicts[pid].extracted == item["extraction"] for pid, item in items.items())
    print(f"EMMA {subject}: verdict = true_false on {verdicts_agree}/{len(items)}, extraction = extraction on "
          f"{extractions_agree}/{len(items)}; {len(items) / elapsed:,.0f} items/s ({elapsed:.3f} s, worker warm)")
    assert verdicts_agree / len(items) >= AGREEMENT_FLOOR
    assert extractions_agree / len(items) >= AGREEMENT_FLOOR


# ---------------------------------------------------------------------------------------------------------------
# the rules, one by one


def test_direct_letters_and_numbers():
    assert extract_answer("  b ") == "B"
    assert extract_answer("C: because the ray reflects") == "C"
    assert extract_answer("c: lower case is not a direct letter") == "c: lower case is not a direct letter"
    assert extract_answer(" 12.5 ") == "12.5"
    assert extract_answer("1e3") == "1e3"  # float() reads it, so it is kept as written


def test_last_closed_box_wins_and_text_inside_it():
    assert extract_answer("first \\boxed{3}, then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("The answer is $\\boxed{\\text{A}}$") == "A"
    assert extract_answer("so \\boxed{5 \\text{ cm}}") == "cm"  # the script's quirk: the last \text{} only
    assert extract_answer("so \\boxed{7} and then \\boxed{8") == "7"  # an unclosed box is skipped
    assert boxed_contents("\\boxed{a{b}c} x \\boxed{d}") == ["a{b}c", "d"]


def test_answer_phrases_lowercase_and_cut_at_the_first_dot():
    assert extract_answer("Reasoning...\nThe correct answer is\n D. Because") == "d"
    assert extract_answer("So the answer is 3.5 metres") == "3"
    # "final answer is" is tried before "answer is", whichever comes later in the text
    assert extract_answer("The final answer is B. Note: the answer is not C") == "b"
    assert extract_answer("No phrase at all here") == "No phrase at all here"


def test_equality_of_strings_and_values():
    assert is_equal("b", "B")
    assert is_equal(" 7 ", "7")
    assert is_equal("0.5", "\\frac{1}{2}")
    assert is_equal("1.004", "1.0")  # two decimals: 1.0 == 1.0
    assert not is_equal("1.006", "1.0")
    assert not is_equal("70", "70 cm")  # latex2sympy reads "70 cm" as 70*c*m: no value
    assert not is_equal("five", "5")


def test_score_uses_answer_or_gt_content():
    multiple_choice = {"answer": "D", "gt_content": "$50(5-\\sqrt{5})$", "type": "Multiple Choice"}
    assert score_emma("Final Answer: The final answer is $\\boxed{D}$", multiple_choice) == EmmaVerdict("D", True)
    assert score_emma("it is \\boxed{50(5-\\sqrt{5})}", multiple_choice).correct
    assert score_emma("it is \\boxed{C}", multiple_choice) == EmmaVerdict("C", False)
    assert score_emma("", multiple_choice) == EmmaVerdict(None, False)
    assert score_emma(None, {"answer": "3", "gt_content": "3"}) == EmmaVerdict(None, False)
