"""Loaders that map the paper's real training sources on the Hugging Face hub to the problem schema.

Each source is a pure mapping function `map_<source>(record, idx, split) -> list[problem]` (one hub row may
hold several questions) plus a loader in `SOURCES` that runs it over `datasets.load_dataset(...)`. Problems
that fail `validate_problem` are skipped, counted and their ids logged. A loader's `limit` counts problems,
not rows: rows are mapped in chunks until that many valid problems are in hand. With `hub_root` set, the
data sets are read from `<hub_root>/<owner>/<name>` (a mirror or a pre-download) instead of the hub. The
hub is never reached in tests: they read the stand-in that `ovlt.rehearsal.local_hub.write_hub` lays out.

Column names, checked against the sources (2026-11):
- ydeng9/sft_seed (split train): problem, answer, decoded_image (PIL), image (a path/URL string), source;
  read that way by OpenVLThinker's generation/generate_reasoning_thinker.py.
- ydeng9/medium_grpo_only, ydeng9/OpenVLThinker-grpo-hard: problem, answer, images (a list); the keys
  OpenVLThinker's EasyR1 config reads (prompt_key problem, answer_key answer, image_key images).
- hiyouga/geometry3k (train/validation/test): images (list), problem, answer, id, choices, ground_truth
  (dataset card).
- lmms-lab/VizWiz-VQA (val/test): question_id, image, question, answers (10 crowd answers), category
  (dataset card).
- HuggingFaceM4/the_cauldron, configs figureqa / tabmwp / ai2d (train only): images (list), texts = list of
  {user, assistant, source} (dataset card; ai2d: 2,445 rows, one diagram with its questions each). AI2D is
  taken from here, not from lmms-lab/ai2d: that copy (question, options, answer as an option index, image)
  is AI2D's 3,088-question test split, a benchmark to keep out of training.
- lmms-lab/LLaVA-OneVision-Data, configs "<Name>(MathV360K)": id, image, conversations = list of
  {from, value}, data_source (dataset card). GEOS has no hub copy of its own: `geos` is "GEOS(MathV360K)"
  (train, 498 rows), the subset MathV360K built from GEOS.
"""

import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets

from ovlt.ground.schema import (
    OPTION_LETTER,
    PROBLEM_FEATURES,
    option_letter,
    option_letters,
    validate_problem,
)
from ovlt.ground.sources import MATHV360K_SUBSETS, slug

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------
# text helpers shared by every source

_CHOICES_MARKER = re.compile(r"\b(?:Choices|Options)\s*:\s*", re.IGNORECASE)
_OPTION_LINE = re.compile(rf"^\s*\(?({OPTION_LETTER})\s*[.):]\s*(.+?)\s*$")
_OPTION_INLINE = re.compile(rf"(?:^|\s)\(?({OPTION_LETTER})[.)]\s+")
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:：]?\s*", re.IGNORECASE)


def _options_from_lines(lines: list[str]) -> list[str]:
    """Options on consecutive lines "A. x" / "(A) x", lettered A, B, C ... in order."""
    options = []
    for line in lines:
        match = _OPTION_LINE.match(line)
        if not match or match.group(1) != option_letter(len(options)):
            break
        options.append(match.group(2))
    return options


def parse_choices(text: str) -> tuple[str, list[str]]:
    """Split a question into (stem, options), reading "Choices: A. x B. y", one option per line, or "(A) x" lines.

    Text after the options (e.g. "Answer with the option's letter") is dropped: every stage adds its own
    instruction. Returns (text, []) when no lettered options A, B, ... are found.
    """
    text = text.replace("<image>", "").strip()
    marker = _CHOICES_MARKER.search(text)
    if marker:
        stem, rest = text[: marker.start()], text[marker.end():]
        options = _options_from_lines(rest.split("\n"))
        if len(options) < 2:  # all on one line: "A. 8 B. 10 C. 12"
            parts = _OPTION_INLINE.split(rest.split("\n")[0])[1:]
            letters, texts = parts[0::2], [t.strip() for t in parts[1::2]]
            options = texts if letters == [option_letter(i) for i in range(len(letters))] else []
        return (stem.strip(), options) if len(options) >= 2 else (text, [])
    lines = text.split("\n")
    for i in range(len(lines)):
        options = _options_from_lines(lines[i:])
        if len(options) >= 2:
            return "\n".join(lines[:i]).strip(), options
    return text, []


def final_answer(text: str) -> str:
    """The answer in a reference response: after its last "Answer:", without "The answer is" or a final period."""
    text = text.strip()
    if re.search(r"answer\s*:", text, re.IGNORECASE):
        text = re.split(r"answer\s*:", text, flags=re.IGNORECASE)[-1]
    text = _ANSWER_PREFIX.sub("", text.strip())
    return text.strip().removesuffix(".").strip()


def infer_answer_type(answer: str) -> tuple[str, int]:
    """(answer_type, precision) for a free-form answer."""
    answer = answer.strip()
    if re.fullmatch(r"[-+]?\d+", answer):
        return "integer", -1
    if re.fullmatch(r"[-+]?\d*\.\d+", answer):
        return "float", len(answer.split(".")[1])
    if re.fullmatch(r"\[.*\]", answer) or re.fullmatch(r"[-+\d.]+(\s*,\s*[-+\d.]+)+", answer):
        return "list", -1
    if re.search(r"\\|\^|_\{|\{|\}|\bsqrt\b|\bpi\b", answer):
        return "latex", -1
    return "text", -1


def make_problem(problem_id: str, image, question: str, answer: str, source: str, split: str) -> dict:
    """A schema record from a raw question (options inside it are parsed out) and a raw answer.

    A multiple choice answer given as a letter ("B", "(B)", "B.") becomes the option text, as MathVista does.
    """
    stem, choices = parse_choices(question)
    answer = (answer or "").strip()
    if choices:
        letter = answer.strip("().").upper()
        if len(letter) == 1 and letter in option_letters(len(choices)):
            answer = choices[option_letters(len(choices)).index(letter)]
        else:  # given as text: take the option's own spelling
            answer = next((c for c in choices if c.lower() == answer.lower()), answer)
        answer_type, precision = "multiple_choice", -1
    else:
        answer_type, precision = infer_answer_type(answer)
    return {"id": problem_id, "image": image, "question": stem, "choices": choices, "answer": answer,
            "answer_type": answer_type, "precision": precision, "source": source, "split": split,
            "difficulty": -1, "scene": ""}


def _first(images):
    return images[0] if images else None


# ----------------------------------------------------------------------------------------------------------
# one mapping per source: hub row -> problems


def map_sft_seed(record: dict, idx: int, split: str = "train") -> list[dict]:
    source = slug(record.get("source") or "sft_seed")
    return [make_problem(f"sft_seed-{source}-{idx:07d}", record["decoded_image"], record["problem"],
                         record["answer"], source, split)]


def map_grpo_set(record: dict, idx: int, split: str = "train", name: str = "grpo") -> list[dict]:
    return [make_problem(f"{name}-{idx:07d}", _first(record["images"]), record["problem"], record["answer"],
                         name, split)]


def map_geometry3k(record: dict, idx: int, split: str = "train") -> list[dict]:
    question, choices = record["problem"], record.get("choices") or []
    if choices and not parse_choices(question)[1]:  # options live in their own column here
        question += "\nChoices:\n" + "\n".join(f"{option_letter(i)}. {c}" for i, c in enumerate(choices))
    answer = record.get("ground_truth") or record["answer"]
    return [make_problem(f"geometry3k-{record.get('id', idx)}", _first(record["images"]), question, answer,
                         "geometry3k", split)]


def map_vizwiz(record: dict, idx: int, split: str = "train") -> list[dict]:
    # ten crowd answers; the gold answer is the most common (ties: the first given), as VQA scoring implies
    answers = [a.strip() for a in record.get("answers") or [] if a and a.strip()]
    answer = Counter(answers).most_common(1)[0][0] if answers else ""
    question_id = slug(str(record.get("question_id") or idx))
    return [make_problem(f"vizwiz-{question_id}", record["image"], record["question"], answer, "vizwiz", split)]


# HuggingFaceM4's preparation scripts write multiple choice turns as "Question: ...\nChoices:\nA. ...\nAnswer
# with the letter." (seen in their MMMU script, not on an ai2d row); the label is not part of the question.
_QUESTION_LABEL = re.compile(r"^\s*(?:<image>\s*)?Question\s*:\s*", re.IGNORECASE)


def _map_cauldron(record: dict, idx: int, split: str, source: str) -> list[dict]:
    image = _first(record["images"])
    return [make_problem(f"{source}-{idx:07d}-{turn}", image, _QUESTION_LABEL.sub("", text["user"]),
                         final_answer(text["assistant"]), source, split)
            for turn, text in enumerate(record["texts"])]


def map_cauldron_figureqa(record: dict, idx: int, split: str = "train") -> list[dict]:
    return _map_cauldron(record, idx, split, "figureqa")


def map_cauldron_tabmwp(record: dict, idx: int, split: str = "train") -> list[dict]:
    return _map_cauldron(record, idx, split, "tabmwp")


def map_cauldron_ai2d(record: dict, idx: int, split: str = "train") -> list[dict]:
    return _map_cauldron(record, idx, split, "ai2d")


def map_mathv360k(record: dict, idx: int, split: str = "train", name: str = "mathv360k") -> list[dict]:
    turns = record["conversations"]
    questions = [t["value"] for t in turns if t["from"] == "human"]
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    return [make_problem(f"{name}-{idx:07d}-{turn}", record["image"], question, final_answer(answer), name, split)
            for turn, (question, answer) in enumerate(zip(questions, answers, strict=False))]


# ----------------------------------------------------------------------------------------------------------
# loaders


# the first pass maps this many rows (or `limit`, if smaller) to learn how many problems a row yields
PROBE_ROWS = 64


def convert(rows: datasets.Dataset, mapper: Callable, split: str, where: str,
            limit: int | None = None) -> tuple[datasets.Dataset, list[str]]:
    """Map hub rows to problems, keeping the valid ones; returns (problems, ids of skipped problems).

    `limit` counts problems: rows are mapped in chunks, each sized from the problems per row seen so far,
    until `limit` valid problems are in hand (a row may hold several questions, and some are invalid), and
    exactly the first `limit` are returned; fewer only when the rows run out.
    """
    skipped = []

    def map_batch(batch: dict, indices: list[int], offset: int) -> dict:
        out = {key: [] for key in PROBLEM_FEATURES}
        for position, idx in enumerate(indices):
            row = {key: values[position] for key, values in batch.items()}
            for problem in mapper(row, offset + idx, split):
                try:
                    validate_problem(problem, f"{where} row {offset + idx}")
                except ValueError as error:
                    skipped.append(problem["id"])
                    log.debug("skipping %s", error)
                    continue
                for key in PROBLEM_FEATURES:
                    out[key].append(problem[key])
        return out

    parts, kept, done = [], 0, 0
    while done < len(rows) and (limit is None or kept < limit):
        if limit is None:
            take = len(rows)
        elif not done:
            take = min(limit, PROBE_ROWS)
        else:  # rows for the problems still missing at the yield so far, 10% over so that a tail pass is rare
            take = math.ceil((limit - kept) * done / max(kept, 1) * 1.1)
        chunk = rows.select(range(done, min(done + take, len(rows))))
        part = chunk.map(map_batch, batched=True, batch_size=64, with_indices=True, fn_kwargs={"offset": done},
                         remove_columns=rows.column_names, features=PROBLEM_FEATURES, load_from_cache_file=False,
                         desc=f"mapping {where}")
        parts.append(part)
        kept += len(part)
        done += len(chunk)
    problems = datasets.concatenate_datasets(parts) if parts else datasets.Dataset.from_list([], features=PROBLEM_FEATURES)
    if limit is not None and len(problems) > limit:
        problems = problems.select(range(limit))
    log.info("%s: %d problems kept from %d of %d rows, %d skipped as invalid", where, len(problems), done, len(rows),
             len(skipped))
    if skipped:
        log.warning("%s: skipped ids (first 20): %s", where, skipped[:20])
    return problems, skipped


def hub_path(hub_id: str, hub_root: str | Path | None) -> str:
    """What `datasets.load_dataset` reads for a hub data set: its id, or `<hub_root>/<hub_id>` when a local
    root holding hub repositories (a mirror or a pre-download) is configured."""
    if hub_root is None:
        return hub_id
    path = (Path(hub_root) / hub_id).absolute()  # a relative root is relative to the working directory
    if not path.is_dir():
        raise FileNotFoundError(f"hub data set {hub_id!r}: no folder {path} (data.hub_root is {str(hub_root)!r}; "
                                f"it must hold each hub repository as <hub_root>/<owner>/<name>)")
    return str(path)


def _loader(hub_id: str, mapper: Callable, config: str | None = None, hub_splits: dict | None = None):
    """A loader(split, limit, hub_root) for one hub data set; hub_splits maps our split names to the hub's."""

    def load(split: str = "train", limit: int | None = None, hub_root: str | Path | None = None) -> datasets.Dataset:
        hub_split = (hub_splits or {}).get(split, split)
        rows = datasets.load_dataset(hub_path(hub_id, hub_root), config, split=hub_split)
        return convert(rows, mapper, split, f"{hub_id}{f'/{config}' if config else ''}[{hub_split}]", limit)[0]

    return load


def _mathv360k(subset: str, name: str):
    return _loader("lmms-lab/LLaVA-OneVision-Data", lambda row, idx, split: map_mathv360k(row, idx, split, name),
                   config=f"{subset}(MathV360K)")


SOURCES: dict[str, Callable[..., datasets.Dataset]] = {
    "sft_seed": _loader("ydeng9/sft_seed", map_sft_seed),
    "grpo_medium": _loader("ydeng9/medium_grpo_only",
                           lambda row, idx, split: map_grpo_set(row, idx, split, "grpo_medium")),
    "grpo_hard": _loader("ydeng9/OpenVLThinker-grpo-hard",
                         lambda row, idx, split: map_grpo_set(row, idx, split, "grpo_hard")),
    "geometry3k": _loader("hiyouga/geometry3k", map_geometry3k),
    "vizwiz": _loader("lmms-lab/VizWiz-VQA", map_vizwiz, hub_splits={"train": "val"}),
    "figureqa": _loader("HuggingFaceM4/the_cauldron", map_cauldron_figureqa, config="figureqa"),
    "tabmwp": _loader("HuggingFaceM4/the_cauldron", map_cauldron_tabmwp, config="tabmwp"),
    "ai2d": _loader("HuggingFaceM4/the_cauldron", map_cauldron_ai2d, config="ai2d"),
    "geos": _mathv360k("GEOS", "geos"),
    **{f"mathv360k_{slug(subset)}": _mathv360k(subset, f"mathv360k_{slug(subset)}") for subset in MATHV360K_SUBSETS},
}


def load_source(name: str, split: str = "train", limit: int | None = None,
                hub_root: str | Path | None = None) -> datasets.Dataset:
    """The first `limit` problems (all if None) of one hub source (see SOURCES) in the shared schema, read
    from the hub or, with `hub_root`, from `<hub_root>/<owner>/<name>`."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](split=split, limit=limit, hub_root=hub_root)
