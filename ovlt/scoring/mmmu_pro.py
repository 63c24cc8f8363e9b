"""MMMU-Pro's official scoring of a multiple-choice response, ported rule for rule into our own code.

Source: MMMU-Benchmark/MMMU, `mmmu-pro/evaluate.py` at commit bb0b95a945998d91dfef37e969e07d49d1139438 (Apache-2.0):
`mmmu_process_results` (how an item's inputs are built and judged), `get_multi_choice_info` (the option letters and
the letter -> option text map) and `parse_multi_choice_response` (the extraction).

The rules, in the order the official parser applies them:

1. Inputs. The options string is read as a Python literal; the i-th option gets the letter chr(ord("A") + i), so
   ten options are A..J and twelve A..L. A response that is not a string (the official file stores a dict for a
   failed API call) is the empty string.
2. "Answer:" (case-sensitive, its LAST occurrence in the raw response): the letters that occur anywhere in the
   stripped text after it, as plain substrings; exactly one such letter is the answer. Any other count (none, or
   several, e.g. "Answer: (B) Because ..." holds B and the capital of "Because") falls through to the next rules.
3. The response is stripped of the characters , . ! ? ; : ' at both ends, one character kind after the other in that
   order (str.strip per character, not one strip of the set), then padded with a space on each side.
4. Candidates, the first pass that finds any wins: "(X)" anywhere; else "X " anywhere; else "X." anywhere; else, only
   for a response of more than five whitespace-separated words, each option whose text occurs in the response
   (case-insensitive substring).
5. One candidate is the answer. Among several, the one whose marker occurs LAST wins: "(X)" for the bracket pass,
   " X " for the two letter passes (a candidate found only as "X " at the start or as "X." has no " X " and ranks
   at -1), the option text for the text pass; ties go to the earliest letter (numpy.argmax's first maximum).
6. No candidate: the official code draws `random.choice` of the letters from the unseeded global generator. We draw
   from a `random.Random` the caller passes and report that we fell back (`fell_back`), so a run can count these
   items and a rerun with the same seeds gives the same verdicts.

The verdict is the extracted letter equal to the gold letter as strings (`if_right`). Two protocols:
`official` counts the fallback's seeded random letter like any other (the published numbers include such lucky
guesses); `strict` scores a fallback wrong and reports no letter for it.

Differences from the official code, each where it would crash: an option that is not a string (the official
`.lower()` raises) is compared as str(option); None is read as an empty response.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PROTOCOLS = ("official", "strict")
# evaluate.py strips these from both ends of the response, in this order, one str.strip call per character.
_EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
# The text pass only runs on a response longer than this many whitespace-separated words.
_MIN_WORDS_FOR_TEXT_PASS = 5


def option_letters(count: int) -> list[str]:
    """The official letters of `count` options: A, B, C, ... (get_multi_choice_info)."""
    return [chr(ord("A") + index) for index in range(count)]


def parse_options(options) -> list[str]:
    """The option texts of an item as the data carries them: a Python-list string ("['a', 'b']") or a list.

    Read with ast.literal_eval (never eval); a value that is not a list or tuple of options raises ValueError naming
    it. Options that are not strings become str(option)."""
    parsed = options
    if isinstance(options, str):
        try:
            parsed = ast.literal_eval(options)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            raise ValueError(f"MMMU-Pro options are not a Python list literal: {options!r:.200} ({err})") from None
    if not isinstance(parsed, (list, tuple)):
        raise ValueError(f"MMMU-Pro options must be a list of option texts, got {type(parsed).__name__}: "
                         f"{options!r:.200}")
    return [option if isinstance(option, str) else str(option) for option in parsed]


def index_to_answer(options: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(letters, letter -> option text), as get_multi_choice_info builds them."""
    letters = option_letters(len(options))
    return letters, dict(zip(letters, options, strict=True))


def _unique_letter_after_answer(response: str, letters: Sequence[str]) -> str | None:
    at = response.rfind("Answer:")
    if at == -1:
        return None
    tail = response[at + len("Answer:"):].strip()
    named = [letter for letter in letters if letter in tail]
    return named[0] if len(named) == 1 else None


def _last_of(candidates: list[str], positions: list[int]) -> str:
    # numpy.argmax semantics: the first of the highest positions.
    best = 0
    for index, position in enumerate(positions):
        if position > positions[best]:
            best = index
    return candidates[best]


def parse_multi_choice_response(response, letters: Sequence[str], index2ans: dict[str, str],
                                rng: random.Random) -> tuple[str, bool]:
    """The official parser: (letter, fell_back). `fell_back` is True when no rule found a letter and the letter is
    `rng.choice(letters)` (the official code's random guess, from the caller's seeded generator)."""
    text = response if isinstance(response, str) else ""
    found = _unique_letter_after_answer(text, letters)
    if found is not None:
        return found, False

    for char in _EDGE_PUNCTUATION:
        text = text.strip(char)
    text = f" {text} "

    candidates = [letter for letter in letters if f"({letter})" in text]
    if candidates:
        marker = "({})"
    else:
        candidates = [letter for letter in letters if f"{letter} " in text]
        if not candidates:
            candidates = [letter for letter in letters if f"{letter}." in text]
        marker = " {} "
    by_text = False
    if not candidates and len(text.split()) > _MIN_WORDS_FOR_TEXT_PASS:
        lowered = text.lower()
        candidates = [letter for letter, option in index2ans.items() if option.lower() in lowered]
        by_text = True

    if not candidates:
        return rng.choice(list(letters)), True
    if len(candidates) == 1:
        return candidates[0], False
    if by_text:
        lowered = text.lower()
        positions = [lowered.rfind(index2ans[letter].lower()) for letter in candidates]
    else:
        positions = [text.rfind(marker.format(letter)) for letter in candidates]
    return _last_of(candidates, positions), False


def item_rng(seed_key) -> random.Random:
    """The generator of one item's fallback guess, seeded from a stable key (the item id): the same key gives the same
    guess in every run and process (a str seed is hashed with SHA-512, independent of PYTHONHASHSEED)."""
    return random.Random(f"mmmu-pro:{seed_key}")


@dataclass(frozen=True)
class MmmuProVerdict:
    extracted: str  # the letter scored; "" for a fallback under `strict`
    fell_back: bool  # no rule found a letter: the official parser would have guessed at random
    correct: bool


def score_mmmu_pro(response, answer_letter: str, options, protocol: str = "official",
                   seed_key="") -> MmmuProVerdict:
    """One item's verdict: the official parser's letter equal to the gold letter.

    `options` as parse_options reads them; `seed_key` a stable key of the item (its id) that seeds the fallback's
    guess under `official`; under `strict` a fallback is wrong."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown MMMU-Pro protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    letters, index2ans = index_to_answer(parse_options(options))
    if not letters:
        raise ValueError(f"MMMU-Pro item {seed_key!r} has no options")
    letter, fell_back = parse_multi_choice_response(response, letters, index2ans, item_rng(seed_key))
    if fell_back and protocol == "strict":
        return MmmuProVerdict("", True, False)
    return MmmuProVerdict(letter, fell_back, letter == answer_letter)


@dataclass(frozen=True)
class MmmuProSummary:
    items: int
    correct: int
    fallbacks: int  # items where the parser found nothing
    fallbacks_correct: int  # of those, the ones a random guess got right (0 under strict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.items if self.items else 0.0


def summarise(verdicts: Iterable[MmmuProVerdict]) -> MmmuProSummary:
    """Accuracy over items, with the fallbacks counted: how many verdicts rest on a guess, and how many guesses won."""
    items = correct = fallbacks = fallbacks_correct = 0
    for verdict in verdicts:
        items += 1
        correct += verdict.correct
        fallbacks += verdict.fell_back
        fallbacks_correct += verdict.fell_back and verdict.correct
    return MmmuProSummary(items, correct, fallbacks, fallbacks_correct)
