"""EMMA's rule-based scoring (the answer extraction and equality of its evaluation script), ported into our own code.

Source: hychaochao/EMMA at commit 838b6de9a180a8e1093a4c62a22d6b6d81315dac: `evaluation/evaluate.py`
(`fast_extract_answer`, and `gen_true_false` without --gpt_eval, which is how it calls them) and `evaluation/utils.py`
(`is_number`, `extract_full_boxed_content`, `is_equal`). The GPT judge (--gpt_eval) is out of scope.

How an item is judged (gen_true_false): an item with no response (missing or empty) has no extraction and is wrong.
Otherwise the extraction is equal to the item's `answer` OR to its `gt_content`. The script makes no distinction
between question types: for a multiple-choice item `answer` is the option letter and `gt_content` the option's
text; for an open-ended one both hold the value.

Extraction (fast_extract_answer), on the stripped response, the first rule that fires:
  1. the response is one of the letters A-H in either case ("b" -> "B"), or starts with "X:" (upper-case X) -> X;
  2. the response is a number as Python's float() reads it ("12", "-3.5", "1e3", "nan") -> the response;
  3. "boxed{" occurs and at least one "\\boxed{" closes (braces balanced): the content of the LAST one; if that content
     holds "\\text{...}", the content of its last \\text{...} instead (up to the first "}", on one line:
     "5 \\text{ cm}" -> "cm", a quirk kept);
  4. "final answer is", "correct answer is", "answer should be", "answer is" (tried in that order, in the lower-cased
     response): what follows the last occurrence of the first one present, lower-cased, up to the first newline and
     then the first "." ("the answer is 3.5" -> "3"; kept);
  5. the stripped response itself.

Equality (is_equal), both sides lower-cased: the stripped strings are equal; or latex2sympy parses both and their
values, float(expr.evalf()), agree at two decimals (round(x, 2)); any parse or evaluation error is "not equal". (The
script's further test, sympy.simplify(a - b) == 0, is reached only when both values exist and round differently, so
it could only rescue two symbolically equal expressions whose float values straddle a rounding boundary through
floating-point error; we leave it out.)

Differences from the script:
  - latex2sympy is latex2sympy2_extended (the maintained fork the project depends on) instead of latex2sympy2; it
    runs in the scorer's sympy worker under its time limit (`matching.SYMPY_WORKER`), so an expression sympy cannot
    finish is "not equal" instead of a hung run, as is text longer than `matching.MAX_SYMPY_CHARS` (the script would
    parse a whole response that rules 1-4 did not cut down; prose has no numeric value either way).
  - a side that is a plain decimal literal ("12", "-0.5") is valued by float() without the worker (latex2sympy reads
    such a literal as that number), a lone letter other than e has no value without asking (latex2sympy reads it as
    a free symbol), and values are cached by text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ovlt.scoring.matching import SYMPY_WORKER

# fast_extract_answer's direct multiple-choice letters.
_DIRECT_LETTERS = "ABCDEFGH"
# The answer phrases of rule 4, in the order the script tries them.
_ANSWER_FLAGS = ("final answer is", "correct answer is", "answer should be", "answer is")
_BOXED = "\\boxed{"
_TEXT_COMMAND = re.compile(r"\\text{(.*?)}")
# What latex2sympy reads as exactly the number float() reads: digits, an optional sign and decimal part.
_DECIMAL_LITERAL = re.compile(r"-?\d+(?:\.\d+)?")
# A lone letter other than e (which latex2sympy reads as Euler's number) is a free symbol: it has no value. Most
# comparisons are an option letter against an option text, so this spares the worker most calls.
_LONE_SYMBOL = re.compile(r"[a-df-z]")


def is_number(text: str) -> bool:
    """utils.is_number: whatever float() accepts."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def boxed_contents(text: str) -> list[str]:
    """utils.extract_full_boxed_content: the content of every "\\boxed{" whose braces close, in order; an unclosed
    one is skipped (its scan runs to the end of the text)."""
    contents = []
    at = 0
    while at < len(text):
        if text.startswith(_BOXED, at):
            start = at = at + len(_BOXED)
            depth = 0
            while at < len(text):
                if text[at] == "{":
                    depth += 1
                elif text[at] == "}":
                    if depth == 0:
                        contents.append(text[start:at])
                        break
                    depth -= 1
                at += 1
        at += 1
    return contents


def extract_answer(response: str) -> str:
    """fast_extract_answer: the answer EMMA's script reads from a response (see the module docstring)."""
    response = response.strip()
    for letter in _DIRECT_LETTERS:
        if response.upper() == letter or response.startswith(f"{letter}:"):
            return letter
    if is_number(response):
        return response
    if "boxed{" in response:
        contents = boxed_contents(response)
        if contents:
            texts = _TEXT_COMMAND.findall(contents[-1])
            return texts[-1].strip() if texts else contents[-1].strip()
    lowered = response.lower()
    for flag in _ANSWER_FLAGS:
        if flag in lowered:
            return lowered.split(flag)[-1].strip().split("\n")[0].split(".")[0]
    return response


def sympy_value(text: str) -> float | None:
    """In the sympy worker: float(latex2sympy(text).evalf()), None where the script's try block would raise."""
    from latex2sympy2_extended import latex2sympy

    try:
        return float(latex2sympy(text).evalf())
    except Exception:  # the script's bare except: any parse or evaluation failure means "no value"
        return None


@functools.lru_cache(maxsize=4096)
def _value(text: str) -> float | None:
    if _DECIMAL_LITERAL.fullmatch(text):
        return float(text)
    if _LONE_SYMBOL.fullmatch(text):
        return None
    return SYMPY_WORKER.value(sympy_value, text)


def is_equal(model_answer: str, gold: str) -> bool:
    """utils.is_equal: equal as lower-cased stripped strings, or as latex2sympy values rounded to two decimals."""
    model_answer, gold = model_answer.lower(), gold.lower()
    if model_answer.strip() == gold.strip():
        return True
    model_value = _value(model_answer)
    if model_value is None:
        return False
    gold_value = _value(gold)
    if gold_value is None:
        return False
    return round(model_value, 2) == round(gold_value, 2)


@dataclass(frozen=True)
class EmmaVerdict:
    extracted: str | None  # None: the item had no response
    correct: bool


def score_emma(response: str | None, record: Mapping) -> EmmaVerdict:
    """gen_true_false on one item: `record` holds the gold `answer` and `gt_content` (an EMMA item or result row)."""
    if not response:
        return EmmaVerdict(None, False)
    extracted = extract_answer(response)
    golds = [record["answer"], record.get("gt_content")]
    return EmmaVerdict(extracted, any(gold is not None and is_equal(extracted, str(gold)) for gold in golds))
