"""Benchmarks: small declarative definitions (source, split, prompt, protocol, breakdowns) and one scoring loop.

A benchmark is a `BenchmarkSpec` in `BENCHMARKS`, in the spirit of lmms-eval's task files. Each reads the hub
(`load_hub`) or the authors' own local files plus an image folder (`load_local`):
  mathvista_testmini   AI4Math/MathVista testmini; data/testmini.json (a dict keyed by pid); prompt = `query`
  mathverse_testmini   AI4Math/MathVerse testmini; testmini.json (a list, five problem versions); prompt = `query_cot`
  mathvision_test      MathLLMs/MathVision test; data/test.jsonl; options rendered as lettered choices
  mathvision_testmini  the same, testmini.jsonl
  synthetic            the data generator's held-out set, a `datasets.save_to_disk` folder (problem schema)
  mmmu_pro_standard4, mmmu_pro_standard10, mmmu_pro_vision
                       MMMU/MMMU_Pro test, configs "standard (4 options)", "standard (10 options)", "vision"; the
                       standard items' images in the order the question names them (`<image N>`), as MMMU-Pro's
                       own inference does; scored by its parser (`ovlt.scoring.mmmu_pro`)
  emma_math, emma_physics, emma_chemistry, emma_coding
                       luckychao/EMMA test, one config each; every image of an item (up to 5) except for Math,
                       where the authors' harness feeds `image_1` only and so does ovlt; scored by EMMA's rules
                       (`ovlt.scoring.emma`)
  hallusionbench       lmms-lab/HallusionBench, split `image` (the questions with a figure); gold "1" is Yes;
                       scored yes/no as the authors do, with the benchmark's question-pair, figure and all-question
                       accuracies beside it (`ovlt.scoring.hallusionbench`)
Records are dicts: id, question, choices, answer (option TEXT for multiple choice), answer_type, precision, image
(a path, a PIL image or None; the first of `images` where an item has several), prompt (the benchmark's plain
prompt) and meta (the breakdown fields, and what a benchmark's own scorer reads).
`build_prompt(spec, record, style)` gives the prompt of a style: the benchmark's plain prompt, the paper's think/answer
prompt, or the authors' harness's (`PROMPT_STYLES`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovlt.ground.schema import OPTION_LETTER, OPTION_LETTERS, format_question, option_letters
from ovlt.scoring import chains, emma, hallusionbench, matching, mmmu_pro

log = logging.getLogger(__name__)

MATHVISION_INSTRUCTION = (
    "Please solve the problem step by step and put your answer in one \"\\boxed{}\". "
    "If it is a multiple choice question, only one letter is allowed in the \"\\boxed{}\"."
)
# The authors' harness (OpenVLThinker evaluation/eval_qwen.py) appends this to every benchmark's instruction, and
# states MathVision problems under these hints.
AUTHORS_INSTRUCTION = (
    " You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
AUTHORS_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, E, at the end.",
    "free_form": "Hint: Please answer the question requiring an answer.",
    "yes_no": "Hint: Please answer the question requiring an answer of yes or no.",
    "in_image": "Hint: Please answer the question shown in the image. Provide the correct option letter, e.g., A, B, C, "
                "D, E, at the end.",
}
MATHVISTA_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
               "e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
              "the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and provide "
              "the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
            "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def _letter_index(answer: str) -> int:
    """The index of the option an answer's first character names as a letter ("B" -> 1), else -1."""
    return OPTION_LETTERS.find(answer[:1]) if answer[:1] else -1


def _image(value, image_dir: Path | None):
    """A hub row carries a PIL image (or a dict of bytes); a local file names a path under the image folder."""
    if isinstance(value, str):
        return str(image_dir / value) if image_dir is not None else value
    return value


def _with_choices(question: str, choices: list[str]) -> str:
    return format_question({"question": question, "choices": choices})


# ---------------------------------------------------------------------------------------------------------------
# per-benchmark record builders (hub rows and local entries share field names)


def _mathvista_record(row: dict, image_dir: Path | None) -> dict:
    question_type, source_type = row["question_type"], row["answer_type"]
    choices = list(row.get("choices") or [])
    precision = row.get("precision")
    precision = -1 if precision is None else int(precision)
    answer_type = "multiple_choice" if question_type == "multi_choice" else source_type
    if "query" in row and row["query"]:
        prompt = row["query"]
    else:  # the local annotation file has no `query`: rebuild it the way MathVista's build_query does (zero-shot)
        hint_key = "multi_choice" if question_type == "multi_choice" else (
            f"float{precision}" if source_type == "float" else source_type)
        question = f"Question: {row['question']}" + (f" (Unit: {row['unit']})" if row.get("unit") else "")
        options = ["Choices:"] + [f"({letter}) {c}" for letter, c in zip(option_letters(len(choices)), choices,
                                                                            strict=True)] if choices else []
        prompt = "\n".join([MATHVISTA_HINTS.get(hint_key, MATHVISTA_HINTS["integer"]), question, *options])
    meta = dict(row.get("metadata") or {})
    meta.update(question_type=question_type, answer_type=source_type)
    return dict(id=str(row["pid"]), question=row["question"], choices=choices, answer=str(row["answer"]),
                answer_type=answer_type, precision=precision, prompt=prompt, meta=meta,
                image=_image(row.get("decoded_image") or row.get("image"), image_dir))


_CHOICES_BLOCK = re.compile(r"\n\s*Choices:\s*\n(?P<block>.*)$", re.DOTALL | re.IGNORECASE)
_CHOICE_LINE = re.compile(rf"^\s*\(?({OPTION_LETTER})\)?\s*[:.)]\s*(.*?)\s*$")


def _mathverse_choices(question: str) -> list[str]:
    """MathVerse keeps options in the question text: 'Choices:\\nA:145°\\nB:155°'."""
    m = _CHOICES_BLOCK.search(question or "")
    if not m:
        return []
    texts = [cm.group(2) for line in m.group("block").splitlines() if (cm := _CHOICE_LINE.match(line))]
    return texts


def _mathverse_record(row: dict, image_dir: Path | None) -> dict:
    multiple_choice = row["question_type"] == "multi-choice"
    answer = str(row["answer"]).strip()
    choices, answer_type = [], "latex"
    if multiple_choice:
        # Vision-only items show their options only in the image: the letters themselves are the options.
        choices = _mathverse_choices(row["question"]) or list(option_letters(5))
        letter_index = _letter_index(answer)
        answer = choices[letter_index] if 0 <= letter_index < len(choices) else answer
        answer_type = "multiple_choice"
    meta = dict(row.get("metadata") or {})
    meta["problem_version"] = row["problem_version"]
    return dict(id=str(row["sample_index"]), question=row["question"], choices=choices, answer=answer,
                answer_type=answer_type, precision=-1, prompt=row["query_cot"], meta=meta,
                image=_image(row.get("image"), image_dir))


def _mathvision_record(row: dict, image_dir: Path | None) -> dict:
    choices = [str(c) for c in row.get("options") or []]
    answer, answer_type = str(row["answer"]).strip(), "latex"
    if choices:
        index = _letter_index(answer)
        if not (len(answer) == 1 and 0 <= index < len(choices)):
            raise ValueError(f"MathVision item {row['id']}: answer {answer!r} is not an option letter")
        answer, answer_type = choices[index], "multiple_choice"
    question = _with_choices(row["question"], choices)
    return dict(id=str(row["id"]), question=row["question"], choices=choices, answer=answer,
                answer_type=answer_type, precision=-1, prompt=f"{MATHVISION_INSTRUCTION}\n{question}",
                meta={"subject": row["subject"], "level": row["level"]},
                image=_image(row.get("decoded_image") or row.get("image"), image_dir))


def _synthetic_record(row: dict, image_dir: Path | None) -> dict:
    from ovlt.ground.procedural import (
        kind_key,  # here: the other benchmarks' readers need none of ovlt.ground.procedural
    )

    return dict(id=row["id"], question=row["question"], choices=list(row["choices"]), answer=row["answer"],
                answer_type=row["answer_type"], precision=row["precision"],
                prompt=_with_choices(row["question"], list(row["choices"])), image=row["image"],
                meta={"source": row["source"], "kind": kind_key(row), "difficulty": row["difficulty"]})


# MMMU-Pro's own chain-of-thought instructions (mmmu-pro/prompts.yaml, `cot`), and how its inference renders a
# standard item: the question, then "A. option" lines, then the instruction, with each `<image N>` as "[image]".
MMMU_PRO_INSTRUCTIONS = {
    "standard": "Answer the preceding multiple choice question. The last line of your response should be of the "
                "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. Think step by "
                "step before answering.",
    "vision": "Write out the multiple-choice question in the image and then solve it. The last line of your response "
              "should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. "
              "Think step by step before answering.",
}
_IMAGE_TAG = re.compile(r"<image\s+(\d+)>")


def _gold_option(benchmark: str, item, answer, choices: list[str]) -> str:
    letter = str(answer).strip()
    index = _letter_index(letter)
    if not (len(letter) == 1 and 0 <= index < len(choices)):
        raise ValueError(f"{benchmark} item {item}: answer {answer!r} is not one of its option letters "
                         f"{option_letters(len(choices))}")
    return choices[index]


def _mmmu_pro_record(row: dict, image_dir: Path | None, setting: str) -> dict:
    choices = [str(c) for c in mmmu_pro.parse_options(row["options"])]
    try:
        answer = _gold_option("MMMU-Pro", row["id"], row["answer"], choices)
    except ValueError as err:
        # The published test set holds such items (validation_Accounting_29: its options nested in one list); its
        # parser scores them wrong whatever the response, and so does every protocol here.
        log.warning("%s: kept, unanswerable", err)
        answer = str(row["answer"]).strip()
    question = str(row.get("question") or "")
    if setting == "vision":  # the question and its options are in the screenshot
        images, prompt, question = [row.get("image")], MMMU_PRO_INSTRUCTIONS["vision"], ""
    else:
        lines = "\n".join(f"{letter}. {text}" for letter, text in zip(option_letters(len(choices)), choices,
                                                                       strict=True))
        text = f"{question}\n{lines}"
        images = [row.get(f"image_{n}") for n in map(int, _IMAGE_TAG.findall(text))]
        prompt = f"{_IMAGE_TAG.sub('[image]', text)}\n{MMMU_PRO_INSTRUCTIONS['standard']}"
    images = [_image(i, image_dir) for i in images if i is not None]
    meta = {"subject": row.get("subject"), "topic_difficulty": row.get("topic_difficulty"),
            "answer_letter": str(row["answer"]).strip(), "setting": setting}
    return dict(id=str(row["id"]), question=question, choices=choices, answer=answer, answer_type="multiple_choice",
                precision=-1, prompt=prompt, meta=meta, image=images[0] if images else None, images=images)


# EMMA's own prompt (configs/gpt.yaml as YAML reads it, with its CoT instruction; data_utils.build_query)
EMMA_MULTIPLE_CHOICE = ("{context}\n{question}\n{options}\nAnswer with the option's letter from the given choices and "
                        "put the letter in one \"\\boxed{{}}\". Please solve the problem step by step.")
EMMA_OPEN = ("{context}\n{question}\nAnswer the question using a single word or phrase and put the answer in one "
             "\"\\boxed{{}}\". Please solve the problem step by step.")


def _emma_record(row: dict, image_dir: Path | None, subject: str) -> dict:
    multiple_choice = str(row["type"]).lower() == "multiple choice"
    options = row.get("options") or []
    options = mmmu_pro.parse_options(options) if isinstance(options, str) else options  # EMMA's results: a string
    choices = [str(c) for c in options] if multiple_choice else []
    # EMMA reads a letter in either case (build_query: answer.upper()); a few items give it lower-case
    answer = (_gold_option("EMMA", row["pid"], str(row["answer"]).upper(), choices) if multiple_choice
              else str(row["answer"]))
    options = "".join(f"{letter}: {text}\n" for letter, text in zip(option_letters(len(choices)), choices,
                                                                     strict=True))
    context = row.get("context") or ""
    prompt = (EMMA_MULTIPLE_CHOICE.format(context=context, question=row["question"], options=options)
              if multiple_choice else EMMA_OPEN.format(context=context, question=row["question"]))
    fields = ["image_1"] if subject == "Math" else [f"image_{n}" for n in range(1, 6)]
    images = [_image(row.get(f), image_dir) for f in fields if row.get(f) is not None]
    meta = {"subject": subject, "category": row.get("category"), "task": row.get("task"), "type": row["type"],
            "gold": str(row["answer"]), "context": context}
    return dict(id=str(row["pid"]), question=row["question"], choices=choices, answer=answer,
                answer_type="multiple_choice" if multiple_choice else "text", precision=-1, prompt=prompt,
                meta=meta, image=images[0] if images else None, images=images)


def _hallusionbench_record(row: dict, image_dir: Path | None) -> dict:
    grouping = {field: str(row[field]) for field in hallusionbench.GROUPING_FIELDS}
    return dict(id="_".join(grouping[f] for f in ("category", "subcategory", "set_id", "figure_id", "question_id")),
                question=row["question"], choices=[], answer=hallusionbench.gold_word(row["gt_answer"]),
                answer_type="text", precision=-1, prompt=row["question"], meta=grouping,
                image=_image(row.get("image") or row.get("filename"), image_dir))


# ---------------------------------------------------------------------------------------------------------------
# reading the authors' files


def read_jsonl(path: Path) -> list[tuple[str, object]]:
    """(where, value) per non-blank line of a JSON-lines file; bad UTF-8 or bad JSON is an error naming the line."""
    rows = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{where}: not UTF-8 text (byte {err.start}: {raw[err.start:err.start + 1]!r})") from None
            if line.strip():
                try:
                    rows.append((where, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
    return rows


def read_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) pairs from a .json (list or dict of entries) or .jsonl file; `where` names file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    entries = data.items() if isinstance(data, dict) else enumerate(data)
    return [(f"{path} entry {key}", row) for key, row in entries]


def _check_fields(where: str, row, required: tuple[str, ...], benchmark: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    missing = [k for k in required if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}; is this a {benchmark} annotation file?")


# ---------------------------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    hub_id: str  # "" when there is no hub copy
    hub_config: str | None
    hub_split: str
    required_fields: tuple[str, ...]
    to_record: Callable[[dict, Path | None], dict]
    official_protocol: str
    breakdown_keys: tuple[str, ...]
    strict_protocol: str = "strict"  # MMMU-Pro's: its own parser, a guess scored wrong

    def protocol(self, protocol: str) -> str:
        """Map "official" to this benchmark's published rules, "strict" to its strict rules; other names go through
        unchanged."""
        protocol = {"official": self.official_protocol, "strict": self.strict_protocol}.get(protocol, protocol)
        return protocol if protocol in OWN_PROTOCOLS else matching.resolve_protocol(protocol)


def _mmmu_pro_verdict(protocol: str):
    def verdict(record: dict, response: str) -> matching.Verdict:
        found = mmmu_pro.score_mmmu_pro(response, record["meta"]["answer_letter"], record["choices"], protocol,
                                        seed_key=record["id"])
        return matching.Verdict(found.extracted, "guess" if found.fell_back else "mmmu_pro", found.correct)

    return verdict


def _emma_verdict(record: dict, response: str) -> matching.Verdict:
    found = emma.score_emma(response, {"answer": record["meta"]["gold"], "gt_content": record["answer"]})
    return matching.Verdict(found.extracted or "", "emma", found.correct)


def _hallusionbench_verdict(record: dict, response: str) -> matching.Verdict:
    found = hallusionbench.yes_no_verdict(response, "1" if record["answer"] == hallusionbench.YES else "0")
    return matching.Verdict(found.extracted, "yes_no", found.correct)


# Rules a benchmark owns (its official parser, ported), each a verdict on one record's response
OWN_PROTOCOLS: dict[str, Callable[[dict, str], matching.Verdict]] = {
    "mmmu_pro": _mmmu_pro_verdict("official"), "mmmu_pro_strict": _mmmu_pro_verdict("strict"),
    "emma": _emma_verdict, "hallusionbench": _hallusionbench_verdict,
}
MMMU_PRO_FIELDS = ("id", "options", "answer")
EMMA_FIELDS = ("pid", "question", "options", "answer", "type")

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec("mathvista_testmini", "AI4Math/MathVista", None, "testmini",
                      ("pid", "question", "choices", "answer", "question_type", "answer_type", "precision"),
                      _mathvista_record, "mathvista", ("question_type", "answer_type")),
        BenchmarkSpec("mathverse_testmini", "AI4Math/MathVerse", "testmini", "testmini",
                      ("sample_index", "problem_version", "question", "answer", "question_type", "query_cot"),
                      _mathverse_record, "strict", ("problem_version",)),
        BenchmarkSpec("mathvision_test", "MathLLMs/MathVision", None, "test",
                      ("id", "question", "options", "answer", "subject", "level"),
                      _mathvision_record, "mathvision", ("subject", "level")),
        BenchmarkSpec("mathvision_testmini", "MathLLMs/MathVision", None, "testmini",
                      ("id", "question", "options", "answer", "subject", "level"),
                      _mathvision_record, "mathvision", ("subject", "level")),
        BenchmarkSpec("synthetic", "", None, "test",
                      ("id", "question", "choices", "answer", "answer_type", "precision", "source", "difficulty",
                       "scene"),
                      _synthetic_record, "strict", ("source", "kind", "difficulty")),
        *(BenchmarkSpec(f"mmmu_pro_{name}", "MMMU/MMMU_Pro", config, "test",
                        MMMU_PRO_FIELDS + (("question",) if name != "vision" else ()),
                        functools.partial(_mmmu_pro_record, setting="vision" if name == "vision" else "standard"),
                        "mmmu_pro", ("subject", "topic_difficulty"), strict_protocol="mmmu_pro_strict")
          for name, config in (("standard4", "standard (4 options)"), ("standard10", "standard (10 options)"),
                               ("vision", "vision"))),
        *(BenchmarkSpec(f"emma_{subject.lower()}", "luckychao/EMMA", subject, "test", EMMA_FIELDS,
                        functools.partial(_emma_record, subject=subject), "emma", ("category", "type"))
          for subject in ("Math", "Physics", "Chemistry", "Coding")),
        BenchmarkSpec("hallusionbench", "lmms-lab/HallusionBench", None, "image",
                      ("question", "gt_answer", *hallusionbench.GROUPING_FIELDS), _hallusionbench_record,
                      "hallusionbench", ("category", "subcategory")),
    ]
}
FAMILIES = {"mathvista": "mathvista_testmini", "mathverse": "mathverse_testmini", "mathvision": "mathvision_test",
            "synthetic": "synthetic", "mmmu_pro": "mmmu_pro_standard10", "emma": "emma_math"}


def get_benchmark(name: str) -> BenchmarkSpec:
    spec = BENCHMARKS.get(FAMILIES.get(name, name))
    if spec is None:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(list(BENCHMARKS) + list(FAMILIES))}")
    return spec


def load_local(spec: BenchmarkSpec | str, annotations: str | Path, image_dir: str | Path | None = None) -> list[dict]:
    """Records from the authors' local annotation file (or, for `synthetic`, a save_to_disk folder)."""
    spec = get_benchmark(spec) if isinstance(spec, str) else spec
    image_dir = Path(image_dir) if image_dir is not None else None
    if spec.name == "synthetic":
        from datasets import load_from_disk

        rows = [(f"{annotations} row {i}", row) for i, row in enumerate(load_from_disk(str(annotations)))]
    else:
        rows = read_rows(Path(annotations))
    records = []
    for where, row in rows:
        _check_fields(where, row, spec.required_fields, spec.name)
        records.append(spec.to_record(row, image_dir))
    seen = set()
    for record in records:
        if record["id"] in seen:
            raise ValueError(f"{annotations}: id {record['id']!r} appears twice")
        seen.add(record["id"])
    log.info("%s: %d records from %s", spec.name, len(records), annotations)
    return records


def load_hub(spec: BenchmarkSpec | str, hub_root: str | Path | None = None) -> list[dict]:
    """Records from the Hugging Face hub copy (needs network or a filled HF cache), or with `hub_root` from
    the local copy of that hub repository at `<hub_root>/<owner>/<name>`."""
    from datasets import load_dataset

    from ovlt.ground.hub import hub_path  # lazy: ovlt.ground.procedural is heavier and optional for scoring

    spec = get_benchmark(spec) if isinstance(spec, str) else spec
    if not spec.hub_id:
        raise ValueError(f"{spec.name} has no hub copy; use load_local")
    path = hub_path(spec.hub_id, hub_root)
    data = load_dataset(path, spec.hub_config, split=spec.hub_split)
    records = []
    for i, row in enumerate(data):
        _check_fields(f"{path} [{spec.hub_split}] row {i}", row, spec.required_fields, spec.name)
        records.append(spec.to_record(dict(row), None))
    return records


PROMPT_STYLES = ("plain", "paper", "authors")


def _authors_instruction(spec: BenchmarkSpec, record: dict) -> str:
    """eval_qwen.py's instruction for the benchmarks it states itself (MathVision, MMMU-Pro, EMMA, HallusionBench): a
    hint, the question, and the options as "(A) text" lines (MMMU-Pro's vision setting: the hint and the options)."""
    options = "\n".join(f"({letter}) {text}" for letter, text in zip(option_letters(len(record["choices"])),
                                                                     record["choices"], strict=True))
    if spec.name == "hallusionbench":
        return f"{AUTHORS_HINTS['yes_no']}\nQuestion: {record['question']}"
    if spec.name == "mmmu_pro_vision":
        return f"{AUTHORS_HINTS['in_image']}\nChoices:\n{options}"
    if not record["choices"]:
        return f"{AUTHORS_HINTS['free_form']}\nQuestion: {record['question']}"
    return f"{AUTHORS_HINTS['multi_choice']}\nQuestion: {record['question']}\nChoices:\n{options}"


# The benchmarks whose prompt the authors' harness states itself (the others: the benchmark's own `query`)
AUTHORS_STATED = ("mathvision", "mmmu_pro", "emma", "hallusionbench")


def build_prompt(spec: BenchmarkSpec | str, record: dict, style: str = "plain") -> str:
    """The prompt of a benchmark record in one of PROMPT_STYLES:
    plain    the benchmark's own prompt (`record["prompt"]`);
    paper    the benchmark's own statement of the problem, then the paper's think/answer instruction: MathVista's
             `query` (its hint, the question with its unit, the choices), MathVerse's question with its choices
             (`query_cot` for vision-only items, whose question is in the image), MMMU-Pro vision's request to
             write out the question in the image; the other benchmarks' question (after EMMA's context) with
             lettered options, as the student sees problems in training (ovlt.scoring.prompts);
    authors  the authors' harness (eval_qwen.py): MathVista `query`, MathVerse `query_cot`, the others' question with
             options under their hint (`_authors_instruction`), then their think-and-box instruction
             (AUTHORS_INSTRUCTION)."""
    spec = get_benchmark(spec) if isinstance(spec, str) else spec
    if style == "plain":
        return record["prompt"]
    if style == "paper":
        from ovlt.scoring.prompts import student_text

        if spec.name == "mathverse_testmini":  # options already live in the question text (or in the image)
            return f"{record['question'] or record['prompt']}\n{chains.REASONING_INSTRUCTION}"
        if spec.name == "mathvista_testmini":  # `query` states the unit and the answer's form the question omits
            return f"{record['prompt']}\n{chains.REASONING_INSTRUCTION}"
        if spec.name == "mmmu_pro_vision":  # the question and its options are in the image
            return f"{MMMU_PRO_INSTRUCTIONS['vision'].split('.')[0]}.\n{chains.REASONING_INSTRUCTION}"
        if record["meta"].get("context"):  # EMMA's context goes before its question, as in EMMA's own prompt
            return student_text({**record, "question": f"{record['meta']['context']}\n{record['question']}"})
        return student_text(record)
    if style == "authors":
        stated = spec.name.startswith(AUTHORS_STATED)
        return (_authors_instruction(spec, record) if stated else record["prompt"]) + AUTHORS_INSTRUCTION
    raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(PROMPT_STYLES)}")


# ---------------------------------------------------------------------------------------------------------------
# scoring


def tally(rows: list[dict], records: dict[str, dict], key: str) -> dict:
    """Accuracy of scored rows per value of one breakdown field of their records (`meta[key]`)."""
    table = defaultdict(lambda: [0, 0])
    for row in rows:
        value = records[row["id"]]["meta"].get(key)
        table[str(value)][0] += row["correct"]
        table[str(value)][1] += 1
    return {value: {"correct": c, "total": n, "accuracy": c / n} for value, (c, n) in sorted(table.items())}


# What a scored line carries: a model's raw response (extracted, then matched), or an answer already extracted by
# someone's extractor (matched by the protocol's normaliser alone: `matching.score_extraction`).
FIELDS = ("response", "extraction")


def score_responses(spec_name: str, records: list[dict], responses: dict[str, str],
                    protocol: str = "official", field: str = "response") -> tuple[list[dict], dict]:
    """Score one response (or, with field="extraction", one extracted answer) per record. Records without one count
    as wrong and are listed in the summary.

    Returns rows {"id", "extracted", "rule", "correct"} in record order, and a summary with accuracy, the
    breakdowns named by the spec, the protocol actually used and the extraction rules that fired.
    """
    from ovlt.ground.progress import tqdm

    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; known: {', '.join(FIELDS)}")
    spec = get_benchmark(spec_name)
    used = spec.protocol(protocol)
    own = OWN_PROTOCOLS.get(used)
    if own is not None and field != "response":
        raise ValueError(f"{spec.name}'s {used} rules read raw responses: score them with field='response'")
    scorer = matching.score if field == "response" else matching.score_extraction
    by_id = {r["id"]: r for r in records}
    unknown = [i for i in responses if i not in by_id]
    if unknown:
        raise KeyError(f"{len(unknown)} response id(s) not in {spec.name}: {', '.join(map(str, unknown[:10]))}")
    rows, missing = [], []
    for record in tqdm(records, desc=f"score {spec.name}", disable=len(records) < 2000):
        if record["id"] not in responses:
            missing.append(record["id"])
            rows.append({"id": record["id"], "extracted": "", "rule": "missing", "correct": False})
            continue
        response = responses[record["id"]]
        verdict = own(record, response) if own is not None else scorer(
            response, record["answer"], record["answer_type"], record["choices"], record["precision"], used)
        rows.append({"id": record["id"], "extracted": verdict.extracted, "rule": verdict.rule,
                     "correct": verdict.correct})
    correct = sum(r["correct"] for r in rows)
    summary = {
        "benchmark": spec.name, "protocol": used, "field": field, "correct": correct, "total": len(rows),
        "accuracy": correct / len(rows) if rows else 0.0, "missing": missing,
        "breakdowns": {key: tally(rows, by_id, key) for key in spec.breakdown_keys},
        "rules": dict(sorted(Counter(r["rule"] for r in rows).items())),
    }
    if spec.name == "hallusionbench":  # the benchmark's own aggregates, beside plain accuracy
        summary["benchmark_metrics"] = hallusionbench.aggregate(
            [{**by_id[r["id"]]["meta"], "correct": r["correct"]} for r in rows]).as_dict()
    if missing:
        log.warning("%s: %d record(s) had no response and count as wrong", spec.name, len(missing))
    return rows, summary
