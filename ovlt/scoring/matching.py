"""The answer scorer: one source of truth for checking answers.

Every stage that decides whether a model got a problem right (evaluation, GRPO rewards, filtering self-generated
chains) goes through `score`: `ovlt.scoring.extraction.extract` finds the answer span in the response, then
`match(extracted, answer, answer_type, ...)` decides, under a named protocol, whether it equals the gold answer.
Protocols:
  strict      ours; tolerant of formatting (case, LaTeX wrappers, units, degree signs, thousands separators),
              symbolic equivalence through math-verify, and it never guesses: an extraction that is neither an
              option letter nor an option text is wrong.
  mathvista   MathVista's calculate_score.py: letter -> option text, anything else -> the option nearest in edit
              distance; integers compared as str(int(float(x))), floats as str(round(float(x), precision)),
              lists and text as exact strings.
  mathvision  MATH-V's evaluate.py and utils.py, ported rule for rule (`ovlt.scoring.mathvision`): its own
              extraction from the raw response, then is_equal against the gold letter and the gold option text
              (lower-cased strings, tuples element by element, values at two decimals). Where MATH-V evals
              latex2sympy's output, we compute the value in pure Python, or with latex2sympy in the worker; as
              MATH-V's latex2sympy2 does, it values only the text before a token that continues nothing (a
              bracket closing nothing, a sentence period: "\\frac{7}{32}}.theansweris:..." is 7/32).
  mathvision_strict  `mathvision` valuing whole strings only: such run-together text has no value (wrong).
  authors     the OpenVLThinker authors' harness (evaluation/eval_qwen.py): the \\boxed{} content, else the whole
              response, equal to the gold ignoring case or by mathruler's grade_answer; a multiple-choice gold is
              its option's letter (`authors_gold`). It reads only its own prompt's \\boxed{} answers.
"official" is accepted as an alias of "mathvista" (the project stores answers the way MathVista does);
`ovlt.scoring.benchmarks` maps each benchmark's "official" to its own protocol.
`score_extraction(extraction, ...)` matches an answer someone else already extracted under a protocol, applying
only its normaliser (for `mathvista`, calculate_score.py's exactly).

math-verify (only when the cheap rules cannot decide), mathruler's grade_answer and latex2sympy run in one worker
process under a hard time limit (`MATH_VERIFY_TIMEOUT_S`, `SYMPY_WORKER`): a sympy computation stuck in C code cannot
be interrupted by a signal, but a process can be killed. A time-out counts as wrong and is logged. Text sympy could
not finish (a power tower, a five-digit exponent or factorial: `beyond_sympy`) or longer than any answer
(`MAX_SYMPY_CHARS`) is wrong at once, without the worker, so a hostile file costs no time-outs. Model output is
never executed or eval'd by our code (mathruler hands it to sympy's parser, which is why it runs in the worker).
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import multiprocessing
import re
import signal
import threading
from dataclasses import dataclass

from ovlt.ground.schema import ANSWER_TYPES, option_letters
from ovlt.scoring import mathvision
from ovlt.scoring.extraction import (
    MAX_SCAN_CHARS,
    Extraction,
    _normalise_text,
    _number_from_span,
    _parse_number,
    _reduce_span,
    _strip_latex,
    extract,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("strict", "mathvista", "mathvision", "mathvision_strict", "authors")
PROTOCOL_ALIASES = {"official": "mathvista"}
# The hard time limit of every sympy-backed check (math-verify, mathruler's grade_answer): a call past it is wrong.
MATH_VERIFY_TIMEOUT_S = 3.0
# An answer math-verify or latex2sympy compares is short (the longest on the fixtures: ~150 characters); a longer span
# is prose or an attack, and parsing it costs up to a second.
MAX_SYMPY_CHARS = 300


@dataclass(frozen=True)
class Verdict:
    extracted: str
    rule: str
    correct: bool


# ----------------------------------------------------------------------------------------------------------------
# the sympy-backed checkers (math-verify, mathruler) under a hard time limit, in a worker process


def _warm_up() -> None:
    import latex2sympy2_extended  # noqa: F401
    import math_verify  # noqa: F401
    import mathruler.grader  # noqa: F401


def _math_verify_equal(gold: str, pred: str, float_rounding: int) -> bool:
    from math_verify import parse, verify

    limit = math.ceil(MATH_VERIFY_TIMEOUT_S)
    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=limit)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=limit)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, float_rounding=float_rounding, timeout_seconds=limit))


def _mathruler_grade(given: str, ground_truth: str) -> bool:
    from mathruler.grader import grade_answer

    return bool(grade_answer(given, ground_truth))


# Text no answer needs and sympy cannot finish: a power tower ("9^{9^{9}}", "2**3**4"), an exponent or a factorial of
# five digits or more. math-verify's and mathruler's own guards let these through to sympy, which then runs until the
# time limit kills the worker (~3.5 s with the restart, an hour for a file of a thousand).
_BEYOND_SYMPY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?\s*[\d.]+\s*\)?\s*\^|\*\*\s*\(?\s*[\w.]+\s*\)?\s*(?:\*\*|\^)"
                           r"|(?:\^|\*\*)\s*[({]?\s*\d{5,}|\d{5,}\s*!")


def beyond_sympy(text: str) -> bool:
    """Whether `text` holds a computation sympy cannot finish within MATH_VERIFY_TIMEOUT_S (see _BEYOND_SYMPY)."""
    return _BEYOND_SYMPY.search(text) is not None


class _SympyWorker:
    """One worker process for the checkers that run sympy on model text, killed and replaced when a call overruns
    its time limit."""

    def __init__(self):
        self._pool = None
        self._lock = threading.Lock()
        self.timeouts = 0
        self.refused = 0

    def _start(self):
        # spawn, not fork: the caller may hold threads (torch, tokenizers) that a fork would copy half-locked.
        # The worker ignores interrupts: its owner stops it, and Jupyter interrupting the kernel's process group at
        # shutdown would otherwise print a KeyboardInterrupt traceback from an idle worker into a clean run.
        self._pool = multiprocessing.get_context("spawn").Pool(1, initializer=signal.signal,
                                                               initargs=(signal.SIGINT, signal.SIG_IGN))
        self._pool.apply(_warm_up)  # pay the imports once, outside the time limit

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def _call(self, checker, *args: str | int, failed=False):
        """checker(*args) in the worker; a time-out or an error is `failed` (a wrong answer), logged. Text sympy
        could not finish within the limit (`beyond_sympy`) is `failed` at once: each time-out also costs a restart."""
        if any(isinstance(a, str) and beyond_sympy(a) for a in args):
            self.refused += 1
            log.debug("%s refused %r: beyond sympy's time limit, counted wrong", checker.__name__,
                      [str(a)[:80] for a in args])
            return failed
        with self._lock:
            if self._pool is None:
                self._start()
            pending = self._pool.apply_async(checker, args)
            try:
                return pending.get(timeout=MATH_VERIFY_TIMEOUT_S)
            except multiprocessing.TimeoutError:
                self.timeouts += 1
                log.warning("%s timed out after %.1fs on %r: counted wrong", checker.__name__, MATH_VERIFY_TIMEOUT_S,
                            [str(a)[:80] for a in args])
                self.close()
                return failed
            except Exception as err:  # a parser bug on odd input is a wrong answer, never a crashed run
                log.warning("%s failed on %r: %s: counted wrong", checker.__name__, [str(a)[:80] for a in args], err)
                return failed

    def equal(self, gold: str, pred: str, float_rounding: int = 6) -> bool:
        """math-verify: `pred` equals `gold` symbolically (numbers rounded to `float_rounding` decimals)."""
        if len(pred) > MAX_SYMPY_CHARS or len(gold) > MAX_SYMPY_CHARS:
            return False
        return self._call(_math_verify_equal, gold, pred, float_rounding)

    def grade_answer(self, given: str, ground_truth: str) -> bool:
        """mathruler's grade_answer(given, ground_truth), argument order as mathruler's. Text longer than any answer
        (a whole chain the `authors` protocol falls back to) is not equal: sympy could spend the time limit on it."""
        if len(given) > MAX_SYMPY_CHARS or len(ground_truth) > MAX_SYMPY_CHARS:
            return False
        return self._call(_mathruler_grade, given, ground_truth)

    def value(self, evaluator, text: str):
        """evaluator(text) in the worker: a number, or None (also on a time-out or an error)."""
        return None if len(text) > MAX_SYMPY_CHARS else self._call(evaluator, text, failed=None)


SYMPY_WORKER = _SympyWorker()
atexit.register(SYMPY_WORKER.close)


# ----------------------------------------------------------------------------------------------------------------
# matching


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, bit-parallel (Myers 1999, Hyyrö 2003): one pass over the longer string with the shorter
    as a bit mask, so a 20,000-character span against an option costs milliseconds, not a 20,000 x n table."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    mask, high = (1 << len(b)) - 1, 1 << (len(b) - 1)
    positions: dict[str, int] = {}
    for i, char in enumerate(b):
        positions[char] = positions.get(char, 0) | (1 << i)
    plus, minus, distance = mask, 0, len(b)
    for char in a:
        equal = positions.get(char, 0)
        vertical = equal | minus
        horizontal = (((equal & plus) + plus) ^ plus) | equal
        h_plus = minus | ~(horizontal | plus)
        h_minus = plus & horizontal
        if h_plus & high:
            distance += 1
        elif h_minus & high:
            distance -= 1
        h_plus = (h_plus << 1) | 1
        h_minus <<= 1
        plus = (h_minus | ~(vertical | h_plus)) & mask
        minus = h_plus & vertical & mask
    return distance


def _mathvista_equal(extracted: str, answer: str, answer_type: str, choices, precision: int) -> bool:
    """MathVista's normalize_extracted_answer + safe_equal, rule for rule (calculate_score.py in lupantech/MathVista):
    only a multiple-choice extraction is trimmed; float() ignores the spaces around a number by itself."""
    extracted = str(extracted)
    if answer_type == "multiple_choice":
        extracted = extracted.strip()
        if not choices:
            return extracted == answer
        paren = re.findall(r"\(([a-zA-Z])\)", extracted)
        if paren:
            extracted = paren[0].upper()
        letters = option_letters(len(choices))
        if len(extracted) == 1 and extracted in letters:
            return choices[letters.index(extracted)] == answer
        # Neither a letter nor an option: MathVista takes the option nearest in edit distance (first on ties).
        distances = [_edit_distance(extracted, c) for c in choices]
        return choices[distances.index(min(distances))] == answer
    try:
        if answer_type == "integer":
            return str(int(float(extracted))) == answer
        if answer_type == "float":
            value = float(extracted)
            return str(round(value, precision) if precision >= 0 else value) == answer
    except (ValueError, OverflowError):
        return False
    return extracted == answer


_MATHY = re.compile(r"[\d\\√π∞]")


def _split_list(text: str) -> list[str]:
    text = _strip_latex(text).strip().strip("[](){}").strip()
    return [item.strip() for item in text.split(",")] if text else []


def _strict_scalar_equal(pred: str, gold: str, answer_type: str, precision: int) -> bool:
    pred_value, gold_value = _parse_number(pred), _parse_number(gold)
    if pred_value is not None and gold_value is not None:
        return _numbers_equal(pred_value, gold_value, answer_type, precision)
    if _normalise_text(pred) == _normalise_text(gold):
        return True
    # math-verify only where there is mathematics on both sides: prose ("an integer") cannot be equivalent.
    if answer_type == "text" or not (_MATHY.search(_strip_latex(pred)) and _MATHY.search(_strip_latex(gold))):
        return False
    # Numbers written in LaTeX (\frac{3}{4}, 2\sqrt{3}, 6\pi), also as the right side of an equation or before a
    # unit ("x = 11", "400 \text{ cm}^2"), are compared by value without sympy, as math-verify compares them; a ratio
    # is no quotient here. Anything with a variable in it is left to math-verify.
    if ":" not in pred + gold:
        gold_value = _latex_value(gold)
        pred_value = _latex_value(_value_part(pred)) if gold_value is not None else None
        if pred_value is not None:
            return _numbers_equal(pred_value, gold_value, answer_type, precision)
    return SYMPY_WORKER.equal(gold, pred, precision if precision >= 0 else 6)


_TRAILING_UNIT = re.compile(r"^(?P<value>.*?\S)(?:\s|\\[;,:! ]|~)+[A-Za-z][A-Za-z ]*(?:\^\{?[23]\}?|[²³])?\.?$")


def _value_part(text: str) -> str:
    """The part of a span that states a value: after the last "=", before a trailing unit word."""
    text = _strip_latex(text).split("=")[-1].strip()
    unit = _TRAILING_UNIT.match(text)
    return unit.group("value") if unit else text


def _latex_value(text: str) -> float | None:
    value = mathvision.plain_value(_strip_latex(text))
    if value is None or value is mathvision.UNDECIDED:
        return None
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits: left to math-verify's own handling
        return None


def _numbers_equal(pred: float, gold: float, answer_type: str, precision: int) -> bool:
    if answer_type == "integer":
        return pred == gold
    if precision >= 0:
        return round(pred, precision) == round(gold, precision)
    return math.isclose(pred, gold, rel_tol=1e-6, abs_tol=1e-9)


def _strict_equal(extracted: str, answer: str, answer_type: str, choices, precision: int) -> bool:
    if answer_type == "multiple_choice":
        letters = option_letters(len(choices))
        stripped = extracted.strip()
        if len(stripped) == 1 and stripped in letters:
            return _normalise_text(choices[letters.index(stripped)]) == _normalise_text(answer)
        return _normalise_text(extracted) == _normalise_text(answer)
    if answer_type == "list":
        pred_items, gold_items = _split_list(extracted), _split_list(answer)
        return len(pred_items) == len(gold_items) > 0 and all(
            _strict_scalar_equal(p, g, "text", precision) for p, g in zip(pred_items, gold_items, strict=True))
    return _strict_scalar_equal(extracted, answer, answer_type, precision)


@functools.lru_cache(maxsize=65_536)
def mathvision_value(text: str):
    """The number MATH-V's latex2sympy + eval makes of `text`, or None: pure Python for the common forms, else
    latex2sympy in the worker under its time limit (`ovlt.scoring.mathvision`). Cached: golds repeat."""
    value = mathvision.plain_value(text)
    if value is mathvision.UNDECIDED:
        value = SYMPY_WORKER.value(mathvision.sympy_value, text)
    return value


def mathvision_leading_value(text: str):
    """`mathvision_value` of what MATH-V's latex2sympy2 reads of `text` (`mathvision.leading_expression`)."""
    return mathvision.leading_value(text, mathvision_value)


def _mathvision_equal(extracted: str, answer: str, choices, protocol: str) -> bool:
    """MATH-V's verdict: is_equal(gold letter, answer) or is_equal(gold option text, answer); for a free-form
    problem the gold itself. Our records keep the option text; its letter is where it first appears."""
    if choices and answer in choices:
        golds = (option_letters(len(choices))[list(choices).index(answer)], answer)
    else:
        golds = (answer,)
    value = mathvision_value if protocol == "mathvision_strict" else mathvision_leading_value
    return any(mathvision.is_equal(gold, extracted, value) for gold in golds)


def authors_gold(answer: str, answer_type: str, choices=()) -> str:
    """The gold answer as the authors' harness and reward compare it: a multiple-choice gold as its option's letter
    (of the first option equal to it, as their `choices.index` finds it), any other as it is."""
    choices = list(choices or ())
    if answer_type == "multiple_choice" and answer in choices:
        return option_letters(len(choices))[choices.index(answer)]
    return answer


def _authors_equal(gold: str, candidate: str) -> bool:
    """eval_qwen.py's test of one candidate: equal ignoring case, else mathruler's grade_answer with the gold as its
    `given_answer` (their argument order; grade_answer is not symmetric)."""
    return gold.lower() == candidate.lower() or SYMPY_WORKER.grade_answer(gold, candidate)


def _authors_verdict(response: str, gold: str) -> Verdict:
    """eval_qwen.py's verdict: the \\boxed{} content (mathruler's extract_boxed_content, "None" without one, which we
    report as no extraction), then the whole response, lower-cased. (They split the lower-cased response at "Answer:", which cannot occur in it,
    so the whole response is what they compare: a bare reply such as "B" counts.) An empty response is wrong."""
    from mathruler.grader import extract_boxed_content

    text = (response or "")[-MAX_SCAN_CHARS:]
    if not text:
        return Verdict("", "none", False)
    boxed = extract_boxed_content(text)
    found = Extraction("", "none") if boxed == "None" else Extraction(boxed, "boxed")  # nothing for a judge to read
    if _authors_equal(gold, boxed):
        return Verdict(found.text, found.rule, True)
    whole = text.lower().strip()
    if _authors_equal(gold, whole):
        return Verdict(whole, "response", True)
    return Verdict(found.text, found.rule, False)


def resolve_protocol(protocol: str) -> str:
    protocol = PROTOCOL_ALIASES.get(protocol, protocol)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS + tuple(PROTOCOL_ALIASES))}")
    return protocol


def _check_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; known: {', '.join(ANSWER_TYPES)}")


def match(extracted: str, answer: str, answer_type: str, choices=(), precision: int = -1,
          protocol: str = "strict") -> bool:
    """Whether an extracted answer equals the gold `answer` (option TEXT for multiple choice) under `protocol`."""
    _check_type(answer_type)
    protocol, choices, answer = resolve_protocol(protocol), list(choices or ()), str(answer)
    precision = -1 if precision is None else int(precision)
    if protocol == "mathvista":
        return _mathvista_equal(extracted, answer, answer_type, choices, precision)
    if protocol in ("mathvision", "mathvision_strict"):
        return _mathvision_equal(extracted, answer, choices, protocol)
    if protocol == "authors":
        return _authors_equal(authors_gold(answer, answer_type, choices), str(extracted))
    return _strict_equal(extracted, answer, answer_type, choices, precision)


def score(response: str, answer: str, answer_type: str, choices=(), precision: int = -1,
          protocol: str = "strict") -> Verdict:
    """Extract the answer from `response` and match it against the gold `answer` under `protocol`."""
    _check_type(answer_type)
    protocol = resolve_protocol(protocol)
    if protocol in ("mathvision", "mathvision_strict"):  # one extraction, MATH-V's
        extracted = mathvision.extract((response or "")[-MAX_SCAN_CHARS:])
        return Verdict(extracted, "mathvision", match(extracted, answer, answer_type, choices, precision, protocol))
    if protocol == "authors":
        return _authors_verdict(response, authors_gold(str(answer), answer_type, choices))
    # MathVista's verdicts graded the last turn of a run-on response; our own protocols grade the first.
    found = extract(response, choices, "last" if protocol == "mathvista" else "first")
    extracted = found.text
    if answer_type in ("integer", "float"):
        extracted = _number_from_span(extracted)
    if found.rule == "none":  # nothing stated: wrong, never mapped to the nearest option (as "" would be)
        return Verdict(extracted, found.rule, False)
    return Verdict(extracted, found.rule, match(extracted, answer, answer_type, choices, precision, protocol))


GIVEN = "given"  # the rule of a verdict on an extraction the caller made (`score_extraction`)


def score_extraction(extraction: str, answer: str, answer_type: str, choices=(), precision: int = -1,
                     protocol: str = "strict") -> Verdict:
    """Match an answer someone already extracted (MathVista's GPT extractor, lmms-eval, a judge) under `protocol`,
    without extracting again: the protocol's normaliser only. mathvista: calculate_score.py's normalisation and
    comparison, exactly (a letter -> its option, else the nearest option; int(float()) / round(float(), precision));
    mathvision: is_equal on the given `model_answer`, as evaluate.py does when a line has one; strict: the span reduced
    to the option letter or text it names, a numeric span to its number; authors: the text as their box content."""
    _check_type(answer_type)
    protocol, text = resolve_protocol(protocol), str(extraction)
    if protocol == "strict":
        choices = list(choices or ())
        text = _reduce_span(text, choices) if choices else text.strip()
        if answer_type in ("integer", "float"):
            text = _number_from_span(text)
    return Verdict(text, GIVEN, match(text, answer, answer_type, choices, precision, protocol))
