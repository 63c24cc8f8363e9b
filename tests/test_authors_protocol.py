"""The `authors` protocol: the OpenVLThinker authors' harness (evaluation/eval_qwen.py), on mathruler.

Every verdict is checked against mathruler itself: the test computes the authors' rule with mathruler's own
`extract_boxed_content` and `grade_answer` on the same pairs, so it tests our wiring (gold mapping, argument order,
the time-limited worker), not a second reading of the rules. Prompts per benchmark are in
tests/test_benchmarks_harness.py; the gold mapping over the real benchmark files in tests/test_conformance.py.
"""

import json
import time

import pytest
from helpers import mathruler_verdict
from mathruler.grader import extract_boxed_content

from ovlt.score_cli import score_main
from ovlt.scoring import matching

YES_NO = ["Yes", "No"]
THREE = ["3", "5", "7"]
DUPLICATED = ["15", "100", "50", "50"]  # as MathVista testmini pid 740: the first equal option's letter is gold


# (response, gold as stored: option TEXT for multiple choice, answer_type, choices, the gold eval_qwen compares)
CASES = [
    ("<think>6 + 6</think> The total is \\boxed{12}.", "12", "integer", [], "12"),
    ("<think>6 + 7</think> \\boxed{13}", "12", "integer", [], "12"),
    ("\\boxed{12 cm}", "12", "integer", [], "12"),  # mathruler drops the unit
    ("\\boxed{12.0}", "12", "integer", [], "12"),
    ("\\boxed{\\frac{1}{2}}", "0.5", "float", [], "0.5"),  # fraction against decimal
    ("\\boxed{\\dfrac{3}{\\sqrt{2}}}", "\\frac{3\\sqrt{2}}{2}", "latex", [], "\\frac{3\\sqrt{2}}{2}"),  # sympy
    ("\\boxed{2/4}", "1/2", "latex", [], "1/2"),  # unreduced fractions differ
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", "latex", [], "\\sqrt{12}"),
    ("\\boxed{[1, 2, 3]}", "[1,2,3]", "list", [], "[1,2,3]"),
    ("\\boxed{1} first, then \\boxed{7}", "7", "integer", [], "7"),  # the last box
    ("\\boxed{7", "7", "integer", [], "7"),  # unclosed: no box, but mathruler reads the whole response as 7
    ("The answer is 12.", "12", "integer", [], "12"),  # no box: only the whole response is compared
    ("12", "12", "integer", [], "12"),  # a bare reply counts
    ("Answer: 12", "12", "integer", [], "12"),  # "Answer:" is not split off (the response is lower-cased first)
    ("", "12", "integer", [], "12"),
    ("<think>B is 5</think> \\boxed{B}", "5", "multiple_choice", THREE, "B"),  # a letter answers an option
    ("<think>b</think> \\boxed{b}", "5", "multiple_choice", THREE, "B"),  # case ignored
    ("<think>B is 5</think> \\boxed{5}", "5", "multiple_choice", THREE, "B"),  # the option's text is not its letter
    ("<think>B is 5</think> \\boxed{(B)}", "5", "multiple_choice", THREE, "B"),
    ("\\boxed{\\text{B}}", "5", "multiple_choice", THREE, "B"),
    ("\\boxed{No}", "No", "multiple_choice", YES_NO, "B"),
    ("\\boxed{B}", "No", "multiple_choice", YES_NO, "B"),
    ("\\boxed{C}", "50", "multiple_choice", DUPLICATED, "C"),
    ("\\boxed{D}", "50", "multiple_choice", DUPLICATED, "C"),
    ("\\boxed{\\infty}", "\\infty", "latex", [], "\\infty"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", "latex", [], "(x+1)^2"),
    ("\\boxed{答案}", "12", "integer", [], "12"),
    ("\\boxed{" + "9" * 400 + "}", "3", "integer", [], "3"),
]


@pytest.mark.parametrize("response, answer, answer_type, choices, gold", CASES)
def test_verdicts_are_mathrulers(response, answer, answer_type, choices, gold):
    assert matching.authors_gold(answer, answer_type, choices) == gold
    verdict = matching.score(response, answer, answer_type, choices, protocol="authors")
    assert verdict.correct is mathruler_verdict(response, gold)
    if "\\boxed{" in response and verdict.rule != "response":
        assert verdict.extracted == extract_boxed_content(response)


def test_the_known_verdicts():
    """The cases above, by hand: what the authors' harness counts right."""
    right = [matching.score(r, a, t, c, protocol="authors").correct for r, a, t, c, _ in CASES]
    assert [i for i, ok in enumerate(right) if ok] == [0, 2, 3, 4, 5, 7, 8, 9, 10, 12, 15, 16, 18, 19, 21, 22, 24, 25]


def test_rules_name_where_the_verdict_came_from():
    assert matching.score("so \\boxed{12}", "12", "integer", protocol="authors") == matching.Verdict("12", "boxed", True)
    assert matching.score("12", "12", "integer", protocol="authors") == matching.Verdict("12", "response", True)
    assert matching.score("it is 12", "12", "integer", protocol="authors") == matching.Verdict("", "none", False)
    assert matching.match("b", "5", "multiple_choice", THREE, protocol="authors")
    assert not matching.match("5", "5", "multiple_choice", THREE, protocol="authors")


def test_hostile_input_times_out_wrong(monkeypatch, caplog):
    """sympy would compute 9**9**9**9 for ever; mathruler's own guards ("^{") do not stop this spelling."""
    monkeypatch.setattr(matching, "MATH_VERIFY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(matching, "beyond_sympy", lambda text: False)  # the time limit itself, behind the quick reject
    matching.SYMPY_WORKER.grade_answer("1", "1")  # worker started outside the measured time
    before = matching.SYMPY_WORKER.timeouts
    start = time.perf_counter()
    verdict = matching.score("\\boxed{9**9**9**9}", "\\frac{1}{3}", "latex", protocol="authors")
    assert verdict.correct is False and matching.SYMPY_WORKER.timeouts > before
    assert time.perf_counter() - start < 2 * 1.0 + 4  # two checks (box, whole response), each at most the limit
    assert "timed out" in caplog.text
    assert matching.score("\\boxed{1/3}", "\\frac{1}{3}", "latex", protocol="authors").correct  # a fresh worker


# --- `ovlt score --protocol authors` ------------------------------------------------------------------------------

MATHVISTA = {
    "1": {"pid": "1", "question": "Is it big?", "choices": ["Yes", "No"], "unit": None, "precision": None,
          "answer": "No", "question_type": "multi_choice", "answer_type": "text", "image": "1.jpg", "metadata": {}},
    "2": {"pid": "2", "question": "How many?", "choices": None, "unit": None, "precision": None, "answer": "4",
          "question_type": "free_form", "answer_type": "integer", "image": "2.jpg", "metadata": {}},
    "3": {"pid": "3", "question": "Length?", "choices": None, "unit": "cm", "precision": 1, "answer": "0.5",
          "question_type": "free_form", "answer_type": "float", "image": "3.jpg", "metadata": {}},
    "4": {"pid": "4", "question": "Which?", "choices": ["3", "5", "7"], "unit": None, "precision": None,
          "answer": "7", "question_type": "multi_choice", "answer_type": "text", "image": "4.jpg", "metadata": {}},
    "5": {"pid": "5", "question": "How many?", "choices": None, "unit": None, "precision": None, "answer": "9",
          "question_type": "free_form", "answer_type": "integer", "image": "5.jpg", "metadata": {}},
}
RESPONSES = {"1": "<think>small</think> \\boxed{B}", "2": "<think>count</think> There are 4 cubes.",
             "3": "<think>half</think> \\boxed{\\frac{1}{2}}", "4": "<think>seven</think> \\boxed{7}", "5": "9"}


def test_cli_scores_by_the_authors_protocol(tmp_path, capsys):
    annotations = tmp_path / "testmini.json"
    annotations.write_text(json.dumps(MATHVISTA))
    responses = tmp_path / "r.jsonl"
    responses.write_text("".join(json.dumps({"id": i, "response": r}) + "\n" for i, r in RESPONSES.items()))
    out = tmp_path / "verdicts.jsonl"
    assert score_main(["--benchmark", "mathvista", "--annotations", str(annotations), "--responses", str(responses),
                       "--protocol", "authors", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[0].endswith("protocol: authors") and stdout[-1] == "accuracy: 3/5 = 60.00%"
    verdicts = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    for pid, row in MATHVISTA.items():
        gold = "ABC"[row["choices"].index(row["answer"])] if row["choices"] else row["answer"]
        assert verdicts[pid]["correct"] is mathruler_verdict(RESPONSES[pid], gold), pid
    assert [verdicts[p]["rule"] for p in "12345"] == ["boxed", "none", "boxed", "boxed", "response"]
