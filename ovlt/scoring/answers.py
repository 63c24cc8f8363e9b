"""The answer scorer: one source of truth for extracting and checking answers.

Every stage that decides whether a model got a problem right (evaluation, GRPO rewards, filtering self-generated
chains) goes through `score`. It works in two steps:

1. `extract(response, choices, turns)` finds the answer span in a free-form response. A run-on response that
   answers and then invents new turns (a line "Question: ...") is first cut to one turn: the first (`turns="first"`,
   the answer to the question asked; the default) or the last (`turns="last"`, what MathVista's GPT extractor
   graded; the `mathvista` protocol uses it). Rules, tried in this order (the first that fires wins;
   `Extraction.rule` names it):
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
   With choices, a span that is an option letter in any of its usual dresses ("(B) No", "Option B.") is reduced to
   the bare letter, and a span that is an option's text is reduced to that text.
2. `match(extracted, answer, answer_type, ...)` decides, under a named protocol, whether the extraction equals the
   gold answer. Protocols:
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

The think/answer format the student learns (`REASONING_INSTRUCTION`) is written and read here too: `chain_text`
writes a chain, `think_text` / `answer_text` / `split_reasoning` read its parts, `well_formed` checks its form,
`reasoner_chain` turns a reasoner's response into one, so curation, the teachers and the rewards read a chain exactly
as the scorer does. TRL rewards: ours (`accuracy_reward`,
`format_reward`) and the authors' (`r1v_reward`, `r1v_format_reward`, their r1v.py).
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
from collections import deque
from dataclasses import dataclass

from ovlt.ground.schema import ANSWER_TYPES, OPTION_LETTER, option_letters
from ovlt.scoring import mathvision

log = logging.getLogger(__name__)

PROTOCOLS = ("strict", "mathvista", "mathvision", "mathvision_strict", "authors")
PROTOCOL_ALIASES = {"official": "mathvista"}
# The hard time limit of every sympy-backed check (math-verify, mathruler's grade_answer): a call past it is wrong.
MATH_VERIFY_TIMEOUT_S = 3.0
# Answers sit at the end of a response; scanning only the tail bounds the cost of pathological inputs.
MAX_SCAN_CHARS = 20_000
# An answer math-verify or latex2sympy compares is short (the longest on the fixtures: ~150 characters); a longer span
# is prose or an attack, and parsing it costs up to a second.
MAX_SYMPY_CHARS = 300


@dataclass(frozen=True)
class Extraction:
    text: str
    rule: str


@dataclass(frozen=True)
class Verdict:
    extracted: str
    rule: str
    correct: bool


# ----------------------------------------------------------------------------------------------------------------
# the think/answer format: the one place that writes and reads its tags

REASONING_INSTRUCTION = (
    "You should first think through the reasoning process inside <think> </think> tags, "
    "then give the final answer inside <answer> </answer> tags."
)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_WELL_FORMED = re.compile(r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)*"
                          r"</answer>\s*(?:<\|im_end\|>|<\|endoftext\|>|</s>)?\s*", re.DOTALL)


def chain_text(think: str, answer: str) -> str:
    """A chain in the format the student learns: `<think>think</think>`, a new line, `<answer>answer</answer>`."""
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def _last_answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    return text[start + len("<answer>") : end] if start >= 0 else None


def answer_text(chain: str) -> str | None:
    """The content of the chain's last <answer>...</answer>, trimmed, or None."""
    tagged = _last_answer_tag(chain)
    return tagged.strip() if tagged is not None else None


def think_text(chain: str) -> str:
    """The reasoning of a chain: inside its first <think>...</think>, else everything before <answer>; trimmed."""
    found = _THINK.search(chain)
    return (found.group(1) if found else chain.split("<answer>")[0]).strip()


def split_reasoning(response: str) -> tuple[str, str]:
    """(reasoning, rest) of a reasoner's response. With a </think>: the text before the last one, from the last
    <think> (R1-distill's chat template opens <think> in the prompt, so a response may start inside it), and the
    text after it. Without: the text before the first <answer> less any <think>, and the response from that
    <answer> on; when nothing follows an <answer> (or there is none), the rest is the text before it."""
    if "</think>" in response:
        think, _, rest = response.rpartition("</think>")
        return think.split("<think>")[-1], rest
    think, _, rest = response.partition("<answer>")
    return think.replace("<think>", ""), ("<answer>" + rest if rest else think)


def well_formed(text: str) -> bool:
    """<think>...</think> then <answer>...</answer>, and nothing after </answer> but whitespace or an eos token."""
    return _WELL_FORMED.fullmatch(text or "") is not None


# ----------------------------------------------------------------------------------------------------------------
# a reasoner's response (DeepSeek-R1-Distill's and other <think> reasoners') read as a chain

@dataclass(frozen=True)
class ReasonerChain:
    """A reasoner's response in the think/answer format: `chain` (None when dropped) and `cause`: "kept", a
    repair (`REASONER_REPAIRS`) or the reason it was dropped (`REASONER_DROPS`)."""
    chain: str | None
    cause: str


REASONER_DROPS = {
    "empty_response": "the response is empty",
    "unclosed_think": "the reasoning never closes with </think>: no final answer follows it",
    "empty_reasoning": "nothing stands between <think> and </think>",
    "tags_in_reasoning": "the reasoning names a <think>/<answer> tag or drafts one: no chain built from it is well "
                         "formed",
    "refusal": "the final answer declines to answer",
    "no_answer": "no final answer after the reasoning",
}
REASONER_REPAIRS = {"restated_think": "a think block restated after the reasoning was set aside; the answer is read "
                                      "from the text around it"}
_THINK_TAGS = re.compile(r"</?think>")
_CHAIN_TAGS = re.compile(r"</?(?:think|answer)>")
_RESTATED_THINK = re.compile(r"<think>(?:(?!</?think>).)*</think>", re.DOTALL)


def _closing_think(body: str) -> int | None:
    """Where the </think> that closes the already open reasoning block stands in `body`, or None: a <think> inside
    opens a nested block that its own </think> closes ("put it inside <think> </think> tags")."""
    depth = 1
    for tag in _THINK_TAGS.finditer(body):
        depth += 1 if tag.group() == "<think>" else -1
        if depth == 0:
            return tag.start()
    return None


def reasoner_chain(response: str, choices=()) -> ReasonerChain:
    """A reasoner's response as `<think>reasoning</think>` + `<answer>final answer</answer>`, or why it was dropped.

    The reasoning is the text of the block the chat template opened (R1-Distill's later template ends the prompt in
    `<think>\\n`) or that the response opens itself (its first template), up to the </think> that closes it. The
    final answer is read by `extract` from what follows. A think block restated after the reasoning (R1 asked for the
    student's tags writes `...</think>\\n\\n<think>summary</think>\\n<answer>X</answer>`) is not the reasoning:
    it is set aside and counted (`restated_think`). A response whose think never closes holds no final answer (as
    vLLM's R1 reasoning parser reads it: all reasoning). Reasoning that holds a tag is dropped, never repaired, so
    every chain returned is `well_formed`.
    """
    text = (response or "").strip()
    if not text:
        return ReasonerChain(None, "empty_response")
    body = text.removeprefix("<think>")
    close = _closing_think(body)
    if close is None:
        return ReasonerChain(None, "unclosed_think")
    reasoning, rest = body[:close].strip(), body[close + len("</think>"):]
    if not reasoning:
        return ReasonerChain(None, "empty_reasoning")
    if _CHAIN_TAGS.search(reasoning):
        return ReasonerChain(None, "tags_in_reasoning")
    cause = "kept"
    if _THINK_TAGS.search(rest):
        rest, restated = _RESTATED_THINK.subn("\n", rest)
        if _THINK_TAGS.search(rest):  # a stray </think>: the one that seemed to close the reasoning was a tag word
            return ReasonerChain(None, "tags_in_reasoning")
        cause = "restated_think" if restated else cause
    found = extract(rest, choices)
    if found.rule == "refusal":
        return ReasonerChain(None, "refusal")
    if found.rule == "none" or not found.text.strip() or _CHAIN_TAGS.search(found.text):
        return ReasonerChain(None, "no_answer")
    return ReasonerChain(chain_text(reasoning, found.text.strip()), cause)


# ----------------------------------------------------------------------------------------------------------------
# extraction

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


# ----------------------------------------------------------------------------------------------------------------
# TRL reward functions


def _completion_text(completion) -> str:
    """TRL passes plain strings, or conversational lists [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] if isinstance(m["content"], str) else
                   "".join(part.get("text", "") for part in m["content"]) for m in completion)


def accuracy_reward(completions, answer, answer_type, choices, precision, **kwargs) -> list[float]:
    """TRL reward: 1.0 when the completion's answer is right under the strict protocol, else 0.0."""
    return [float(score(_completion_text(c), a, t, ch or (), -1 if p is None else p).correct)
            for c, a, t, ch, p in zip(completions, answer, answer_type, choices, precision, strict=True)]


def format_reward(completions, **kwargs) -> list[float]:
    """TRL reward: 1.0 for a well-formed think/answer completion, else 0.0."""
    return [float(well_formed(_completion_text(c))) for c in completions]


# The authors' GRPO reward (train/easyr1/examples/reward_function/r1v.py), read as r1v.py reads a completion.
_R1V_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # the first tag whose content fits on one line
_R1V_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)  # the whole completion
R1V_NO_BRIDGE_PENALTY = 0.5


def _r1v_accuracy(text: str, gold: str) -> float:
    found = _R1V_ANSWER.search(text)
    given = found.group(1).strip() if found else text.strip()
    if not (given.lower() == gold.lower() or SYMPY_WORKER.grade_answer(given, gold.strip())):
        return 0.0
    # r1v.py punishes a right answer with nothing between the last </think> and the <answer> after it.
    no_bridge = "</think>" in text and "<answer>" in text and not split_reasoning(text)[1].split("<answer>")[0].strip()
    return 1.0 - R1V_NO_BRIDGE_PENALTY if no_bridge else 1.0


def r1v_reward(completions, answer, answer_type, choices, **kwargs) -> list[float]:
    """TRL reward, the authors' (r1v.py): 1.0 when the content of the first one-line <answer>...</answer> (without
    one, the whole completion) equals the gold ignoring case or by mathruler's grade_answer, 0.5 when it does but
    nothing stands between </think> and <answer>, else 0.0. A multiple-choice gold is its option's letter."""
    return [_r1v_accuracy(_completion_text(c), authors_gold(str(a), t, ch))
            for c, a, t, ch in zip(completions, answer, answer_type, choices, strict=True)]


def r1v_format_reward(completions, **kwargs) -> list[float]:
    """TRL reward, the authors' format score (r1v.py; logged, not rewarded): 1.0 when the completion is exactly
    <think>...</think>, whitespace, <answer>...</answer>, with nothing before or after."""
    return [float(_R1V_FORMAT.fullmatch(_completion_text(c)) is not None) for c in completions]
