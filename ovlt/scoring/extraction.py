"""Extraction: the answer span of a free-form response, and the text normalisation that matching shares.

`extract(response, choices, turns)` finds the answer span in a free-form response (its last MAX_SCAN_CHARS
characters). A run-on response that answers and then invents new turns (a line "Question: ...") is first cut to one
turn: the first (`turns="first"`, the answer to the question asked; the default) or the last (`turns="last"`, what
MathVista's GPT extractor graded; the `mathvista` protocol uses it). Rules, tried in this order (the first that fires
wins; `Extraction.rule` names it):
  answer_tag     the content of the last <answer>...</answer>
  boxed          the last \\boxed{...} whose braces balance
  answer_phrase  "the (final/correct) answer is ...", "Answer: ...", "the correct option is ..." (last one)
  refusal        the end of the response declines to answer ("cannot be determined", "not enough information",
                 "none of the options", a bare "N/A"): "Cannot be determined" / "Cannot be answered" when it says
                 so in those words, else "N/A" (MathVista's normaliser then takes the nearest option, as it does
                 for GPT's N/A; `strict` counts it wrong unless it is an option's text)
  option_letter  a trailing option letter: "(B)", "B.", "B (No)"   (multiple choice only)
  yes_no         yes/no options answered in prose: the verdict sentence (the last "Therefore/So/Thus ..."
                 sentence of the last paragraph, else its first) -> a leading yes/no, else No when negated
                 ("not", "n't", "no", ...) and Yes when it affirms (states something with a finite verb: "is",
                 "has", "exceeds", ...; not a question, not "Let me look"); no verdict otherwise, nor when that
                 sentence states a number
  count_phrase   "there are N ..." / "there are two ..." in the last line (a count names the answer, not the
                 threshold after it: "There are 3 bars below 40." -> 3)
  option_text    an option's text at the end of the response        (multiple choice only)
  option_words   the one option all of whose words (plurals folded) the last paragraph uses (multiple choice)
  last_number    the last number in the response
  none           nothing found (text ""): wrong under every protocol, never mapped to an option
With choices, a span that is an option letter in any of its usual dresses ("(B) No", "Option B.") is reduced to the
bare letter, and a span that is an option's text is reduced to that text. Whether the span is right is
`ovlt.scoring.matching`'s to decide.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

from ovlt.ground.schema import OPTION_LETTER, option_letters
from ovlt.scoring.chains import _last_answer_tag

# Answers sit at the end of a response; scanning only the tail bounds the cost of pathological inputs.
MAX_SCAN_CHARS = 20_000


@dataclass(frozen=True)
class Extraction:
    text: str
    rule: str


_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])|(?<![\w\d])[-−]?\.\d+")
_PHRASE = re.compile(
    r"(?:\bfinal\s+answer|\bcorrect\s+answer|\banswer|\bcorrect\s+(?:option|choice))\s*"
    r"(?:(?:is|should\s+be|would\s+be|will\s+be)\s*:?|:|=)[ \t]*",
    re.IGNORECASE,
)
# An option letter in its usual dresses: "B", "(B)", "B.", "B)", "B:", "Option B", optionally followed by the
# option text: "B (No)", "(B) No", "B. No", "B: No". The letter itself must be upper case ("a horse" is prose).
_LETTER_SPAN = re.compile(rf"^(?:(?i:the\s+)?(?i:option|choice)\s*)?(?P<open>\(?)(?P<letter>{OPTION_LETTER})\)?"
                          r"(?P<sep>[.:)]|\s+|$)(?P<rest>.*)$", re.DOTALL)
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_COUNT = re.compile(r"\bthere\s+(?:are|is|were|was)\s+(?:only\s+|exactly\s+)?(\d+|" + "|".join(NUMBER_WORDS) + r")\b",
                    re.IGNORECASE)
_PAREN_LETTER = re.compile(rf"\(({OPTION_LETTER})\)")
_TRAILING_LETTER = re.compile(rf"(?:^|[\s:*(])\(?({OPTION_LETTER})\)?[.)]?\s*(?:\([^()\n]{{0,80}}\))?[.*\s]*$")


def _balanced_group(text: str, open_at: int) -> str | None:
    """The content of the brace group opening at text[open_at] == "{", or None when it never closes."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def _last_boxed(text: str, max_tries: int = 20) -> str | None:
    end = len(text)
    for _ in range(max_tries):
        at = max(text.rfind("\\boxed{", 0, end), text.rfind("\\fbox{", 0, end))
        if at < 0:
            return None
        content = _balanced_group(text, text.index("{", at))
        if content is not None:
            return content
        end = at
    return None


def _trim_span(span: str) -> str:
    """Cut a phrase capture at its sentence end and drop decoration: 'B (No). Because' -> 'B (No)'."""
    span = re.split(r"\.\s", span, maxsplit=1)[0]
    return span.strip().strip("*").strip().rstrip(".").strip().strip("*\"'`").strip()


def _as_letter(span: str, choices) -> str | None:
    """The option letter a span names, if it names one of `choices`' letters."""
    letters = option_letters(len(choices))
    span = span.strip().strip("*$").strip()
    m = _LETTER_SPAN.match(span)
    if m and m.group("letter") in letters:
        rest = m.group("rest").strip()
        if not rest or m.group("open") or m.group("sep") in ".:)" or rest[0] == "(" or _same_text(rest, choices):
            return m.group("letter")
    paren = _PAREN_LETTER.findall(span)
    if paren and paren[0] in letters:
        return paren[0]
    return None


def _same_text(text: str, choices) -> bool:
    return any(_normalise_text(text) == _normalise_text(c) for c in choices)


def _as_option_text(span: str, choices) -> str | None:
    norm = _normalise_text(span)
    for choice in choices:
        if norm == _normalise_text(choice):
            return choice
    return None


def _reduce_span(span: str, choices) -> str:
    """With choices, reduce a span to the bare option letter or the option text it names."""
    span = _trim_span(span)
    if choices:
        letter = _as_letter(span, choices)
        if letter:
            return letter
        option = _as_option_text(span, choices)
        if option is not None:
            return option
    return span


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _option_at_end(text: str, choices) -> str | None:
    """The option whose text ends latest in the last line (longest on ties), e.g. '... so it is a surplus.'"""
    line = " ".join(_strip_latex(_last_line(text)).lower().split())
    best, best_end = None, -1
    for choice in choices:
        norm = " ".join(_strip_latex(str(choice)).lower().split())
        if not norm:
            continue
        for m in re.finditer(r"(?<![\w.])" + re.escape(norm) + r"(?!\w)", line):
            if m.end() > best_end or (m.end() == best_end and len(choice) > len(best)):
                best, best_end = choice, m.end()
    return best


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    found = deque(pattern.finditer(text), maxlen=1)
    return found[0] if found else None


def _last_number(text: str) -> str | None:
    found = _last_match(_NUMBER, text)
    return found.group(0).replace(",", "").replace("−", "-") if found else None


# A run-on response answers, then invents a new turn ("Question: ...") and answers that too (Claude-2 does so in a
# quarter of its MathVista responses).
_INVENTED_TURN = re.compile(r"\n[ \t]*(?:Question|Human|User|Problem)[ \t]*:", re.IGNORECASE)
TURNS = ("first", "last")
# A response that declines to answer. Only its end is read: an explanation may say "cannot" on the way.
_REFUSAL = re.compile(
    r"cannot be (?:determined|answered|provided|given|calculated|found)|(?:impossible|not possible|unable) to"
    r"|can(?:no|')t (?:\w+ )?(?:determine|answer|provide|be sure|say|tell)|no way to (?:determine|tell|know)"
    r"|(?:not|in)sufficient (?:information|data|context)|(?:does|do|did) not (?:provide|give|include|specify|contain)"
    r"|not (?:have )?enough (?:information|context|data|details)"
    r"|(?:none of|not (?:one of|available in|among|in)) the (?:options|choices|answer choices)"
    r"|please provide|without (?:the |specific |additional |further |more )?(?:data|information|context|values?)"
    r"|(?<![\w/])n/a(?![\w/])",
    re.IGNORECASE)
# A refusal that states its verdict in these words is extracted in them, as an extractor quotes an answer;
# any other refusal is "N/A".
_STATED_VERDICT = re.compile(r"cannot be (?:determined|answered)|cannot determine", re.IGNORECASE)
REFUSAL_TAIL_CHARS = 300
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|none|cannot)\b|n't\b", re.IGNORECASE)
# A verdict affirms by stating something: a finite verb of being, having or comparing. "N/A", "Let me look" or a
# question states nothing and is no verdict (a sentence without a negation is not thereby a "yes").
_AFFIRMATION = re.compile(r"\b(?:is|are|was|were|has|have|had|does|do|did|can|could|will|would|should|must|"
                          r"appears?|seems?|looks?|shows?|contains?|exceeds?|equals?|matches|lies|falls|reaches|"
                          r"holds|forms?|makes?|indicates?|suggests?)\b", re.IGNORECASE)
_PROCESS = re.compile(r"\s*(?:let(?:'s| us| me)|i need|we need|i will|we will|to (?:determine|answer|find))\b",
                      re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CONCLUSION = re.compile(r"[*\s]*(?:therefore|thus|so|hence|in conclusion|in summary|overall|yes|no)\b",
                         re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


def sentences(text: str) -> list[str]:
    """The non-blank sentences of a text, split where whitespace follows ".", "!" or "?"."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _own_turn(text: str, turns: str) -> str:
    """The part of a run-on response that answers the question: before the first invented turn ("first", how a
    careful grader reads it) or after the last one ("last", how MathVista's GPT extractor read it)."""
    found = _last_match(_INVENTED_TURN, text) if turns == "last" else _INVENTED_TURN.search(text)
    if found is None:
        return text
    if turns == "last":
        return text[found.end():]
    return text[: found.start()] if text[: found.start()].strip() else text


def _refusal(text: str) -> str | None:
    tail = text[-REFUSAL_TAIL_CHARS:]
    if not _REFUSAL.search(tail):
        return None
    stated = _last_match(_STATED_VERDICT, tail)
    return stated.group(0).capitalize() if stated else "N/A"


def _verdict_sentence(text: str) -> str:
    """The sentence of the last paragraph that gives the verdict: its last conclusion ("Therefore, ...", "So
    ...") or else its first, since a paragraph without one states its answer first and then justifies it."""
    said = sentences(_last_line(text))
    conclusions = [s for s in said if _CONCLUSION.match(s)]
    return conclusions[-1] if conclusions else (said[0] if said else "")


def _yes_no(text: str, choices) -> str | None:
    """For a yes/no question answered in prose: a leading yes/no in the verdict sentence, else No when it is
    negated ("The bar is not taller") and Yes when it affirms ("Sky Blue is less than Web Maroon")."""
    norm = [str(c).strip().lower() for c in choices]
    if sorted(norm) != ["no", "yes"]:
        return None
    sentence = _verdict_sentence(text).lower().lstrip("*#>- ")
    if not _WORD.search(sentence) or any(c.isdigit() for c in sentence):  # a stated number answers a count
        return None
    lead = _WORD.match(sentence)
    said = lead.group(0) if lead and lead.group(0) in ("yes", "no") else None
    if said is None and _NEGATION.search(sentence):
        said = "no"
    elif (said is None and _AFFIRMATION.search(sentence) and not _PROCESS.match(sentence)
          and not sentence.rstrip().endswith("?")):
        said = "yes"
    return choices[norm.index(said)] if said else None


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _option_by_words(text: str, choices) -> str | None:
    """The option all of whose words (plurals folded) the last paragraph uses, when exactly one does:
    'the adult spider population would decrease' -> 'Adults spider population would decrease'."""
    said = {_stem(w) for w in _WORD.findall(_strip_latex(_last_line(text)).lower())}
    covered = []
    for choice in choices:
        words = {_stem(w) for w in _WORD.findall(_strip_latex(str(choice)).lower())}
        if words and words <= said:
            covered.append(choice)
    return covered[0] if len(covered) == 1 else None


def extract(response: str, choices=(), turns: str = "first") -> Extraction:
    """Find the answer in a model response; see the module docstring for the rules and their order. `turns`
    picks the turn of a run-on response that is graded: "first" (the answer to the question asked) or "last"."""
    if turns not in TURNS:
        raise ValueError(f"unknown turns {turns!r}; known: {', '.join(TURNS)}")
    text = _own_turn((response or "")[-MAX_SCAN_CHARS:], turns)
    choices = list(choices or ())
    tagged = _last_answer_tag(text)
    if tagged is not None and tagged.strip():
        inner = _last_boxed(tagged)
        return Extraction(_reduce_span(inner if inner is not None else tagged, choices), "answer_tag")
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extraction(_reduce_span(boxed, choices), "boxed")
    phrase = _last_match(_PHRASE, text)
    if phrase is not None:
        line_end = text.find("\n", phrase.end())
        span = text[phrase.end() : line_end if line_end >= 0 else len(text)]
        if _trim_span(span):
            return Extraction(_reduce_span(span, choices), "answer_phrase")
    refused = _refusal(text)
    if refused is not None:
        return Extraction(refused, "refusal")
    if choices:
        last = _last_line(text)
        letter = _as_letter(last, choices)
        if letter is None:
            m = _TRAILING_LETTER.search(last[-200:])
            letter = m.group(1) if m and m.group(1) in option_letters(len(choices)) else None
        if letter:
            return Extraction(letter, "option_letter")
        yes_no = _yes_no(text, choices)
        if yes_no is not None:
            return Extraction(yes_no, "yes_no")
    count = _COUNT.search(_last_line(text))
    if count:
        return Extraction(_reduce_span(NUMBER_WORDS.get(count.group(1).lower(), count.group(1)), choices),
                          "count_phrase")
    if choices:
        option = _option_at_end(text, choices)
        if option is not None:
            return Extraction(option, "option_text")
        option = _option_by_words(text, choices)
        if option is not None:
            return Extraction(option, "option_words")
    number = _last_number(text)
    if number is not None:
        return Extraction(_reduce_span(number, choices), "last_number")
    return Extraction("", "none")


# ----------------------------------------------------------------------------------------------------------------
# normalisation

_LATEX_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname|displaystyle)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree|\bdegrees?\b")
_UNIT_WORDS = re.compile(
    r"(?<=\d)\s*(?:%|\\%|percent|units?|square\s+units|sq\.?\s*units|cm\^?2|cm|mm|km|m\^?2|m\^?3|m|kg|g|mg|"
    r"s|sec|seconds?|minutes?|hours?|h|years?|days?|dollars?|cents?|inches|inch|in|ft|feet|yards?|miles?|"
    r"n|j|w|v|degrees?)\.?$",
    re.IGNORECASE,
)


def _strip_latex(text: str) -> str:
    text = text.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("$", "").replace("\\%", "%")
    for _ in range(3):  # nested wrappers, bounded
        text = _LATEX_WRAPPERS.sub(r"\1", text)
    return _DEGREES.sub("", text).replace("~", " ")


def _normalise_text(text: str) -> str:
    """Case, whitespace, LaTeX wrappers, braces, degree signs and end punctuation do not matter for text answers."""
    text = _strip_latex(str(text)).lower().replace("{", "").replace("}", "")
    text = re.sub(r"\s+", "", text)
    return text.strip(".,;:!?*\"'`")


def _parse_number(text: str) -> float | None:
    """A plain number with optional sign, thousands separators, units, %, degrees, LaTeX wrappers; else None."""
    text = _strip_latex(str(text)).strip().strip("*").strip().rstrip(".").strip()
    text = _UNIT_WORDS.sub("", text).strip().replace("−", "-").lstrip("$").replace("\\$", "")
    if re.fullmatch(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+", text):
        value = float(text.replace(",", ""))
        return value if math.isfinite(value) else None
    return None


def _number_from_span(span: str) -> str:
    """For numeric answer types: '12 cm' -> '12', 'x = 12' -> '12'; symbolic spans are left for math-verify."""
    if _parse_number(span) is not None:
        return span
    tail = span.split("=")[-1].split("\\approx")[-1].split("≈")[-1]
    if _parse_number(tail) is not None:
        return tail.strip()
    if re.search(r"\\frac|\\sqrt|\\pi|/|√|\^", tail):
        return span
    number = _last_number(tail)
    return number if number is not None else span

