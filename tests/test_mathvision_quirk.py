"""MATH-V's latex2sympy2 reads a leading expression and ignores the rest; the `mathvision` protocol does too.

MATH-V's start rule (`math: relation | relation_list;` in latex2sympy2's PS.g4) has no EOF, so the parse stops,
without an error, at a token that cannot continue the expression (`ovlt.scoring.mathvision.leading_expression`).
`mathvision` (MATH-V's `official`) reproduces that; `mathvision_strict` values whole strings only. The expected
values below are what latex2sympy2 1.9.1 (MATH-V's import) returns for the same strings, valued as
`round(eval(str(...)), 2)` would be (measured in a scratch environment; latex2sympy2 is no dependency of ovlt).
"""

import json
from pathlib import Path

import pytest
from helpers import fixtures_dir

from ovlt.scoring import benchmarks, matching, mathvision
from ovlt.scoring.matching import match, score

EXTRA = Path(__file__).resolve().parent / "fixtures" / "mathvision_extra"
FIXTURES = fixtures_dir()
ANNOTATIONS = FIXTURES / "mathvision" / "test.jsonl" if FIXTURES else None
FRACTIONS = ["$\\frac{7}{16}$", "$\\frac{3}{16}$", "$\\frac{7}{32}$", "$\\frac{9}{32}$", "$\\frac{1}{5}$"]
# InternLM-XComposer2-VL's answer to MATH-V test 281 (gold C): a box, then the value again. MATH-V's extraction takes
# `oxed{` to the LAST "}" and keeps the run-together string below; its verdict is correct.
RUN_TOGETHER = "$\\boxed{\\frac{7}{32}}$.The answer is: \\frac{7}{32}"


def test_run_together_answer_is_right_officially_and_wrong_strictly():
    official = score(RUN_TOGETHER, FRACTIONS[2], "multiple_choice", FRACTIONS, protocol="mathvision")
    strict = score(RUN_TOGETHER, FRACTIONS[2], "multiple_choice", FRACTIONS, protocol="mathvision_strict")
    assert official.extracted == strict.extracted == "\\frac{7}{32}}.theansweris:\\frac{7}{32"  # one extraction
    assert official.correct is True and strict.correct is False
    # the value read is the leading one: a wrong option stays wrong
    assert score(RUN_TOGETHER, FRACTIONS[0], "multiple_choice", FRACTIONS, protocol="mathvision").correct is False
    assert match("5.so,theansweris5", "5", "integer", protocol="mathvision") is True
    assert match("5.so,theansweris5", "5", "integer", protocol="mathvision_strict") is False


def test_official_resolves_to_the_quirky_protocol_and_strict_is_registered():
    assert benchmarks.get_benchmark("mathvision_test").protocol("official") == "mathvision"
    assert matching.resolve_protocol("mathvision_strict") == "mathvision_strict"


@pytest.mark.parametrize("text, prefix, value", [
    ("\\frac{7}{32}}.theansweris:\\frac{7}{32", "\\frac{7}{32}", 0.22),  # a "}" that closes nothing
    ("5)+3", "5", 5), ("5]x", "5", 5), ("5\\}x", "5", 5), ("5\\rfloor x", "5", 5), ("5\\right)x", "5", 5),
    ("{5}}x", "{5}", 5), ("\\left(5\\right)}x", "\\left(5\\right)", 5), ("2\\pi}.x", "2\\pi", 6.28),
    ("-2.b", "-2", -2), ("5..6", "5", 5), ("5. 3", "5", 5), ("5.$3", "5", 5),  # a period that is no decimal point
    ("5.5.x", "5.5", 5.5), (".5.x", ".5", 0.5), ("1,234.x", "1,234", 1234),  # ... and ones that are
    ("5&6", "5", 5), ("5\\\\6", "5", 5), ("5\\to x", "5", 5), ("5\\end{pmatrix}x", "5", 5),
    ("5\\totheansweris", "5", 5), ("5\\rightx", "5", 5),  # the lexer matches `\to`, `\right`: letters may follow
    ("\\left\\lfloor 5.5\\right\\rfloor}x", "\\left\\lfloor 5.5\\right\\rfloor", 5),
    ("5,6}x", "5,6", None),  # a list: round() raises on it
    ("}5", "", None), (".x", "", None),  # nothing before the stop: the parse raises
])
def test_leading_expression_is_where_latex2sympy2_stops(text, prefix, value):
    assert mathvision.leading_expression(text) == prefix
    got = matching.mathvision_leading_value(text)
    assert (got is None) if value is None else round(got, 2) == value


@pytest.mark.parametrize("text", [
    "\\frac{1}{2}.5",  # ".5" is a number: an implicit product, read to the end
    "{5.}x", "\\sqrt{2.}}x", "(5]x", "{5)x",  # inside a bracket the parse raises, it does not stop
    "\\lim_{x\\to0}x", "\\begin{pmatrix}1&2\\end{pmatrix}",  # arrows and "&" inside their own constructs
    "\\left|-5\\right|", "5", "\\left(5)", "5\\leftarrow",  # `\left(` wants `\right)`; "\\leftarrow" is `\left`, letters
])
def test_no_early_stop_leaves_the_whole_string(text):
    assert mathvision.leading_expression(text) is None
    assert matching.mathvision_leading_value(text) == matching.mathvision_value(text)


def test_gold_text_is_read_the_same_way():
    # is_equal applies latex2sympy to both sides: a gold option with trailing text has its leading value too
    assert match("0.5", "\\frac{1}{2} .", "latex", protocol="mathvision") is True
    assert match("0.5", "\\frac{1}{2} .", "latex", protocol="mathvision_strict") is False


@pytest.mark.skipif(ANNOTATIONS is None or not ANNOTATIONS.is_file(),
                    reason="MATH-V test annotations (shared/fixtures/mathvision/test.jsonl) not found: set OVLT_FIXTURES "
                           "to a shared/fixtures folder that has them")
def test_mathvision_reproduces_internlm_official_verdicts():
    """InternLM-XComposer2-VL's CoT responses (MATH-V's outputs/, MIT): `mathvision` agrees with `correct` on
    3040/3040 when measured, `mathvision_strict` on 3018/3040 (the 22 run-together answers)."""
    records = {r["id"]: r for r in benchmarks.load_local("mathvision_test", ANNOTATIONS)}
    rows = [json.loads(line) for line in
            (EXTRA / "internlm_xcomposer2_vl_cot.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(records) == 3040
    differs = {protocol: [] for protocol in ("mathvision", "mathvision_strict")}
    for row in rows:
        r = records[row["id"]]
        for protocol, ids in differs.items():
            if score(row["response"], r["answer"], r["answer_type"], r["choices"], protocol=protocol).correct \
                    != row["correct"]:
                ids.append(row["id"])
    agree = len(rows) - len(differs["mathvision"])
    print(f"InternLM-XComposer2-VL CoT: mathvision {agree}/{len(rows)} = {agree / len(rows):.4f}, "
          f"{len(differs['mathvision'])} disagreements {differs['mathvision']}; mathvision_strict "
          f"{len(rows) - len(differs['mathvision_strict'])}/{len(rows)}")
    assert agree / len(rows) >= 0.995
    # where the two readings part, the official verdict was "correct": the leading value matched an option
    official = {row["id"]: row["correct"] for row in rows}
    parted = set(differs["mathvision"]) ^ set(differs["mathvision_strict"])
    assert parted and all(official[i] for i in parted)
