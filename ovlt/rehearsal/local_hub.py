"""A local stand-in of the paper's hub data sets, for a paper-scale rehearsal that runs offline on a CPU.

`write_hub(root, seed)` lays out `<root>/<owner>/<name>` folders shaped like the hub repositories that the real
loaders read (`ovlt.ground.hub.SOURCES`, `ovlt.scoring.benchmarks.BENCHMARKS`): the same repository ids, configs, split
names, column names and types (`datasets.Image` columns), parquet files named like the hub's, and a README.md
whose YAML holds a `dataset_info` block and, where the real repository has one, a `configs:` block. With
`data.hub_root: <root>` the loaders read it through `datasets.load_dataset(<root>/<owner>/<name>, config,
split=...)`, exactly as they read a mirror of the hub.

Content: small drawn pictures (bar charts, shapes to count, price tables, triangles, food chains) whose
questions' gold answers follow from the drawing (multiple choice, yes/no, integers, floats, lists), and three
4000x3000 VizWiz photos (JPEG): multi-megapixel images are what break image token budgets. Row counts are the
real ones scaled to about 1/100 (FigureQA capped), so the small sources stay small: a 150-problem pool spread
equally over the six training sources asks 25 of GEOS, which has 5.

The authors' further benchmarks hold a handful of items per config, in their quirks: MMMU-Pro's options as the text
of a Python list, items naming two images in reverse order, the vision config's screenshot of question and options;
EMMA's open-ended items (options None) and items of two to five images; HallusionBench's yes/no questions asked of
an original and an edited figure, and (split non_image) of none.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import random
import re
from pathlib import Path

import datasets
from datasets.info import DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData
from PIL import Image, ImageDraw, ImageFilter

from ovlt.scoring.benchmarks import MATHVISTA_HINTS

# Training sources: the real row counts (dataset cards) / 100, FigureQA's 100,000 capped so that the whole write
# takes seconds. Benchmarks: a few dozen items each, multiple choice and free form (MathVerse: problems x 5 versions).
# The authors' further benchmarks, which the rehearsal evaluates a few items of: a handful per config, enough for
# every kind of item (several images, open-ended, an edited figure's question pairs) to occur. MMMU-Pro: items,
# the same in its three configs; EMMA: items per subject; HallusionBench: question sets (4 rows with a figure each,
# and a VS set's 2 without one).
ROWS = {
    "figureqa": 150, "tabmwp": 227, "ai2d": 24, "geometry3k": {"train": 21, "validation": 3, "test": 6},
    "vizwiz": {"val": 43, "test": 80}, "geos": 5,
    "mathvista": 24, "mathverse_problems": 5, "mathvision": {"test": 30, "testmini": 20},
    "mmmu_pro": 10, "emma": 8, "hallusionbench_sets": 3,
}
BIG_PHOTOS = 3  # VizWiz val rows at BIG_PHOTO_SIZE
BIG_PHOTO_SIZE = (4000, 3000)
MATHVERSE_VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")

COLORS = {"Red": (214, 39, 40), "Blue": (31, 119, 180), "Green": (44, 160, 44), "Orange": (255, 127, 14),
          "Purple": (148, 103, 189), "Gray": (127, 127, 127), "Brown": (140, 86, 75), "Pink": (227, 119, 194)}
ITEMS = ("pencil", "notebook", "eraser", "ruler", "marker", "stapler", "glue stick", "folder")
NAMES = ("Ann", "Ben", "Carla", "Dev", "Emma", "Farid")
FOOD_CHAINS = (("grass", "rabbit", "fox"), ("algae", "shrimp", "fish", "heron"), ("oak", "caterpillar", "sparrow", "hawk"),
               ("clover", "snail", "frog", "snake"), ("seeds", "mouse", "owl"))
ORGANISMS = sorted({name for chain in FOOD_CHAINS for name in chain})

_STRING = datasets.Value("string")
_IMAGES = datasets.List(datasets.Image())
_TEXTS = datasets.List({"user": datasets.Value("string"), "assistant": datasets.Value("string"),
                        "source": datasets.Value("string")})
FEATURES = {
    "cauldron": datasets.Features({"images": _IMAGES, "texts": _TEXTS}),
    "geometry3k": datasets.Features({"images": _IMAGES, "problem": datasets.Value("string"),
                                     "answer": datasets.Value("string"), "id": datasets.Value("int64"),
                                     "choices": datasets.List(datasets.Value("string")),
                                     "ground_truth": datasets.Value("string")}),
    "vizwiz": datasets.Features({"question_id": datasets.Value("string"), "image": datasets.Image(),
                                 "question": datasets.Value("string"),
                                 "answers": datasets.List(datasets.Value("string")),
                                 "category": datasets.Value("string")}),
    "mathv360k": datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                    "conversations": datasets.List({"from": datasets.Value("string"),
                                                                    "value": datasets.Value("string")}),
                                    "data_source": datasets.Value("string")}),
    "mathvista": datasets.Features({
        "pid": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "choices": datasets.List(datasets.Value("string")),
        "unit": datasets.Value("string"), "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer_type": datasets.Value("string"),
        "metadata": {"category": datasets.Value("string"), "context": datasets.Value("string"),
                     "grade": datasets.Value("string"), "img_height": datasets.Value("int64"),
                     "img_width": datasets.Value("int64"), "language": datasets.Value("string"),
                     "skills": datasets.List(datasets.Value("string")), "source": datasets.Value("string"),
                     "split": datasets.Value("string"), "task": datasets.Value("string")},
        "query": datasets.Value("string")}),
    "mathverse": datasets.Features({
        "sample_index": datasets.Value("string"), "problem_index": datasets.Value("string"),
        "problem_version": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Image(),
        "answer": datasets.Value("string"), "question_type": datasets.Value("string"),
        "metadata": {"split": datasets.Value("string"), "source": datasets.Value("string"),
                     "subject": datasets.Value("string"), "subfield": datasets.Value("string")},
        "query_wo": datasets.Value("string"), "query_cot": datasets.Value("string"),
        "question_for_eval": datasets.Value("string")}),
    "mathvision": datasets.Features({
        "id": datasets.Value("string"), "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "answer": datasets.Value("string"), "solution": datasets.Value("string"),
        "level": datasets.Value("int64"), "subject": datasets.Value("string")}),
    # MMMU-Pro keeps each item's options as the text of a Python list ("['a', 'b']"), not as a list
    "mmmu_pro_standard": datasets.Features({
        "id": _STRING, "question": _STRING, "options": _STRING, "explanation": _STRING,
        **{f"image_{k}": datasets.Image() for k in range(1, 8)}, "img_type": _STRING, "answer": _STRING,
        "topic_difficulty": _STRING, "subject": _STRING}),
    "mmmu_pro_vision": datasets.Features({"id": _STRING, "image": datasets.Image(), "options": _STRING,
                                          "answer": _STRING, "subject": _STRING}),
    "emma": datasets.Features({
        "pid": _STRING, "question": _STRING, "options": datasets.List(_STRING), "answer": _STRING,
        **{f"image_{k}": datasets.Image() for k in range(1, 6)}, "solution": _STRING, "subject": _STRING,
        "task": _STRING, "category": _STRING, "source": _STRING, "type": _STRING, "context": _STRING}),
    # every id and code a string, as in the benchmark's own HallusionBench.json
    "hallusionbench": datasets.Features({
        **{name: _STRING for name in ("category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note",
                                      "question_id", "question", "gt_answer_details", "gt_answer", "filename")},
        "image": datasets.Image()}),
}


# ----------------------------------------------------------------------------------------------------------
# pictures (encoded here, so that drawings stay PNG and photos JPEG, byte for byte the same for a seed)


def _png(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _jpeg(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return {"bytes": buffer.getvalue(), "path": None}


def _bars(rng: random.Random, n: int) -> tuple[Image.Image, dict[str, int]]:
    """A bar chart of n distinct values (1-9), each bar in the colour it is named after."""
    values = dict(zip(rng.sample(sorted(COLORS), n), rng.sample(range(1, 10), n), strict=True))
    return _bar_chart(values), values


def _bar_chart(values: dict[str, int]) -> Image.Image:
    """The chart of `values` (colour name -> 1-9), bars left to right in the dict's order."""
    n = len(values)
    image = Image.new("RGB", (40 + 26 * n, 130), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(18, 10), (18, 112), (image.width - 6, 112)], fill="black")
    for i, (label, value) in enumerate(values.items()):
        x = 26 + 26 * i
        draw.rectangle([x, 112 - 11 * value, x + 18, 112], fill=COLORS[label])
        draw.text((x + 5, 115), str(value), fill="black")
    return image


def _shapes(rng: random.Random) -> tuple[Image.Image, int]:
    """Circles and squares on a grid: (image, number of circles)."""
    circles, squares = rng.randint(1, 6), rng.randint(0, 5)
    cells = rng.sample(range(16), circles + squares)
    image = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(image)
    for k, cell in enumerate(cells):
        x, y = 6 + 30 * (cell % 4), 6 + 30 * (cell // 4)
        color = COLORS[rng.choice(sorted(COLORS))]
        (draw.ellipse if k < circles else draw.rectangle)([x, y, x + 22, y + 22], fill=color, outline="black")
    return image, circles


def _triangle(rng: random.Random, labels: bool = True, text: str = "") -> tuple[Image.Image, int, int, int]:
    """A triangle ABC with angles A and B labelled (unless `labels` is False) and x marked at C: (image, A, B,
    x = 180 - A - B). `text` is written under it (a question shown only in the image)."""
    a, b = rng.randrange(30, 80, 5), rng.randrange(30, 80, 5)
    image = Image.new("RGB", (max(200, 12 + 6 * len(text)), 150 if text else 120), "white")
    draw = ImageDraw.Draw(image)
    corners = [(20, 100), (180, 100), (rng.randint(70, 130), 15)]
    draw.polygon(corners, outline="black")
    for name, (x, y) in zip("ABC", corners, strict=True):
        draw.text((x - 12 if x < 100 else x + 4, y - 4), name, fill="black")
    if labels:
        draw.text((30, 86), f"{a}°", fill="blue")
        draw.text((150, 86), f"{b}°", fill="blue")
    draw.text((corners[2][0] - 4, 30), "x", fill="red")
    if text:
        draw.text((6, 108), text, fill="black")
    return image, a, b, 180 - a - b


def _table(rng: random.Random) -> tuple[Image.Image, dict[str, float]]:
    """A price list of 3-5 items in steps of $0.25."""
    prices = {item: rng.randrange(2, 40) / 4 for item in rng.sample(ITEMS, rng.randint(3, 5))}
    image = Image.new("RGB", (180, 22 + 18 * len(prices)), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, 177, image.height - 3], outline="black")
    draw.text((8, 5), "Item              Price", fill="black")
    for i, (item, price) in enumerate(prices.items()):
        draw.line([(2, 20 + 18 * i), (177, 20 + 18 * i)], fill="gray")
        draw.text((8, 23 + 18 * i), item, fill="black")
        draw.text((120, 23 + 18 * i), f"${price:.2f}", fill="black")
    return image, prices


def _food_chain(chain: tuple[str, ...]) -> Image.Image:
    image = Image.new("RGB", (40 + 90 * len(chain), 60), (235, 245, 235))
    draw = ImageDraw.Draw(image)
    for i, organism in enumerate(chain):
        x = 10 + 90 * i
        draw.rectangle([x, 18, x + 70, 42], fill="white", outline="darkgreen")
        draw.text((x + 4, 24), organism, fill="black")
        if i:
            draw.line([(x - 20, 30), (x - 2, 30)], fill="black", width=2)
            draw.polygon([(x - 2, 30), (x - 8, 26), (x - 8, 34)], fill="black")
    return image


def _photo(rng: random.Random, color: str, size: tuple[int, int], blur: bool = False) -> Image.Image:
    """A 'photo' of one object in `color` before a grey gradient; `blur`: too blurred to tell what it is."""
    width, height = size
    background = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(background, Image.new("RGB", size, (rng.randint(90, 200),) * 3), 0.6)
    draw = ImageDraw.Draw(image)
    draw.ellipse([width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=COLORS[color])
    return image.filter(ImageFilter.GaussianBlur(radius=6)) if blur else image


def _options(rng: random.Random, answer, distractors, n: int) -> tuple[list[str], str]:
    """n options (answer and n-1 distinct distractors, shuffled) and the answer's letter."""
    pool = [d for d in dict.fromkeys(distractors) if d != answer]
    options = [answer, *rng.sample(pool, n - 1)]
    rng.shuffle(options)
    return [str(o) for o in options], "ABCDEFGH"[options.index(answer)]


def _near(value: int, step: int = 5) -> list[int]:
    return [value + k * step for k in (-3, -2, -1, 1, 2, 3) if value + k * step > 0]


# ----------------------------------------------------------------------------------------------------------
# training sources


def _figureqa_row(rng: random.Random) -> dict:
    image, values = _bars(rng, rng.randint(3, 5))
    labels = list(values)
    top, bottom = max(values, key=values.get), min(values, key=values.get)
    texts = []
    for _ in range(rng.randint(2, 5)):
        a, b = rng.sample(labels, 2)
        question, yes = rng.choice([(f"Is {a} the maximum?", a == top), (f"Is {a} the minimum?", a == bottom),
                                    (f"Is {a} greater than {b}?", values[a] > values[b]),
                                    (f"Is {a} less than {b}?", values[a] < values[b]),
                                    (f"Does {a} have the highest value?", a == top)])
        texts.append({"user": question, "assistant": "Yes." if yes else "No.", "source": "figureqa"})
    return {"images": [_png(image)], "texts": texts}


def _tabmwp_row(rng: random.Random) -> dict:
    image, prices = _table(rng)
    a, b = rng.sample(list(prices), 2)
    total = prices[a] + prices[b]
    name = rng.choice(NAMES)
    threshold = rng.choice(sorted(set(prices.values())))
    budget = total + rng.choice([-1.0, -0.5, 0.5, 1.0])
    an_a, an_b = (f"{'an' if item[0] in 'aeiou' else 'a'} {item}" for item in (a, b))
    questions = [
        (f"Look at the table. Then answer the question. How much money does {name} need to buy {an_a} and {an_b}? "
         f"(Unit: $)", f"Add the price of {an_a} and the price of {an_b}:\n${prices[a]:.2f} + ${prices[b]:.2f} = "
         f"${total:.2f}\n{name} needs ${total:.2f}.\nAnswer: {total:.2f}"),
        (f"Look at the table. Then answer the question. How many items cost more than ${threshold:.2f}?",
         f"Count the prices above ${threshold:.2f}.\nAnswer: {sum(p > threshold for p in prices.values())}"),
        (f"Look at the table. Then answer the question. Does {name} have enough money to buy {an_a} and {an_b} with "
         f"${budget:.2f}?\nChoices:\nA. yes\nB. no",
         f"${prices[a]:.2f} + ${prices[b]:.2f} = ${total:.2f}.\nAnswer: {'A' if budget >= total else 'B'}"),
    ]
    chosen = rng.sample(questions, rng.randint(1, 2))
    return {"images": [_png(image)], "texts": [{"user": q, "assistant": r, "source": "tabmwp"} for q, r in chosen]}


def _ai2d_row(rng: random.Random) -> dict:
    chain = rng.choice(FOOD_CHAINS)
    k = rng.randrange(len(chain) - 1)
    others = [o for o in ORGANISMS if o not in chain]
    candidates = [(f"Which organism eats the {chain[k]}?", chain[k + 1], [*chain, *others]),
                  (f"What does the {chain[k + 1]} eat?", chain[k], [*chain, *others]),
                  ("Which organism in this food chain is a producer?", chain[0], [*chain[1:], *others])]
    texts = []
    for question, answer, distractors in rng.sample(candidates, rng.randint(1, 3)):
        options, letter = _options(rng, answer, distractors, 4)
        listed = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
        texts.append({"user": f"Question: {question}\nChoices:\n{listed}\nAnswer with the letter.",
                      "assistant": f"Answer: {letter}", "source": "ai2d"})
    return {"images": [_png(_food_chain(chain))], "texts": texts}


def _geometry3k_row(rng: random.Random, row_id: int) -> dict:
    image, _, _, x = _triangle(rng)
    choices, letter = _options(rng, x, _near(x), 4)
    return {"images": [_png(image)], "problem": "<image>Find x.", "answer": str(x), "id": row_id,
            "choices": choices, "ground_truth": letter}


def _geos_row(rng: random.Random, i: int) -> dict:
    image, _, _, x = _triangle(rng)
    choices, letter = _options(rng, x, _near(x, 10), 4)
    listed = "\n".join(f"{'ABCD'[k]}: {c}" for k, c in enumerate(choices))
    human = f"<image>\nFind the measure of the angle marked x.\nChoices:\n{listed}"
    return {"id": f"geos_{i}", "image": _png(image), "data_source": "GEOS",
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": f"The answer is {letter}"}]}


def _vizwiz_row(rng: random.Random, i: int, split: str, big: bool) -> dict:
    row = {"question_id": f"VizWiz_{split}_{i:08d}.jpg"}
    kind = "big" if big else rng.choice(["color", "color", "count", "yes/no", "unanswerable"])
    color = rng.choice(sorted(COLORS))
    if kind in ("big", "color"):
        size = BIG_PHOTO_SIZE if big else (rng.randrange(96, 201, 8), rng.randrange(72, 151, 8))
        image, question, category = _photo(rng, color, size), "What color is this?", "other"
        answers = [color.lower()] * rng.randint(6, 9)
        answers += [f"dark {color.lower()}"] * (10 - len(answers))
    elif kind == "count":
        image, circles = _shapes(rng)
        question, category, answers = "How many circles are there?", "number", [str(circles)] * 10
    elif kind == "yes/no":
        other = rng.choice([c for c in sorted(COLORS) if c != color])
        shown = rng.choice([color, other])
        image, question, category = _photo(rng, shown, (128, 96)), f"Is this {color.lower()}?", "yes/no"
        answers = ["yes" if shown == color else "no"] * 10
    else:  # a blurred shot nobody could answer, as about a quarter of VizWiz is
        image, question, category = _photo(rng, color, (128, 96), blur=True), "What is this?", "unanswerable"
        answers = ["unanswerable"] * 8 + ["blurry"] * 2
    rng.shuffle(answers)
    if split == "test":  # the test split's answers are withheld
        answers, category = [], ""
    return {**row, "image": _jpeg(image), "question": question, "answers": answers, "category": category}


# ----------------------------------------------------------------------------------------------------------
# benchmarks: one drawn item, written in each benchmark's own fields


def _item(rng: random.Random, kind: str) -> dict:
    """image, question, options (empty for free-form), answer (option text or value), answer_type, precision and
    MATH-V's subject, of one drawn item of `kind`."""
    if kind in ("bar_top", "bar_value", "bar_mean", "bar_list"):
        image, values = _bars(rng, rng.randint(3, 5))
        top = max(values, key=values.get)
        if kind == "bar_top":
            return dict(image=image, question="Which bar is the tallest?", options=list(values), answer=top,
                        answer_type="text", precision=-1, subject="statistics")
        if kind == "bar_value":
            return dict(image=image, question="What is the value of the tallest bar?", options=[],
                        answer=str(values[top]), answer_type="integer", precision=-1, subject="statistics")
        if kind == "bar_mean":
            mean = f"{sum(values.values()) / len(values):.1f}"
            return dict(image=image, question="What is the average of the bar values?", options=[], answer=mean,
                        answer_type="float", precision=1, subject="statistics")
        return dict(image=image, question="List the bar values from left to right.", options=[],
                    answer=str(list(values.values())), answer_type="list", precision=-1, subject="statistics")
    if kind in ("count", "count_choice"):
        image, circles = _shapes(rng)
        options = [] if kind == "count" else _options(rng, circles, range(0, 10), 5)[0]
        return dict(image=image, question="How many circles are there in the picture?", options=options,
                    answer=str(circles), answer_type="integer", precision=-1, subject="counting")
    image, _, _, x = _triangle(rng)
    options = [] if kind == "angle" else _options(rng, f"{x}°", [f"{v}°" for v in _near(x)], 5)[0]
    return dict(image=image, question="In the triangle ABC, what is the angle x in degrees?", options=options,
                answer=f"{x}°" if options else str(x), answer_type="integer", precision=-1,
                subject="metric geometry - angle")


MATHVISTA_CONTEXT = {"statistics": "bar chart", "counting": "synthetic scene", "metric geometry - angle": "geometry diagram"}
MATHVISTA_KINDS = ("bar_top", "bar_value", "bar_mean", "count", "angle_choice", "bar_list")
MATHVISION_KINDS = ("count_choice", "angle", "bar_value", "angle_choice", "count", "bar_mean")


def _mathvista_row(rng: random.Random, pid: int) -> dict:
    item = _item(rng, MATHVISTA_KINDS[pid % len(MATHVISTA_KINDS)])
    multi = bool(item["options"])
    answer_type = "text" if multi else item["answer_type"]
    hint = MATHVISTA_HINTS["multi_choice" if multi else f"float{item['precision']}" if answer_type == "float"
                           else answer_type]
    choices = "\nChoices:\n" + "\n".join(f"({'ABCDE'[i]}) {o}" for i, o in enumerate(item["options"])) if multi else ""
    image = item["image"]
    return {"pid": str(pid + 1), "question": item["question"], "image": f"images/{pid + 1}.jpg",
            "decoded_image": _png(image), "choices": item["options"] or None, "unit": None,
            "precision": float(item["precision"]) if answer_type == "float" else None, "answer": item["answer"],
            "question_type": "multi_choice" if multi else "free_form", "answer_type": answer_type,
            "metadata": {"category": "math-targeted-vqa", "context": MATHVISTA_CONTEXT[item["subject"]],
                         "grade": "elementary school",
                         "img_height": image.height, "img_width": image.width, "language": "english",
                         "skills": ["arithmetic reasoning"], "source": "ovlt local hub", "split": "testmini",
                         "task": "figure question answering"},
            "query": f"{hint}\nQuestion: {item['question']}{choices}"}


def _mathverse_rows(rng: random.Random, problem: int) -> list[dict]:
    """One triangle problem in MathVerse's five versions: the less text, the more the image carries."""
    multi = problem % 2 == 0
    state = rng.getstate()  # every version draws the same triangle
    _, a, b, x = _triangle(rng)
    options, letter = _options(rng, f"{x}°", [f"{v}°" for v in _near(x)], 4) if multi else ([], str(x))
    listed = "\nChoices:\n" + "\n".join(f"{'ABCD'[i]}:{o}" for i, o in enumerate(options)) if multi else ""
    texts = {"Text Dominant": f"As shown in the figure, in triangle ABC, angle A = {a}° and angle B = {b}°. "
                              "Find the angle x at C.",
             "Text Lite": "As shown in the figure, find the angle x at C.",
             "Vision Intensive": "As shown in the figure, find x.", "Vision Dominant": "Find x.", "Vision Only": ""}
    instruction = ("provide the correct option letter, e.g., A, B, C, D, at the end" if multi
                   else "provide the final value, e.g., 1, 2.5, 300, at the end")
    after = rng.getstate()
    rows = []
    for v, version in enumerate(MATHVERSE_VERSIONS):
        question = texts[version] + listed if texts[version] else ""
        rng.setstate(state)
        image = _triangle(rng, labels=version != "Text Dominant",
                          text=("Find x." + listed.replace("\n", " ")) if version == "Vision Only" else "")[0]
        where, shown = ("Please", f"\nQuestion: {question}") if question else (
            "According to the question shown in the image, please", "")
        rows.append({"sample_index": str(problem * len(MATHVERSE_VERSIONS) + v + 1), "problem_index": str(problem + 1),
                     "problem_version": version, "question": question, "image": _png(image), "answer": letter,
                     "question_type": "multi-choice" if multi else "free-form",
                     "metadata": {"split": "testmini", "source": "ovlt local hub", "subject": "plane geometry",
                                  "subfield": "angle"},
                     "query_wo": f"{where} directly answer the question and {instruction}.{shown}",
                     "query_cot": f"{where} first conduct reasoning, and then answer the question and "
                                  f"{instruction}.{shown}",
                     "question_for_eval": question or f"Find x.{listed}"})
    rng.setstate(after)
    return rows


def _mathvision_row(rng: random.Random, i: int) -> dict:
    item = _item(rng, MATHVISION_KINDS[i % len(MATHVISION_KINDS)])
    answer = "ABCDE"[item["options"].index(item["answer"])] if item["options"] else item["answer"]
    return {"id": str(i + 1), "question": f"{item['question']}\n<image1>", "options": item["options"],
            "image": f"images/{i + 1}.jpg", "decoded_image": _png(item["image"]), "answer": answer,
            "solution": None, "level": 1 + i % 5, "subject": item["subject"]}


# ----------------------------------------------------------------------------------------------------------
# the authors' further benchmarks: MMMU-Pro, EMMA, HallusionBench


def _an(item: str) -> str:
    return f"{'an' if item[0] in 'aeiou' else 'a'} {item}"


MMMU_PRO_KINDS = ("bar_value", "two_counts", "angle", "price")
MMMU_PRO_SUBJECTS = {"bar_value": "Marketing", "two_counts": "Math", "angle": "Math", "price": "Accounting"}
MMMU_PRO_IMAGE_TYPES = {"bar_value": "Plots and Charts", "two_counts": "Diagrams", "angle": "Diagrams",
                        "price": "Tables"}


def _mmmu_pro_items(seed: int, n: int) -> list[dict]:
    """n MMMU-Pro items: id, subject, question, images (image_1, image_2, ... in that order), answer, nine distractors,
    img_type, topic_difficulty. The three configs share them, as on the hub: the same ids, the answer with three of
    the distractors in "standard (4 options)", with all nine in "standard (10 options)" and in the vision screenshot.
    The two-image items name their images in reverse ("<image 2> and <image 1>"), the order the prompt must keep."""
    rng = random.Random(f"{seed}/mmmu_pro")
    items, per_subject = [], {}
    for i in range(n):
        kind = MMMU_PRO_KINDS[i % len(MMMU_PRO_KINDS)]
        if kind == "bar_value":
            image, values = _bars(rng, rng.randint(3, 5))
            label = rng.choice(list(values))
            question = (f"<image 1> The chart shows how many pens of each colour a shop sold. How many "
                        f"{label.lower()} pens did it sell?")
            images, answer, pool = [image], str(values[label]), [str(v) for v in range(10)]
        elif kind == "two_counts":
            (first, a), (second, b) = _shapes(rng), _shapes(rng)
            question = "How many circles are there in <image 2> and <image 1> together?"
            images, answer, pool = [first, second], str(a + b), [str(v) for v in range(16)]
        elif kind == "angle":
            image, _, _, x = _triangle(rng)
            question = "In <image 1>, what is the angle x at C, in degrees?"
            images, answer, pool = [image], f"{x}°", [f"{x + 5 * k}°" for k in range(-5, 7)]
        else:
            image, prices = _table(rng)
            a, b = rng.sample(list(prices), 2)
            total = prices[a] + prices[b]
            question = f"<image 1> How much do {_an(a)} and {_an(b)} cost together?"
            images, answer, pool = [image], f"${total:.2f}", [f"${total + 0.25 * k:.2f}" for k in range(-3, 10)]
        subject = MMMU_PRO_SUBJECTS[kind]
        per_subject[subject] = per_subject.get(subject, 0) + 1
        items.append({"id": f"test_{subject}_{per_subject[subject]}", "subject": subject, "question": question,
                      "images": images, "answer": answer,
                      "distractors": rng.sample([p for p in pool if p != answer], 9),
                      "img_type": str([MMMU_PRO_IMAGE_TYPES[kind]] * len(images)),
                      "topic_difficulty": rng.choice(["Easy", "Medium", "Hard"])})
    return items


def _mmmu_pro_options(seed: int, items: list[dict], n_options: int) -> list[tuple[list[str], str]]:
    """Each item's n_options options (the answer and the first distractors, shuffled) and the answer's letter, the
    same for one option count whichever config asks (the vision screenshot shows the ten of standard (10 options))."""
    rng = random.Random(f"{seed}/mmmu_pro/{n_options} options")
    chosen = []
    for item in items:
        options = [item["answer"], *item["distractors"][:n_options - 1]]
        rng.shuffle(options)
        chosen.append((options, "ABCDEFGHIJ"[options.index(item["answer"])]))
    return chosen


def _screenshot(question: str, images: list[Image.Image], options: list[str]) -> Image.Image:
    """MMMU-Pro's vision setting: the question, its figures and its lettered options in one picture."""
    text = re.sub(r"<image (\d+)>", r"(figure \1)", question)
    lines = [f"{'ABCDEFGHIJ'[k]}. {option}" for k, option in enumerate(options)]
    top = 22
    width = max(12 + 6 * max(len(line) for line in [text, *lines]), 10 + sum(im.width + 10 for im in images))
    height = top + 14 + max(im.height for im in images) + 10 + 14 * len(lines) + 6
    canvas = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), text, fill="black")
    x = 10
    for k, image in enumerate(images, 1):
        draw.text((x, top), f"figure {k}", fill="gray")
        canvas.paste(image, (x, top + 14))
        x += image.width + 10
    y = top + 14 + max(im.height for im in images) + 10
    for line in lines:
        draw.text((10, y), line, fill="black")
        y += 14
    return canvas


def _mmmu_pro_rows(seed: int, setting: str, n: int) -> list[dict]:
    """One MMMU/MMMU_Pro config's test rows: setting "standard4", "standard10" or "vision"."""
    items = _mmmu_pro_items(seed, n)
    chosen = _mmmu_pro_options(seed, items, 4 if setting == "standard4" else 10)
    rows = []
    for item, (options, letter) in zip(items, chosen, strict=True):
        if setting == "vision":
            rows.append({"id": item["id"], "image": _png(_screenshot(item["question"], item["images"], options)),
                         "options": str(options), "answer": letter, "subject": item["subject"]})
            continue
        images = {f"image_{k}": _png(item["images"][k - 1]) if k <= len(item["images"]) else None
                  for k in range(1, 8)}
        rows.append({"id": item["id"], "question": item["question"], "options": str(options), "explanation": "",
                     **images, "img_type": item["img_type"], "answer": letter,
                     "topic_difficulty": item["topic_difficulty"], "subject": item["subject"]})
    return rows


def _beam(rng: random.Random) -> tuple[Image.Image, int, int]:
    """A beam on a central pivot, marks 1 m apart, a load hanging on each side: (image, left torque - right torque
    in kg m, total mass in kg)."""
    left, right = rng.randint(1, 6), rng.randint(1, 6)
    left_at, right_at = rng.randint(1, 3), rng.randint(1, 3)
    image = Image.new("RGB", (240, 130), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(20, 40), (220, 40)], fill="black", width=3)
    draw.polygon([(120, 42), (110, 62), (130, 62)], fill="gray")
    for k in range(-3, 4):
        draw.line([(120 + 30 * k, 36), (120 + 30 * k, 44)], fill="black")
    for mass, x in ((left, 120 - 30 * left_at), (right, 120 + 30 * right_at)):
        draw.line([(x, 40), (x, 80)], fill="black")
        draw.rectangle([x - 14, 80, x + 14, 100], fill=(200, 200, 230), outline="black")
        draw.text((x - 12, 104), f"{mass} kg", fill="black")
    return image, left * left_at - right * right_at, left + right


MOLECULES = {"methane": ("C", 4), "ammonia": ("N", 3), "water": ("O", 2), "hydrogen fluoride": ("F", 1),
             "hydrogen sulfide": ("S", 2), "silane": ("Si", 4)}


def _molecule(name: str) -> Image.Image:
    """A molecule as a central atom and its hydrogens around it, each a labelled circle."""
    center, hydrogens = MOLECULES[name]
    image = Image.new("RGB", (140, 140), "white")
    draw = ImageDraw.Draw(image)
    for k in range(hydrogens):
        x, y = 70 + 45 * math.cos(2 * math.pi * k / hydrogens), 70 + 45 * math.sin(2 * math.pi * k / hydrogens)
        draw.line([(70, 70), (x, y)], fill="black", width=2)
        draw.ellipse([x - 10, y - 10, x + 10, y + 10], fill="white", outline="black")
        draw.text((x - 3, y - 6), "H", fill="black")
    draw.ellipse([52, 52, 88, 88], fill=(230, 230, 230), outline="black")
    draw.text((64, 64), center, fill="black")
    return image


EMMA_SUBJECTS = ("Math", "Physics", "Chemistry", "Coding")
EMMA_PID_PREFIX = {"Math": "math", "Physics": "phy", "Chemistry": "chem", "Coding": "coding"}
TIPS = ("the left end goes down", "the right end goes down", "it stays level")
EITHER = ("the first", "the second", "they are equal")


def _emma_item(rng: random.Random, subject: str, i: int) -> dict:
    """One EMMA item of a subject: question, options (None: open-ended), answer (option text or value), images
    (1-5), solution, task, category, context."""
    if subject == "Math":
        kind = ("count", "count_choice", "angle_choice", "bar_value")[i % 4]
        item = _item(rng, kind)
        # EMMA's harness feeds a Math item image_1 alone: this item's second figure is one it never sees
        extra = [_shapes(rng)[0]] if kind == "bar_value" else []
        return dict(question=item["question"], options=item["options"] or None, answer=item["answer"],
                    images=[item["image"], *extra], solution=f"Read the figure: {item['answer']}.",
                    task=item["subject"], category={"count": "Visual Counting", "count_choice": "Visual Counting",
                                                    "angle_choice": "Plane Geometry", "bar_value": "Chart Reading"}[kind],
                    context=None)
    if subject == "Physics":
        context = "The beam is massless and rests on a pivot at its centre; the marks on it are 1 m apart."
        kind = ("tip", "total", "two_beams")[i % 3]
        image, torque, total = _beam(rng)
        if kind == "tip":
            answer = TIPS[0] if torque > 0 else TIPS[1] if torque < 0 else TIPS[2]
            return dict(question="The loads hang where the figure shows. What happens when the beam is released?",
                        options=list(TIPS), answer=answer, images=[image], task="Statics", category="Mechanics",
                        solution=f"The torques about the pivot differ by {torque} kg m: {answer}.", context=context)
        if kind == "total":
            return dict(question="What mass, in kg, hangs on the beam in all?", options=None, answer=str(total),
                        images=[image], task="Statics", category="Mechanics", solution=f"Add the loads: {total}.",
                        context=context)
        other, _, other_total = _beam(rng)
        answer = EITHER[0] if total > other_total else EITHER[1] if total < other_total else EITHER[2]
        return dict(question="Which beam carries more mass in all: the first figure's or the second's?",
                    options=list(EITHER), answer=answer, images=[image, other], task="Statics", category="Mechanics",
                    solution=f"{total} kg against {other_total} kg: {answer}.", context=context)
    if subject == "Chemistry":
        kind = ("name", "hydrogens", "two_molecules")[i % 3]
        name = rng.choice(sorted(MOLECULES))
        hydrogens = MOLECULES[name][1]
        if kind == "name":
            options, _ = _options(rng, name, sorted(MOLECULES), 4)
            return dict(question="Which molecule does the figure show?", options=options, answer=name,
                        images=[_molecule(name)], task="Structure Recognition", category="Structure",
                        solution=f"{MOLECULES[name][0]} with {hydrogens} hydrogen atoms is {name}.", context=None)
        if kind == "hydrogens":
            return dict(question="How many hydrogen atoms does the molecule in the figure have?", options=None,
                        answer=str(hydrogens), images=[_molecule(name)], task="Structure Recognition",
                        category="Structure", solution=f"Count the H atoms: {hydrogens}.", context=None)
        other = rng.choice(sorted(MOLECULES))
        theirs = MOLECULES[other][1]
        answer = EITHER[0] if hydrogens > theirs else EITHER[1] if hydrogens < theirs else EITHER[2]
        return dict(question="Which molecule has more hydrogen atoms: the first figure's or the second's?",
                    options=list(EITHER), answer=answer, images=[_molecule(name), _molecule(other)],
                    task="Structure Recognition", category="Structure",
                    solution=f"{hydrogens} against {theirs}: {answer}.", context=None)
    image, values = _bars(rng, 3 + i % 2)
    code = (f"```python\nimport matplotlib.pyplot as plt\nplt.bar({list(values)}, {list(values.values())}, "
            f"color={[label.lower() for label in values]})\nplt.show()\n```")
    if i % 2:  # read a value off the chart the code drew
        label = rng.choice(list(values))
        return dict(question=f"The figure shows the chart this code draws:\n{code}\nWhat height does the code give "
                             f"the {label} bar?", options=None, answer=str(values[label]), images=[image],
                    task="Code to Chart", category="Data Visualization", solution=f"{values[label]}.", context=None)
    # choose the chart the code draws among 4 or 5 (the others: its heights in another order)
    candidates = 5 if i % 4 == 0 else 4
    orders = [order for order in itertools.permutations(values.values()) if list(order) != list(values.values())]
    charts = [image, *(_bar_chart(dict(zip(values, order, strict=True)))
                       for order in rng.sample(orders, candidates - 1))]
    position = rng.randrange(candidates)
    charts.insert(position, charts.pop(0))
    options = [f"Image {k}" for k in range(1, candidates + 1)]
    return dict(question=f"Which image shows the chart this code draws?\n{code}", options=options,
                answer=options[position], images=charts, task="Code to Chart", category="Data Visualization",
                solution=f"The heights {list(values.values())} in order: {options[position]}.", context=None)


def _emma_row(rng: random.Random, subject: str, i: int) -> dict:
    item = _emma_item(rng, subject, i)
    options = item["options"]
    answer = "ABCDE"[options.index(item["answer"])] if options else item["answer"]
    images = {f"image_{k}": _png(item["images"][k - 1]) if k <= len(item["images"]) else None for k in range(1, 6)}
    return {"pid": f"{EMMA_PID_PREFIX[subject]}_{i + 1}", "question": item["question"], "options": options,
            "answer": answer, **images, "solution": item["solution"], "subject": subject, "task": item["task"],
            "category": item["category"], "source": "ovlt local hub",
            "type": "Multiple Choice" if options else "Open-ended", "context": item["context"]}


def _shape_grid(shapes: dict[int, tuple[str, str]]) -> Image.Image:
    """Circles and squares on a 4x4 grid: cell -> (kind, colour name)."""
    image = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(image)
    for cell, (kind, color) in shapes.items():
        x, y = 6 + 30 * (cell % 4), 6 + 30 * (cell // 4)
        (draw.ellipse if kind == "circle" else draw.rectangle)([x, y, x + 22, y + 22], fill=COLORS[color],
                                                                outline="black")
    return image


def _count(shapes: dict[int, tuple[str, str]], kind: str) -> int:
    return sum(k == kind for k, _ in shapes.values())


# HallusionBench sets, in turn: (category, subcategory). VD ("visual dependent") sets ask two questions of an
# original figure (figure_id "0", visual_input "1") and of an edited one ("1", "2") whose edit flips an answer; the VS
# ("visual supplement") set asks its two, which state a prior, without a figure ("0", "0": the non_image split), then
# of the original ("1", "1") and of an edited figure ("2", "2") that contradicts the prior.
HALLUSION_SETS = (("VD", "chart"), ("VD", "figure"), ("VS", "chart"))


def _hallusionbench_rows(seed: int, sets: int) -> list[dict]:
    """Both splits' rows (those with an image are the `image` split's), each set's questions pair by pair."""
    rng = random.Random(f"{seed}/hallusionbench")
    rows = []
    for set_id in range(sets):
        category, subcategory = HALLUSION_SETS[set_id % len(HALLUSION_SETS)]
        if subcategory == "figure":
            circles, squares = rng.randint(2, 5), rng.randint(1, 4)
            cells = rng.sample(range(16), circles + squares)
            original = {cell: ("circle" if k < circles else "square", rng.choice(sorted(COLORS)))
                        for k, cell in enumerate(cells)}
            edited = {**original, cells[0]: ("square", original[cells[0]][1])}  # one circle drawn as a square
            questions = [(f"Are there {circles} circles in the image?",
                          lambda s, n=circles: _count(s, "circle") == n),
                         ("Are there more circles than squares in the image?",
                          lambda s: _count(s, "circle") > _count(s, "square"))]
            figures, note, render = [("0", "1", original), ("1", "2", edited)], "circles and squares", _shape_grid
        else:
            values = dict(zip(rng.sample(sorted(COLORS), 4), rng.sample(range(1, 10), 4), strict=True))
            ranked = sorted(values, key=values.get)
            render = _bar_chart
            if category == "VD":
                top, low = ranked[-1], ranked[0]
                edited = {**values, top: values[low], low: values[top]}  # the tallest and the shortest swapped
                a, b = rng.sample(ranked, 2)
                questions = [(f"Is the {top} bar the tallest in the chart?", lambda v, top=top: max(v, key=v.get) == top),
                             (f"Is the {a} bar taller than the {b} bar?", lambda v, a=a, b=b: v[a] > v[b])]
                figures, note = [("0", "1", values), ("1", "2", edited)], "bar chart"
            else:
                a, b = ranked[-1], ranked[rng.randrange(3)]
                edited = {**values, a: values[b], b: values[a]}
                questions = [(f"Last year's report put the {a} bar at {values[a]}. According to the chart, is the {a} "
                              f"bar at {values[a]}?", lambda v, a=a, at=values[a]: v is None or v[a] == at),
                             (f"Last year's report had the {a} bar taller than the {b} bar. According to the chart, "
                              f"is the {a} bar taller than the {b} bar?", lambda v, a=a, b=b: v is None or v[a] > v[b])]
                figures, note = [("0", "0", None), ("1", "1", values), ("2", "2", edited)], "bar chart with a prior"
        pictures = {figure_id: _png(render(shown)) for figure_id, _, shown in figures if shown is not None}
        for question_id, (question, truth) in enumerate(questions):
            for figure_id, visual_input, shown in figures:
                yes = truth(shown)
                seen = "without a figure" if shown is None else f"in figure {figure_id}"
                rows.append({"category": category, "subcategory": subcategory, "visual_input": visual_input,
                             "set_id": str(set_id), "figure_id": figure_id, "sample_note": note,
                             "question_id": str(question_id), "question": question,
                             "gt_answer_details": f"{'Yes' if yes else 'No'}, {seen}.", "gt_answer": "1" if yes else "0",
                             "filename": None if shown is None
                             else f"./hallusion_bench/{category}/{subcategory}/{set_id}_{figure_id}.png",
                             "image": pictures.get(figure_id)})
    return rows


# ----------------------------------------------------------------------------------------------------------
# the repositories


def _rows(kind: str, seed: int, split: str, n: int) -> list[dict]:
    """n rows of one repository split, from a generator seeded by (seed, kind, split) alone, so that each
    split's content does not depend on the others' sizes."""
    rng = random.Random(f"{seed}/{kind}/{split}")
    if kind == "figureqa":
        return [_figureqa_row(rng) for _ in range(n)]
    if kind == "tabmwp":
        return [_tabmwp_row(rng) for _ in range(n)]
    if kind == "ai2d":
        return [_ai2d_row(rng) for _ in range(n)]
    if kind == "geometry3k":
        first = {"train": 0, "validation": 2101, "test": 2401}[split]  # ids distinct across splits
        return [_geometry3k_row(rng, first + i) for i in range(n)]
    if kind == "vizwiz":
        big = {round(i * n / (BIG_PHOTOS + 1)) for i in range(BIG_PHOTOS)} if split == "val" else set()
        return [_vizwiz_row(rng, i, split, i in big) for i in range(n)]
    if kind == "geos":
        return [_geos_row(rng, i) for i in range(n)]
    if kind == "mathvista":
        return [_mathvista_row(rng, i) for i in range(n)]
    if kind == "mathverse":
        return [row for problem in range(n) for row in _mathverse_rows(rng, problem)]
    if kind == "mathvision":  # testmini is the first items of test, as MATH-V's testmini is a subset of test
        return _rows("mathvision", seed, "test", ROWS["mathvision"]["test"])[:n] if split == "testmini" else [
            _mathvision_row(rng, i) for i in range(n)]
    if kind.startswith("mmmu_pro_"):  # the three configs hold the same items
        return _mmmu_pro_rows(seed, kind.removeprefix("mmmu_pro_"), n)
    if kind.startswith("emma_"):
        subject = next(s for s in EMMA_SUBJECTS if s.lower() == kind.removeprefix("emma_"))
        return [_emma_row(rng, subject, i) for i in range(n)]
    if kind == "hallusionbench":  # one draw of n question sets, split by whether a question shows a figure
        return [row for row in _hallusionbench_rows(seed, n) if (row["image"] is not None) == (split == "image")]
    raise ValueError(f"unknown stand-in kind {kind!r}")


# repository -> config ("default": none named) -> split -> (stand-in kind, rows, folder in the repository,
# parquet shards, whether file names end in a content hash as push_to_hub wrote them there)
REPOSITORIES = {
    "HuggingFaceM4/the_cauldron": {
        "figureqa": {"train": ("figureqa", ROWS["figureqa"], "figureqa", 4, True)},
        "tabmwp": {"train": ("tabmwp", ROWS["tabmwp"], "tabmwp", 1, True)},
        "ai2d": {"train": ("ai2d", ROWS["ai2d"], "ai2d", 1, True)},
    },
    "hiyouga/geometry3k": {"default": {split: ("geometry3k", n, "data", 1, False)
                                       for split, n in ROWS["geometry3k"].items()}},
    "lmms-lab/VizWiz-VQA": {"default": {"val": ("vizwiz", ROWS["vizwiz"]["val"], "data", 5, True),
                                        "test": ("vizwiz", ROWS["vizwiz"]["test"], "data", 8, True)}},
    "lmms-lab/LLaVA-OneVision-Data": {"GEOS(MathV360K)": {"train": ("geos", ROWS["geos"], "GEOS(MathV360K)", 1, False)}},
    "AI4Math/MathVista": {"default": {"testmini": ("mathvista", ROWS["mathvista"], "data", 1, True)}},
    "AI4Math/MathVerse": {"testmini": {"testmini": ("mathverse", ROWS["mathverse_problems"], "", 1, False)}},
    "MathLLMs/MathVision": {"default": {split: ("mathvision", n, "data", 1, True)
                                        for split, n in ROWS["mathvision"].items()}},
    "MMMU/MMMU_Pro": {config: {"test": (f"mmmu_pro_{setting}", ROWS["mmmu_pro"], config, shards, False)}
                      for config, setting, shards in (("standard (4 options)", "standard4", 2),
                                                      ("standard (10 options)", "standard10", 2),
                                                      ("vision", "vision", 4))},
    "luckychao/EMMA": {subject: {"test": (f"emma_{subject.lower()}", ROWS["emma"], subject, 1, False)}
                       for subject in EMMA_SUBJECTS},
    "lmms-lab/HallusionBench": {"default": {split: ("hallusionbench", ROWS["hallusionbench_sets"], "data", 1, False)
                                            for split in ("image", "non_image")}},
}
# the repositories whose README has no `configs:` block: their splits come from the file names
NO_CONFIGS = {"lmms-lab/VizWiz-VQA"}
FEATURE_KIND = {"figureqa": "cauldron", "tabmwp": "cauldron", "ai2d": "cauldron", "geos": "mathv360k",
                "mmmu_pro_standard4": "mmmu_pro_standard", "mmmu_pro_standard10": "mmmu_pro_standard",
                **{f"emma_{subject.lower()}": "emma" for subject in EMMA_SUBJECTS}}


def _questions(kind: str, rows: list[dict]) -> int:
    if kind in ("figureqa", "tabmwp", "ai2d"):
        return sum(len(row["texts"]) for row in rows)
    if kind == "geos":
        return sum(turn["from"] == "human" for row in rows for turn in row["conversations"])
    return len(rows)


def _write_split(folder: Path, split: str, data: datasets.Dataset, shards: int, hashed: bool, tag: str) -> int:
    """Write `data` as `<split>-0000k-of-0000n[-<hash>].parquet` shards; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for k in range(shards):
        suffix = f"-{hashlib.sha256(f'{tag}/{k}'.encode()).hexdigest()[:16]}" if hashed else ""
        path = folder / f"{split}-{k:05d}-of-{shards:05d}{suffix}.parquet"
        data.shard(shards, k, contiguous=True).to_parquet(path)
        written += path.stat().st_size
    return written


def write_hub(root: str | Path, seed: int = 0) -> dict:
    """Write the stand-in under `root`, which must not hold these repositories yet (see the module's docstring);
    the same seed writes the same bytes.

    Each README.md carries, as on the hub, a `dataset_info` block (features, split sizes, bytes) beside
    `configs:`. datasets caches a local repository by those two blocks, not by its files, so the sizes are what
    keeps two different stand-ins (another seed, another version of this module) from sharing a cache entry.

    Returns {repository: {config: {split: {"rows": n, "questions": q}}}}, config "default" where the
    repository names none; q counts question/answer pairs (a cauldron row holds several).
    """
    root = Path(root)
    present = [repo for repo in REPOSITORIES if (root / repo).exists()]
    if present:  # writing over them would leave files of the old layout (other shard counts) beside the new
        raise FileExistsError(f"{root} already holds {', '.join(present)}: write the stand-in into a new or "
                              "emptied folder")
    counts = {}
    for repo, configs in REPOSITORIES.items():
        repo_dir = root / repo
        repo_dir.mkdir(parents=True)
        files, infos = MetadataConfigs(), DatasetInfosDict()
        for config, splits in configs.items():
            data_files, sizes, written = [], SplitDict(), 0
            for split, (kind, n, folder, shards, hashed) in splits.items():
                rows = _rows(kind, seed, split, n)
                features = FEATURES[FEATURE_KIND.get(kind, kind)]
                data = datasets.Dataset.from_list(rows, features=features)
                if repo == "AI4Math/MathVerse":  # one file per config at the top: testmini.parquet
                    data.to_parquet(repo_dir / f"{config}.parquet")
                    written += (repo_dir / f"{config}.parquet").stat().st_size
                    data_files.append({"split": split, "path": f"{config}.parquet"})
                else:
                    written += _write_split(repo_dir / folder, split, data, shards, hashed, f"{seed}/{repo}/{config}/{split}")
                    data_files.append({"split": split, "path": f"{folder}/{split}-*"})
                sizes.add(SplitInfo(name=split, num_bytes=data.data.nbytes, num_examples=len(data)))
                counts.setdefault(repo, {}).setdefault(config, {})[split] = {"rows": len(rows),
                                                                             "questions": _questions(kind, rows)}
            files[config] = {"data_files": data_files}
            infos[config] = datasets.DatasetInfo(features=features, splits=sizes, download_size=written,
                                                 dataset_size=sum(split.num_bytes for split in sizes.values()))
        card = DatasetCardData(pretty_name=f"{repo.split('/')[1]} (local stand-in)")
        infos.to_dataset_card_data(card)
        if repo not in NO_CONFIGS:
            files.to_dataset_card_data(card)
        (repo_dir / "README.md").write_text(
            f"---\n{card.to_yaml()}\n---\n# {repo}: a local stand-in\n\nDrawn by ovlt.rehearsal.local_hub.write_hub "
            f"(seed {seed}) in the layout of the hub repository {repo}; not its data.\n")
    return counts
