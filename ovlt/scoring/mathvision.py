"""MATH-V's official scoring, rule for rule: the extraction of `evaluation/evaluate.py` and the matching of
`evaluation/utils.py` (`find_math_answer`, `_strip_string`, `is_equal`, `eval_tuple`) in mathllm/MATH-V (MIT
licence, commit a1f5cc3), ported into our own code.

MATH-V compares values as `round(eval(str(latex2sympy(x))), 2)`, evaluating model output with Python's `eval` in a
namespace holding `math`'s names. We never eval model output. `plain_value` computes the value of the common forms
(numbers, \\frac, \\sqrt, \\pi, +, -, *, /, ^) in pure Python; anything else goes to `sympy_value`
(latex2sympy2_extended, the maintained fork of MATH-V's latex2sympy2, in the scorer's worker process under its time
limit), which accepts what `eval` would: an expression whose names are all in `math` (`e`, `pi`, `sqrt`, `log`, ...)
and whose value is a real number. docs/scoring.md lists where the two differ on the fixtures.

Two protocols use this module (`ovlt.scoring.matching`):
  mathvision         (MATH-V's `official`) also reproduces where MATH-V's latex2sympy2 (1.9.1) stops reading early:
                     its grammar's start rule has no end-of-input token, so it values the expression before the first
                     token outside every bracket that can continue nothing (a bracket closing nothing, a "." that is
                     no decimal point, "&", "\\\\", "\\to", ...) and ignores the rest (`leading_expression` has the
                     rule and its sources). MATH-V's greedy `oxed{(.*)}` makes such strings of a box followed by more
                     text: "\\frac{7}{32}}.theansweris:\\frac{7}{32" is 7/32 there, right when 7/32 is the gold.
  mathvision_strict  values the whole string only (latex2sympy2_extended reads to the end), so such a run-together
                     string has no value and is wrong; otherwise identical. On InternLM-XComposer2-VL's MATH-V
                     responses it misses 22 official verdicts of 3,040, `mathvision` none (docs/scoring.md).
"""

from __future__ import annotations

import math
import re

# `plain_value` cannot decide: the string needs latex2sympy (`sympy_value`).
UNDECIDED = object()


def _is_number(text: str) -> bool:
    """utils.is_number: whatever Python's float() accepts ("12", " 1e3 ", "inf", "nan", "1_000")."""
    try:
        float(text)
    except (ValueError, OverflowError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# extraction (evaluate.py's `evaluate`, then utils.find_math_answer and its clean-up)

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_LETTERS = "ABCDE"


def extract(response: str) -> str:
    """MATH-V's `model_answer` of a raw response (`matching.score` passes its last MAX_SCAN_CHARS characters)."""
    answer = response.strip()
    for c in _LETTERS:
        if answer.endswith((f" {c}.", f" ({c}).")) or answer.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n")):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for flag in _FLAGS:
            for variant in (flag, flag.replace("the", "The")):
                had_flag = variant in answer
                answer = answer.split(variant)[-1].strip()
                if had_flag:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for c in "abcde":
        answer = answer.replace(f"({c})", c)
    for c in "abcde":
        answer = answer.replace(f"{{{c}}}", c)
    return answer.rstrip(".").lstrip(":").strip()


_REPLACEMENTS = ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""),
                 ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""),
                 ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
                 ("{km}", ""), ("km", ""))


def find_math_answer(text: str) -> str:
    """utils.find_math_answer: lower-case; the content of `oxed{...}` from the first such opening to the LAST "}"
    (a greedy match, not a balanced group), cut at a "}" that closes nothing; the value after "=" / "\\approx";
    LaTeX and unit clean-up; then `_strip_string`."""
    text = text.lower().replace("{}", "")
    opening = text.find("oxed{")
    closing = text.rfind("}")
    answer = text[opening + 5 : closing] if 0 <= opening and opening + 5 <= closing else text
    first_close = answer.find("}")
    if first_close != -1 and (answer.find("{") == -1 or first_close < answer.find("{")):
        answer = answer.split("}")[0]
    answer = answer.split("=")[-1].split("\\approx")[-1]
    for old, new in _REPLACEMENTS:
        answer = answer.replace(old, new)
    return _strip_string(answer)


def _fix_fracs(text: str) -> str:
    """utils._fix_fracs: brace a \\frac's one-character arguments ("\\frac12" -> "\\frac{1}{2}")."""
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{":
            out += part
            continue
        if len(part) < 2:
            return text
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}" + (("{" + b + "}") if b != "{" else b) + rest
    return out


def _fix_a_slash_b(text: str) -> str:
    """utils._fix_a_slash_b: "3/4" (integers, nothing else) -> "\\frac{3}{4}"."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{a}}}{{{b}}}" if text == f"{a}/{b}" else text


def _fix_sqrt(text: str) -> str:
    """utils._fix_sqrt: brace a \\sqrt's one-character argument ("\\sqrt3" -> "\\sqrt{3}")."""
    parts = text.split("\\sqrt")
    return parts[0] + "".join("\\sqrt{" + p[0] + "}" + p[1:] if p and p[0] != "{" else "\\sqrt" + p
                              for p in parts[1:])


def _strip_string(text: str) -> str:
    """utils._strip_string, step for step (its \\frac fix runs only when the string has "sqrt", as there)."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    text = text.split("\\text{ ")[0]  # _remove_right_units
    text = text.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2:
        text = text.split("=")[-1]
    if len(text.split("\\approx")) == 2:
        text = text.split("\\approx")[-1]
    if "sqrt" in text:
        text = _fix_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_a_slash_b(text)


# ---------------------------------------------------------------------------------------------------------------
# matching (utils.is_equal and eval_tuple)


def eval_tuple(text: str, value) -> str:
    """utils.eval_tuple: "(a, b)" / "[a, b]" with more than one element -> each element's value rounded to two
    decimals ("infty", "a", "-a" kept); the text unchanged when it is not one or an element has no value."""
    items = text[1:-1].split(",")
    if len(items) < 2 or (text[:1], text[-1:]) not in (("(", ")"), ("[", "]")):
        return text
    out = []
    for item in items:
        if "infty" in item or item in ("a", "-a"):
            out.append(item)
            continue
        number = value(item)
        if number is None:
            return text
        out.append(str(round(number, 2)))
    return text[0] + ",".join(out) + text[-1]


def is_equal(first: str, second: str, value) -> bool:
    """utils.is_equal: lower-cased; an empty side is never equal; equal when the trimmed strings are, when their
    `eval_tuple` forms are, or when both have values that agree at two decimals. `value(text)` is a number or None
    (where MATH-V's latex2sympy + eval raises)."""
    first, second = first.lower(), second.lower()
    if not first.replace(" ", "") or not second.replace(" ", ""):
        return False
    if first.strip() == second.strip():
        return True
    first, second = eval_tuple(first, value), eval_tuple(second, value)
    if first == second:
        return True
    a, b = value(first), value(second)
    if a is None or b is None:
        return False
    try:
        return round(a, 2) == round(b, 2)
    except (OverflowError, ValueError):  # inf, nan: round raises in MATH-V's code too
        return False


# ---------------------------------------------------------------------------------------------------------------
# values: what `eval(str(latex2sympy(text)))` gives, without eval

# Tokens of the subset; math-mode $, "\\!" and "\\displaystyle" are transparent; a ratio "a:b" is a quotient and "π" is
# \\pi, as latex2sympy reads them.
_TOKEN = re.compile(r"(?:[\s$]|\\!|\\displaystyle)*(\d{1,3}(?:,\d{3})+(?![\d,])|\d+\.?\d*|\.\d+|\\[a-zA-Z]+|[-+*/^{}():π])"
                    r"(?:[\s$]|\\!|\\displaystyle)*")
# latex2sympy has no value for a percent sign, or for a comma that is not a thousands separator ("1,9", "(6,2,1)").
_NO_VALUE_CHARS = re.compile(r"%|,")
_COMMAND_ALIASES = {"\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\times": "*", "\\cdot": "*", "\\div": "/", ":": "/",
                    "π": "\\pi"}
_PROSE = re.compile(r"[a-df-zA-Z]")  # a letter that is not e: latex2sympy makes it a symbol eval cannot name
# Commands MATH-V's latex2sympy reads as symbols math does not name ("40^{\circ}" has no value in MATH-V's code: its
# verdicts count "40" wrong for the option "$40^{\circ}$"), or cannot read at all (\boxed).
_SYMBOL_COMMANDS = re.compile(r"\\(?:circ|boxed|alpha|beta|gamma|delta|theta|phi|varphi|omega|lambda|mu|sigma|rho|angle)"
                              r"(?![a-zA-Z])")


class _Undecided(Exception):
    pass


class _PlainParser:
    """A recursive-descent reader of the LaTeX subset whose value needs no sympy: numbers, { } ( ), + - * /,
    \\cdot \\times \\div, ^ with a braced or one-token exponent, \\frac{}{}, \\sqrt{}, \\pi, implicit products."""

    def __init__(self, text: str):
        self.tokens, at = [], 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if not m:
                raise _Undecided
            token = m.group(1)
            if token[0].isdigit():
                token = token.replace(",", "")
            self.tokens.append(_COMMAND_ALIASES.get(token, token))
            at = m.end()
        self.at = 0

    def peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected=None):
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Undecided
        self.at += 1
        return token

    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self):
        value = self.unary()
        while True:
            token = self.peek()
            if token in ("*", "/"):
                self.take()
                right = self.unary()
                if token == "/":
                    if right == 0:
                        raise _Undecided
                    value = value / right if isinstance(value, float) or isinstance(right, float) or value % right \
                        else value // right
                else:
                    value = value * right
            elif token is not None and token not in ("+", "-", "}", ")", "^"):
                value = value * self.power()  # implicit product: 2\pi, 4\sqrt{3}, 3(4)
            else:
                return value

    def unary(self):
        if self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.atom()
        if abs(exponent) > 64 or (base == 0 and exponent <= 0):
            raise _Undecided  # large powers, 0^-1: left to sympy and its time limit
        result = base ** exponent
        if isinstance(result, complex):
            raise _Undecided
        return result

    def atom(self):
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            return float(token) if "." in token else int(token)
        if token in ("{", "("):
            value = self.expression()
            self.take("}" if token == "{" else ")")
            return value
        if token == "\\pi":
            return math.pi
        if token == "\\frac":
            numerator, denominator = self.group(), self.group()
            if denominator == 0:
                raise _Undecided
            return numerator / denominator
        if token == "\\sqrt":
            radicand = self.group()
            if radicand < 0:
                raise _Undecided
            return math.sqrt(radicand)
        raise _Undecided

    def group(self):
        self.take("{")
        value = self.expression()
        self.take("}")
        return value


def plain_value(text: str):
    """The value of `text` as MATH-V computes it, where that needs no sympy: a number, None where MATH-V's
    latex2sympy + eval fails for sure (prose: a letter other than e outside a LaTeX command, a percent sign, a
    comma list), or UNDECIDED."""
    if not text.strip():
        return None
    if _PROSE.search(re.sub(r"\\[a-zA-Z]+", "", text)) or _SYMBOL_COMMANDS.search(text):
        return None
    if _NO_VALUE_CHARS.search(text) and not re.search(r"\d,\d{3}", text):
        return None
    try:
        parser = _PlainParser(text)
        value = parser.expression()
    except (_Undecided, OverflowError, ZeroDivisionError, RecursionError):
        return UNDECIDED
    if parser.at != len(parser.tokens):
        return UNDECIDED
    if isinstance(value, float) and not math.isfinite(value):
        return UNDECIDED
    return value


# ---------------------------------------------------------------------------------------------------------------
# where MATH-V's latex2sympy stops reading (the `mathvision` protocol; `mathvision_strict` reads the whole string)
#
# MATH-V's utils.py imports `latex2sympy` from latex2sympy2 (unpinned: 1.9.1 on PyPI, OrangeX4/latex2sympy commit
# 52423b7, latex2sympy2.py). It parses with `parser.math()`, and PS.g4's start rule `math: relation | relation_list;`
# has no EOF: ANTLR returns after the longest expression, without an error, as soon as the next token cannot continue
# it, and the lexer never reaches the text after that token. Outside every bracket, the tokens that can follow an
# expression but continue none are a bracket closing nothing (PS.g4's `group`, `floor_group`, `ceil_group`, the
# matrix environments), PERIOD (a "." the lexer does not read as a decimal point: no parser rule uses it), the matrix
# delimiters `&` and `\\`, the limit arrows (`\to`, `\rightarrow`, ...: only inside `\lim_{...}`), `\leftrightarrow`
# (only in matrix transforms) and R_RIGHT without its closer. Inside a bracket the same tokens make the parse raise
# instead (the group wants its closer); there, and where no such token occurs, the whole string is read, as
# `mathvision_strict` reads it. Not reproduced: "_" after a number ("5_x" is 5 there), a stop that depends on what
# precedes it, and "<->" / "<=>"; a stop in the middle of `|...|` or `\|...\|` (one bar token opens and closes) gives
# an unclosed prefix, which has no value, as the raise there has none. Checked against latex2sympy2 1.9.1 itself on
# the fixtures' strings and on random ones (docs/scoring.md).

# Opening bracket tokens and the closer each group rule of PS.g4 pairs with it. A `\left(` (L_LEFT L_PAREN) wants
# `\right)`, not ")"; the `\mleft` / `\mright` forms likewise.
_DELIMITERS = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "\\lbrace": "\\rbrace", "\\lbrack": "\\rbrack",
               "\\lgroup": "\\rgroup", "\\lfloor": "\\rfloor", "\\llcorner": "\\lrcorner", "\\lceil": "\\rceil",
               "\\ulcorner": "\\urcorner", "\\lvert": "\\rvert"}
_BRACKETS = {**_DELIMITERS,
             **{f"{left}{opening}": f"{right}{closing}" for opening, closing in _DELIMITERS.items()
                for left, right in (("\\left", "\\right"), ("\\mleft", "\\mright"))},
             # CMD_MATRIX_START / CMD_MATRIX_END accept any of the three types; the det environment is its own
             "\\begin{matrix}": "\\end{matrix}", "\\begin{vmatrix}": "\\end{vmatrix}"}
_CLOSERS = frozenset(_BRACKETS.values())
_MATRIX_ENVIRONMENT = re.compile(r"\\(begin|end)\{([pb]?matrix|vmatrix)\}")  # one lexer token, no spaces inside
# A stray `\right` (one not before a bracket) is R_RIGHT alone, which only a group's closer may follow.
_STOPS_OUTSIDE_BRACKETS = frozenset({".", "&", "\\\\", "\\to", "\\rightarrow", "\\Rightarrow", "\\longrightarrow",
                                     "\\Longrightarrow", "\\leftrightarrow", "\\Leftrightarrow", "\\right", "\\mright"})
# The lexer has no rule for a command as such: it matches its literals, the longest first, whatever letters follow
# ("\totheansweris" is `\to` and letters). The literals that matter here, longest first ("\rightarrow" before "\right").
_COMMAND_LITERALS = sorted({token for token in (*_DELIMITERS, *_DELIMITERS.values(), *_STOPS_OUTSIDE_BRACKETS,
                                                "\\left", "\\mleft", "\\vert") if token[1:2].isalpha()},
                           key=len, reverse=True)
_BARS = frozenset({"|", "\\|", "\\vert"})  # abs / norm groups: one token opens and closes, `\left` / `\right` may dress it
_BACKSLASH_TOKEN = re.compile(r"\\(?:[a-zA-Z]+|.?)", re.S)  # a command, an escaped character ("\{", "\%"), "\\"
_DECIMAL_POINT = re.compile(r"\.[0-9]")  # the lexer's NUMBER: a period before an ASCII digit belongs to a number


def _token(text: str, at: int) -> tuple[str, int]:
    """The token at `at` as far as brackets go (a matrix environment in one canonical spelling, a command, an escaped
    character, else one character) and where the next begins."""
    environment = _MATRIX_ENVIRONMENT.match(text, at)
    if environment:
        kind = "vmatrix" if environment.group(2) == "vmatrix" else "matrix"
        return f"\\{environment.group(1)}{{{kind}}}", environment.end()
    if text[at] != "\\":
        return text[at], at + 1
    token = _BACKSLASH_TOKEN.match(text, at).group(0)
    if token[1:2].isalpha():
        token = next((literal for literal in _COMMAND_LITERALS if token.startswith(literal)), token)
    return token, at + len(token)


def _bracket_token(text: str, at: int) -> tuple[str, int]:
    """`_token`, with `\\left` / `\\right` and the delimiter after them read as one bracket ("\\left(")."""
    token, following = _token(text, at)
    if token in ("\\left", "\\right", "\\mleft", "\\mright"):
        # L_LEFT / R_RIGHT introduce the delimiter that follows; whitespace between them is skipped by the lexer
        while following < len(text) and text[following] in " \t\r\n":
            following += 1
        if following < len(text):
            delimiter, end = _token(text, following)
            if delimiter in _DELIMITERS or delimiter in _DELIMITERS.values():
                return token + delimiter, end
            if delimiter in _BARS:
                return delimiter, end  # one token opens and closes `|...|`: not tracked, as a bare bar is not
        return token, at + len(token)
    return token, following


def leading_expression(text: str) -> str | None:
    """The text before the token where MATH-V's latex2sympy stops reading early, outside every bracket: a closing
    bracket that closes nothing ("}", ")", "]", "\\}", "\\rfloor", `\\end{pmatrix}`, ... with or without `\\right`), a
    "." the lexer reads as no decimal point (not before a digit), "&", "\\\\", `\\to`, `\\rightarrow`, a stray `\\right`.
    None where latex2sympy reads the whole string (no such token) or raises first (a mismatched closer; a period or
    a stray `\\right` inside a bracket). `is_equal` has lower-cased the text ("\\Rightarrow" is "\\rightarrow")."""
    open_brackets = []
    at = 0
    while at < len(text):
        token, following = _bracket_token(text, at)
        if token in _BRACKETS:
            open_brackets.append(_BRACKETS[token])
        elif token in _CLOSERS:
            if not open_brackets:
                return text[:at]
            if open_brackets.pop() != token:
                return None
        elif token in _STOPS_OUTSIDE_BRACKETS and not (token == "." and _DECIMAL_POINT.match(text, at)):
            if not open_brackets:
                return text[:at]
            if token in (".", "\\right", "\\mright"):
                return None  # no rule takes them inside a group: the parse raises there, it does not stop
            # `&` and `\\` are a matrix's, the arrows a `\lim_{...}`'s: read on
        at = following
    return None


def leading_value(text: str, value):
    """MATH-V's value of `text` (the `mathvision` protocol): `value` of what latex2sympy reads of it."""
    prefix = leading_expression(text)
    return value(text if prefix is None else prefix)


# Names eval finds in MATH-V's utils namespace (`from math import *`) that latex2sympy's output may use.
_MATH_NAMES = frozenset(name for name in dir(math) if not name.startswith("_"))
_NAME = re.compile(r"[A-Za-z_]\w*")


def sympy_value(text: str):
    """In the worker: latex2sympy's expression of `text`, valued as eval would value its str() in math's namespace:
    None where eval would raise (a name math does not have, a non-real value, a parse error)."""
    import sympy
    from latex2sympy2_extended import latex2sympy

    try:
        expr = latex2sympy(text)
    except Exception:  # any parse failure is what MATH-V's bare except catches
        return None
    if not isinstance(expr, sympy.Expr):
        return None
    names = set(_NAME.findall(str(expr)))
    if not names <= _MATH_NAMES:
        return None
    expr = expr.subs({sympy.Symbol("e"): sympy.E, sympy.Symbol("pi"): sympy.pi, sympy.Symbol("tau"): 2 * sympy.pi})
    if expr.free_symbols:
        return None
    if expr.is_Integer:
        return int(expr)
    value = complex(sympy.N(expr, 30))
    if value.imag != 0 or not math.isfinite(value.real):
        return None
    return value.real
