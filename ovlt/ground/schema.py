"""The one problem schema every stage shares (docs/ARCHITECTURE.md), its validation, and the question renderer.

A problem is one record of `PROBLEM_FEATURES`. Procedural and hub data both end up in this form, so
everything downstream (captioning, distillation, training, evaluation) reads one shape. The answer types and
the option letters defined here are the ones the scorer (`ovlt.scoring`) reads.
"""

import functools
import re
import string

ANSWER_TYPES = ("multiple_choice", "integer", "float", "text", "list", "latex")
SPLITS = ("train", "test")
# Options are lettered A, B, C, ... in order (at most 26), as `format_question` shows them: "(B) text".
OPTION_LETTERS = string.ascii_uppercase
OPTION_LETTER = f"[{OPTION_LETTERS[0]}-{OPTION_LETTERS[-1]}]"  # one option letter, as a regular expression


@functools.cache
def _problem_features():
    # Built on first use: importing `datasets` takes over a second, and the scorer imports this module (in its
    # math-verify worker process too) for the answer types and option letters only.
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "choices": datasets.List(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "precision": datasets.Value("int32"),
            "source": datasets.Value("string"),
            "split": datasets.Value("string"),
            "difficulty": datasets.Value("int32"),
            "scene": datasets.Value("string"),
        }
    )


def __getattr__(name: str):
    """`PROBLEM_FEATURES`: the problem's fields as `datasets.Features`."""
    if name == "PROBLEM_FEATURES":
        return _problem_features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ids become file names (per-problem artifacts), so only a conservative character set is allowed
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")


def option_letter(i: int) -> str:
    """The letter of the i-th option: 0 -> "A"."""
    if not 0 <= i < len(OPTION_LETTERS):
        raise ValueError(f"option index {i} is outside A-Z (at most 26 options)")
    return OPTION_LETTERS[i]


def option_letters(n: int) -> str:
    """The letters of the first `n` options (of 26 at most): 3 -> "ABC"."""
    return OPTION_LETTERS[:n]


def format_question(problem: dict) -> str:
    """The question text the model sees: the question, then one "(A) text" line per option.

    Every stage renders questions through this function, so prompts at training and evaluation match.
    """
    lines = [problem["question"].strip()]
    lines += [f"({option_letter(i)}) {text}" for i, text in enumerate(problem.get("choices") or [])]
    return "\n".join(lines)


def validate_problem(record: dict, where: str) -> None:
    """Raise ValueError naming `where` (file/row) and the offending key when `record` breaks the schema."""

    def fail(key: str, why: str):
        raise ValueError(f"{where}: key {key!r}: {why}")

    for key in _problem_features():
        if key not in record:
            fail(key, "missing")

    problem_id = record["id"]
    if not isinstance(problem_id, str) or not _ID_PATTERN.fullmatch(problem_id) or ".." in problem_id:
        fail("id", f"{problem_id!r} must be non-empty, use only [A-Za-z0-9_.:-] and contain no '..'")
    if record["image"] is None:
        fail("image", "missing image")
    if not isinstance(record["question"], str) or not record["question"].strip():
        fail("question", "empty question")

    answer, answer_type, choices = record["answer"], record["answer_type"], record["choices"] or []
    if not isinstance(answer, str) or not answer.strip():
        fail("answer", f"missing or empty answer {answer!r}")
    if answer_type not in ANSWER_TYPES:
        fail("answer_type", f"unknown answer type {answer_type!r}; known: {', '.join(ANSWER_TYPES)}")
    if answer_type == "multiple_choice":
        if len(choices) < 2:
            fail("choices", f"multiple_choice needs at least 2 choices, got {choices!r}")
        if answer not in choices:
            fail("answer", f"multiple_choice answer {answer!r} is not among choices {choices!r}")
        option_letter(len(choices) - 1)
    elif choices:
        fail("choices", f"choices are only allowed for multiple_choice, not {answer_type!r}")
    if answer_type == "float" and (record["precision"] is None or record["precision"] < 0):
        fail("precision", "a float answer needs precision >= 0 (decimals)")
    if record["split"] not in SPLITS:
        fail("split", f"unknown split {record['split']!r}; known: {', '.join(SPLITS)}")


def check_unique_ids(ids, where: str) -> None:
    """Ids name files and join stages: a duplicate is an error naming the data set and the ids."""
    seen, duplicates = set(), []
    for problem_id in ids:
        if problem_id in seen:
            duplicates.append(problem_id)
        seen.add(problem_id)
    if duplicates:
        raise ValueError(f"{where}: {len(duplicates)} duplicate id(s), e.g. {sorted(set(duplicates))[:5]}")
