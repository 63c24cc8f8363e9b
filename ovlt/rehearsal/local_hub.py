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
"""

from __future__ import annotations

import hashlib
import io
import random
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
ROWS = {
    "figureqa": 150, "tabmwp": 227, "ai2d": 24, "geometry3k": {"train": 21, "validation": 3, "test": 6},
    "vizwiz": {"val": 43, "test": 80}, "geos": 5,
    "mathvista": 24, "mathverse_problems": 5, "mathvision": {"test": 30, "testmini": 20},
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
    image = Image.new("RGB", (40 + 26 * n, 130), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(18, 10), (18, 112), (image.width - 6, 112)], fill="black")
    for i, (label, value) in enumerate(values.items()):
        x = 26 + 26 * i
        draw.rectangle([x, 112 - 11 * value, x + 18, 112], fill=COLORS[label])
        draw.text((x + 5, 115), str(value), fill="black")
    return image, values


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
}
# the repositories whose README has no `configs:` block: their splits come from the file names
NO_CONFIGS = {"lmms-lab/VizWiz-VQA"}
FEATURE_KIND = {"figureqa": "cauldron", "tabmwp": "cauldron", "ai2d": "cauldron", "geos": "mathv360k"}


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
