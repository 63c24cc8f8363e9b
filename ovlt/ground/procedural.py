"""Procedural visual-math problems whose families mirror the paper's training sources.

| family     | like               | question kinds (answer type)                                              |
|------------|--------------------|---------------------------------------------------------------------------|
| `chart`    | FigureQA           | tallest / shortest bar (multiple choice), is the X bar taller than the Y  |
|            |                    | bar (Yes/No multiple choice), value of the X bar (integer); as in         |
|            |                    | FigureQA, bars are named by their colour                                  |
| `geometry` | Geometry3K, GEOS   | missing triangle angle (integer), rectangle area / perimeter (integer),   |
|            |                    | hypotenuse of a right triangle (float, 1 decimal)                         |
| `table`    | TabMWP             | total (integer), difference (integer), largest item (multiple choice),    |
|            |                    | smallest item (text)                                                       |
| `counting` | CLEVR, VizWiz      | how many <colour> <shape>s (integer), largest object (multiple choice)    |

Images are drawn with PIL (byte-deterministic for a given Pillow/FreeType) at `DEFAULT_IMAGE_SIZE` = 112
pixels square: with Qwen2.5-VL's 28x28 merged patches that is 16 visual tokens, the size the tiny-model
learning experiment was measured at (docs/findings.md, "Learning on CPU"). Easy levels are drawn big and plain (few bars
on a unit grid, few objects, large bold figures) so that a ~1-3M parameter model can read them.

Each problem's `scene` column is the JSON of the facts the picture shows, plus the question under
"query" and cosmetic choices under "style". Layouts (what the scripted teachers caption from):
  chart:    {"family": "chart", "chart": "bar", "axis_max": int, "bars": [{"label": "red", "value": 3}, ...]}
  geometry: {"family": "geometry", "shape": "triangle", "angles": [a, b, c], "shown": [i, j]}
            | {"shape": "rectangle", "width": w, "height": h} | {"shape": "right_triangle", "legs": [a, b]}
  table:    {"family": "table", "header": ["Item", "Count"], "rows": [{"item": "pens", "value": 4}, ...]}
  counting: {"family": "counting", "grid": g, "objects": [{"shape", "color", "size": 1-3, "cell": [r, c]}]}
  query:    {"kind": ..., plus the kind's parameters (e.g. "label", "a"/"b", "color"/"shape")}

Train and test never share a picture: a scene's split is a function of its canonical hash
(`scene_key`, which ignores "query" and "style"), so a test scene can never be drawn into train, for any
seeds or sizes; per-split seeds additionally make the two streams independent.
"""

import hashlib
import io
import json
import math
import random
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

import datasets
import matplotlib
from PIL import Image, ImageDraw, ImageFont

from ovlt.ground.progress import tqdm
from ovlt.ground.schema import PROBLEM_FEATURES, SPLITS, option_letter
from ovlt.ground.sources import FAMILIES

LEVELS = {family: (1, 2, 3) for family in FAMILIES}
QUESTION_KINDS = {
    "chart": ("tallest", "shortest", "compare", "value"),
    "geometry": ("missing_angle", "rectangle_area", "rectangle_perimeter", "hypotenuse"),
    "table": ("total", "difference", "most", "fewest"),
    "counting": ("count", "largest"),
}
DEFAULT_IMAGE_SIZE = 112
TEST_BUCKETS = 5  # one in TEST_BUCKETS scene hashes belongs to test, the rest to train

COLORS = {  # saturated and far apart, so they stay distinct after resizing
    "red": (220, 30, 30),
    "blue": (30, 70, 220),
    "green": (20, 150, 50),
    "orange": (245, 140, 0),
    "purple": (140, 50, 180),
}
SHAPES = ("circle", "square", "triangle")
TABLE_ITEMS = ("pens", "cups", "hats", "bags", "cars", "eggs", "keys", "maps", "owls", "jars", "fans", "pots")


# ----------------------------------------------------------------------------------------------------------
# scenes: the facts, the question and its answer, drawn from a seeded random.Random. Each maker fixes the
# answer while building the scene (the answer first, the facts arranged to fit); `solve` recomputes it from
# the facts alone, and the tests check that the two agree.


def _move_extreme(values: list[int], to: int, largest: bool) -> None:
    """Swap the largest (or smallest) value into position `to`."""
    at = values.index(max(values) if largest else min(values))
    values[to], values[at] = values[at], values[to]


def _chart_scene(rng: random.Random, level: int) -> tuple[dict, str]:
    n_bars, axis_max = 2 + level, 3 + 2 * level  # 3 bars on a 0-5 grid ... 5 bars on a 0-9 grid
    # Bars are named by their colour, as in FigureQA. Measured with letters printed under the bars instead
    # (SFT-1, 600 held-out): the tiny student never learnt to read the letters (value questions 0.38, no chain
    # with every bar named right); with the first letters in order it read values (0.80), but then level 1
    # had only 60 distinct pictures. Colours in random order give 3,600 at level 1 and need no reading of text.
    labels = rng.sample(list(COLORS), n_bars)
    values = rng.sample(range(1, axis_max + 1), n_bars)  # distinct, so tallest/shortest are unique
    kind = rng.choice(QUESTION_KINDS["chart"])
    query = {"kind": kind}
    if kind in ("tallest", "shortest"):
        pick = rng.randrange(n_bars)  # the answer's position is uniform
        _move_extreme(values, pick, largest=kind == "tallest")
        answer = labels[pick]
    elif kind == "compare":
        a, b = rng.sample(range(n_bars), 2)
        answer = rng.choice(["Yes", "No"])  # balanced Yes/No
        if (values[a] > values[b]) != (answer == "Yes"):
            values[a], values[b] = values[b], values[a]
        query.update({"a": labels[a], "b": labels[b]})
    else:
        pick = rng.randrange(n_bars)
        query["label"], answer = labels[pick], str(values[pick])
    scene = {
        "family": "chart",
        "chart": "bar",
        "axis_max": axis_max,
        "bars": [{"label": label, "value": value} for label, value in zip(labels, values, strict=True)],
        "query": query,
    }
    return scene, answer


def _geometry_scene(rng: random.Random, level: int) -> tuple[dict, str]:
    kind = rng.choice(QUESTION_KINDS["geometry"])
    low, high = {1: (2, 9), 2: (2, 15), 3: (5, 30)}[level]
    if kind == "missing_angle":
        step = {1: 10, 2: 5, 3: 1}[level]
        while True:  # every angle in 30-110 degrees, so the triangle is not too flat to label
            a, b = (rng.randrange(30, 111, step) for _ in range(2))
            if 30 <= 180 - a - b <= 110:
                break
        unknown, answer = rng.randrange(3), 180 - a - b
        angles = [a, b]
        angles.insert(unknown, answer)
        facts = {"shape": "triangle", "angles": angles, "shown": [i for i in range(3) if i != unknown]}
    elif kind == "hypotenuse":
        legs = [rng.randint(low, high), rng.randint(low, high)]
        facts, answer = {"shape": "right_triangle", "legs": legs}, f"{math.sqrt(legs[0] ** 2 + legs[1] ** 2):.1f}"
    else:
        width, height = rng.randint(low, high), rng.randint(low, high)
        answer = width * height if kind == "rectangle_area" else 2 * width + 2 * height
        facts = {"shape": "rectangle", "width": width, "height": height}
    scene = {"family": "geometry", **facts, "style": {"color": rng.choice(list(COLORS))}, "query": {"kind": kind}}
    return scene, str(answer)


def _table_scene(rng: random.Random, level: int) -> tuple[dict, str]:
    n_rows = 2 + level
    low, high = {1: (1, 9), 2: (1, 20), 3: (10, 99)}[level]
    items = rng.sample(TABLE_ITEMS, n_rows)
    values = rng.sample(range(low, high + 1), n_rows)  # distinct: most/fewest/difference are unambiguous
    kind = rng.choice(QUESTION_KINDS["table"])
    query = {"kind": kind}
    if kind in ("most", "fewest"):
        pick = rng.randrange(n_rows)
        _move_extreme(values, pick, largest=kind == "most")
        answer = items[pick]
    elif kind == "difference":
        more, fewer = sorted(rng.sample(range(n_rows), 2), key=lambda i: -values[i])
        query.update({"a": items[more], "b": items[fewer]})
        answer = str(values[more] - values[fewer])
    else:
        answer = str(sum(values))
    scene = {
        "family": "table",
        "header": ["Item", "Count"],
        "rows": [{"item": item, "value": value} for item, value in zip(items, values, strict=True)],
        "query": query,
    }
    return scene, answer


def _counting_scene(rng: random.Random, level: int) -> tuple[dict, str]:
    grid = level + 1
    low, high = {1: (2, 3), 2: (3, 6), 3: (5, 10)}[level]
    kinds = [(color, shape) for color in list(COLORS)[: level + 1] for shape in SHAPES[: min(level + 1, 3)]]
    n_objects = rng.randint(low, high)
    kind = rng.choice(QUESTION_KINDS["counting"])
    if kind == "count":
        target = rng.choice(kinds)
        count = rng.randint(0, min(n_objects, 5))  # how many of the asked-about objects to draw
        others = [k for k in kinds if k != target]
        looks = [target] * count + [rng.choice(others) for _ in range(n_objects - count)]
        sizes = [rng.randint(1, 3) for _ in looks]
        query, answer = {"kind": kind, "color": target[0], "shape": target[1]}, str(count)
    else:
        looks = [rng.choice(kinds) for _ in range(n_objects)]
        while len(set(looks)) < 2:  # some other object must look different from the largest
            looks = [rng.choice(kinds) for _ in range(n_objects)]
        sizes = [rng.randint(1, 2) for _ in looks]
        biggest = rng.randrange(n_objects)
        sizes[biggest] = 3  # exactly one object is drawn big
        answer = " ".join(looks[biggest])
        others = sorted({" ".join(look) for look in looks} - {answer})
        choices = [answer, *rng.sample(others, min(3, len(others)))]  # up to four options
        rng.shuffle(choices)  # the answer's position carries no signal
        query = {"kind": kind, "choices": choices}
    cells = sorted(rng.sample([(r, c) for r in range(grid) for c in range(grid)], n_objects))
    order = rng.sample(range(n_objects), n_objects)  # which object goes to which (reading-order) cell
    objects = [{"shape": looks[i][1], "color": looks[i][0], "size": sizes[i], "cell": list(cell)}
               for i, cell in zip(order, cells, strict=True)]
    return {"family": "counting", "grid": grid, "objects": objects, "query": query}, answer


SCENE_MAKERS = {"chart": _chart_scene, "geometry": _geometry_scene, "table": _table_scene,
                "counting": _counting_scene}


def _describe(obj: dict) -> str:
    return f"{obj['color']} {obj['shape']}"


def scene_key(scene: dict | str) -> str:
    """Canonical hash of what a picture shows: the question ("query") and cosmetics ("style") excluded."""
    scene = json.loads(scene) if isinstance(scene, str) else scene
    facts = {k: v for k, v in scene.items() if k not in ("query", "style")}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def split_of(key: str) -> str:
    """The only split a scene with this `scene_key` may appear in."""
    return "test" if int(key, 16) % TEST_BUCKETS == 0 else "train"


# ----------------------------------------------------------------------------------------------------------
# questions and choices (what the model is asked; the answer comes from `solve`)


def question_and_choices(scene: dict) -> tuple[str, list[str], str, int]:
    """(question, choices, answer_type, precision) for a scene's query."""
    family, query = scene["family"], scene["query"]
    kind = query["kind"]
    if family == "chart":
        labels = [bar["label"] for bar in scene["bars"]]
        return {
            "tallest": ("Which bar is the tallest?", labels, "multiple_choice", -1),
            "shortest": ("Which bar is the shortest?", labels, "multiple_choice", -1),
            "compare": (f"Is the {query.get('a')} bar taller than the {query.get('b')} bar?", ["Yes", "No"],
                        "multiple_choice", -1),
            "value": (f"What is the value of the {query.get('label')} bar?", [], "integer", -1),
        }[kind]
    if family == "geometry":
        return {
            "missing_angle": ("Two angles of the triangle are given. What is the angle marked ? in degrees?",
                              [], "integer", -1),
            "rectangle_area": ("What is the area of the rectangle?", [], "integer", -1),
            "rectangle_perimeter": ("What is the perimeter of the rectangle?", [], "integer", -1),
            "hypotenuse": ("The triangle has a right angle. How long is the side marked ? "
                           "Round to one decimal place.", [], "float", 1),
        }[kind]
    if family == "table":
        items = [row["item"] for row in scene["rows"]]
        return {
            "total": ("What is the total count of all items in the table?", [], "integer", -1),
            "difference": (f"How many more {query.get('a')} than {query.get('b')} are there?", [], "integer", -1),
            "most": ("Which item has the largest count?", items, "multiple_choice", -1),
            "fewest": ("Which item has the smallest count? Answer with the item name.", [], "text", -1),
        }[kind]
    if family == "counting":
        if kind == "count":
            return f"How many {query['color']} {query['shape']}s are there?", [], "integer", -1
        return "Which object is the largest?", query["choices"], "multiple_choice", -1
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


# ----------------------------------------------------------------------------------------------------------
# the independent answer: recomputed from the facts alone, never from the renderer or the question text


def solve(scene: dict | str, kind: str | None = None, **params) -> str:
    """The gold answer to question `kind` (default: the scene's own query) about `scene`, as a string.

    Multiple choice answers are the option text; floats are rounded to their stated precision.
    """
    scene = json.loads(scene) if isinstance(scene, str) else scene
    if kind is None:
        params = {k: v for k, v in scene["query"].items() if k != "kind"}
        kind = scene["query"]["kind"]
    family = scene["family"]
    if family == "chart":
        value = {bar["label"]: bar["value"] for bar in scene["bars"]}
        if kind == "tallest":
            return max(value, key=value.get)
        if kind == "shortest":
            return min(value, key=value.get)
        if kind == "compare":
            return "Yes" if value[params["a"]] > value[params["b"]] else "No"
        if kind == "value":
            return str(value[params["label"]])
    elif family == "geometry":
        if kind == "missing_angle":
            return str(180 - sum(scene["angles"][i] for i in scene["shown"]))
        if kind == "rectangle_area":
            return str(scene["width"] * scene["height"])
        if kind == "rectangle_perimeter":
            return str(2 * (scene["width"] + scene["height"]))
        if kind == "hypotenuse":
            return f"{math.hypot(*scene['legs']):.1f}"
    elif family == "table":
        count = {row["item"]: row["value"] for row in scene["rows"]}
        if kind == "total":
            return str(sum(count.values()))
        if kind == "difference":
            return str(count[params["a"]] - count[params["b"]])
        if kind == "most":
            return max(count, key=count.get)
        if kind == "fewest":
            return min(count, key=count.get)
    elif family == "counting":
        if kind == "count":
            return str(sum(o["color"] == params["color"] and o["shape"] == params["shape"]
                           for o in scene["objects"]))
        if kind == "largest":
            return _describe(max(scene["objects"], key=lambda o: o["size"]))
    raise ValueError(f"no question kind {kind!r} for family {family!r}; known: {QUESTION_KINDS.get(family)}")


# ----------------------------------------------------------------------------------------------------------
# rendering


@cache
def _font(px: int) -> ImageFont.FreeTypeFont:
    # matplotlib ships DejaVu Sans, so every machine with the project's dependencies draws the same glyphs
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), max(px, 6))


def _fitting(text: str, px: int, width: float) -> int:
    """The largest font size up to px at which text is at most width pixels wide."""
    while px > 6 and _font(px).getlength(text) > width:
        px -= 1
    return px


def _text(draw: ImageDraw.ImageDraw, xy, text: str, px: int, fill=(0, 0, 0)):
    draw.text(xy, text, font=_font(px), fill=fill, anchor="mm")  # anchored at its centre


def _render_chart(draw, scene, s):
    left, right, top, bottom = 0.16 * s, 0.97 * s, 0.05 * s, 0.93 * s
    unit = (bottom - top) / scene["axis_max"]
    for v in range(scene["axis_max"] + 1):  # a grid line per unit, so heights can be read off
        y = bottom - v * unit
        draw.line([(left, y), (right, y)], fill=(0, 0, 0) if v == 0 else (190, 190, 190), width=1)
        _text(draw, (left / 2, y), str(v), round(min(unit * 1.1, 0.1 * s)), fill=(90, 90, 90))
    slot = (right - left) / len(scene["bars"])
    for i, bar in enumerate(scene["bars"]):  # a bar's colour is its name: no text to read
        x0, x1 = left + (i + 0.2) * slot, left + (i + 0.8) * slot
        draw.rectangle([x0, bottom - bar["value"] * unit, x1, bottom], fill=COLORS[bar["label"]])


def _fit(points, s, margin):
    """Scale and centre points (y up) into the square image (y down), keeping their shape."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    scale = (s - 2 * margin) / max(max(xs) - min(xs), max(ys) - min(ys))
    dx = (s - (max(xs) - min(xs)) * scale) / 2
    dy = (s - (max(ys) - min(ys)) * scale) / 2
    return [(dx + (x - min(xs)) * scale, s - dy - (y - min(ys)) * scale) for x, y in points]


def _label_inside(draw, vertices, i, text, s):
    """Write an angle label just inside the polygon at vertex i."""
    cx, cy = (sum(v[0] for v in vertices) / len(vertices), sum(v[1] for v in vertices) / len(vertices))
    vx, vy = vertices[i]
    d = math.hypot(cx - vx, cy - vy)
    step = min(0.2 * s, 0.6 * d)
    _text(draw, (vx + (cx - vx) / d * step, vy + (cy - vy) / d * step), text, round(0.11 * s))


def _label_outside(draw, p, q, centre, text, s):
    """Write a side label beside segment p-q, on the side away from the shape's centre."""
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    nx, ny = mx - centre[0], my - centre[1]
    d = math.hypot(nx, ny) or 1.0
    _text(draw, (mx + nx / d * 0.09 * s, my + ny / d * 0.09 * s), text, round(0.12 * s))


def _render_geometry(draw, scene, s):
    color = COLORS[scene["style"]["color"]]
    if scene["shape"] == "triangle":
        a, b, _ = (math.radians(x) for x in scene["angles"])
        # vertex 0 at the origin, vertex 1 on the x axis, vertex 2 where the two given angles meet
        side = math.sin(b) / math.sin(a + b)
        vertices = _fit([(0, 0), (1, 0), (side * math.cos(a), side * math.sin(a))], s, 0.12 * s)
        draw.polygon(vertices, outline=color, width=max(2, s // 40))
        for i in range(3):
            _label_inside(draw, vertices, i, f"{scene['angles'][i]}°" if i in scene["shown"] else "?", s)
        return
    if scene["shape"] == "rectangle":
        w, h = scene["width"], scene["height"]
        ratio = min(max(w / h, 0.5), 2.0)  # keep labels legible on very thin rectangles
        corners = _fit([(0, 0), (ratio, 0), (ratio, 1), (0, 1)], s, 0.2 * s)
        draw.polygon(corners, outline=color, width=max(2, s // 40))
        centre = ((corners[0][0] + corners[2][0]) / 2, (corners[0][1] + corners[2][1]) / 2)
        _label_outside(draw, corners[0], corners[1], centre, str(w), s)
        _label_outside(draw, corners[1], corners[2], centre, str(h), s)
        return
    a, b = scene["legs"]
    ratio = min(max(a / b, 0.5), 2.0)
    vertices = _fit([(0, 0), (ratio, 0), (0, 1)], s, 0.2 * s)
    draw.polygon(vertices, outline=color, width=max(2, s // 40))
    box = 0.07 * s  # the right-angle mark
    (x, y) = vertices[0]
    draw.line([(x + box, y), (x + box, y - box), (x, y - box)], fill=(0, 0, 0), width=1)
    centre = (sum(v[0] for v in vertices) / 3, sum(v[1] for v in vertices) / 3)
    _label_outside(draw, vertices[0], vertices[1], centre, str(a), s)
    _label_outside(draw, vertices[0], vertices[2], centre, str(b), s)
    _label_outside(draw, vertices[1], vertices[2], centre, "?", s)


def _render_table(draw, scene, s):
    rows = [scene["header"]] + [[row["item"], str(row["value"])] for row in scene["rows"]]
    margin = 0.05 * s
    height = (s - 2 * margin) / len(rows)
    split = margin + 0.6 * (s - 2 * margin)
    px = round(min(0.6 * height, 0.13 * s))
    widths = (split - margin, s - margin - split)
    draw.rectangle([margin, margin, s - margin, margin + height], fill=(210, 225, 245))
    for r, (item, value) in enumerate(rows):
        y = margin + (r + 0.5) * height
        _text(draw, ((margin + split) / 2, y), item, _fitting(item, px, 0.9 * widths[0]))
        _text(draw, ((split + s - margin) / 2, y), value, _fitting(value, px, 0.9 * widths[1]))
    for r in range(len(rows) + 1):
        y = margin + r * height
        draw.line([(margin, y), (s - margin, y)], fill=(0, 0, 0), width=1)
    for x in (margin, split, s - margin):
        draw.line([(x, margin), (x, s - margin)], fill=(0, 0, 0), width=1)


def _render_counting(draw, scene, s):
    cell = s / scene["grid"]
    for obj in scene["objects"]:
        r, c = obj["cell"]
        cx, cy = (c + 0.5) * cell, (r + 0.5) * cell
        # the big size is far above the others, so a big triangle still has more area than a medium circle
        radius = cell * {1: 0.2, 2: 0.27, 3: 0.46}[obj["size"]]
        color = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        elif obj["shape"] == "square":
            side = radius * 0.9
            draw.rectangle([cx - side, cy - side, cx + side, cy + side], fill=color)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + 0.8 * radius), (cx + radius, cy + 0.8 * radius)],
                         fill=color)


RENDERERS = {"chart": _render_chart, "geometry": _render_geometry, "table": _render_table,
             "counting": _render_counting}


def render(scene: dict | str, image_size: int = DEFAULT_IMAGE_SIZE) -> Image.Image:
    """Draw a scene as an RGB image of image_size x image_size pixels."""
    scene = json.loads(scene) if isinstance(scene, str) else scene
    image = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    RENDERERS[scene["family"]](ImageDraw.Draw(image), scene, image_size)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------
# data sets


def _levels(families, difficulty) -> dict:
    """Per family, the levels to draw from: all of them (None), one for all (int), or per family (dict)."""
    if difficulty is None or isinstance(difficulty, int):
        chosen = {family: difficulty for family in families}
    elif isinstance(difficulty, dict):
        unknown = set(difficulty) - set(families)
        if unknown:
            raise ValueError(f"difficulty names families not generated: {sorted(unknown)}; generating {families}")
        chosen = {family: difficulty.get(family) for family in families}
    else:
        raise ValueError(f"difficulty must be None, an int or a dict of family -> int, got {difficulty!r}")
    levels = {}
    for family, level in chosen.items():
        if level is not None and level not in LEVELS[family]:
            raise ValueError(f"difficulty {level!r} for family {family!r} is not one of {LEVELS[family]}")
        levels[family] = LEVELS[family] if level is None else (level,)
    return levels


def generate(n: int, seed: int, split: str, families=None, difficulty=None, image_size: int = DEFAULT_IMAGE_SIZE,
             exclude: set[str] | frozenset[str] = frozenset()) -> datasets.Dataset:
    """`n` problems of `split`, families in turn, with PROBLEM_FEATURES; the same arguments give the same bytes.

    difficulty: None (each problem draws a level), an int (every family at that level) or a dict family -> level.
    exclude: scene keys that must not be drawn (e.g. an earlier iteration's training scenes).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    families = tuple(families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    levels = _levels(families, difficulty)
    rngs = {family: random.Random(f"ovlt-procedural-{seed}-{split}-{family}") for family in families}
    records = []
    for i in tqdm(range(n), desc=f"generating {split} problems", disable=n < 500):
        family = families[i % len(families)]
        rng = rngs[family]
        for _ in range(10_000):
            level = rng.choice(levels[family])
            scene, answer = SCENE_MAKERS[family](rng, level)
            key = scene_key(scene)
            if split_of(key) == split and key not in exclude:
                break
        else:
            raise RuntimeError(f"no {split} scene for family {family!r} at levels {levels[family]} outside `exclude`")
        question, choices, answer_type, precision = question_and_choices(scene)
        records.append({
            "id": f"synthetic-{family}-{split}-{i:06d}",
            "image": {"bytes": png_bytes(render(scene, image_size)), "path": None},
            "question": question,
            "choices": choices,
            "answer": answer,
            "answer_type": answer_type,
            "precision": precision,
            "source": f"synthetic/{family}",
            "split": split,
            "difficulty": level,
            "scene": json.dumps(scene, sort_keys=True, separators=(",", ":")),
        })
    return datasets.Dataset.from_list(records, features=PROBLEM_FEATURES)


def question_kind(problem: dict) -> str:
    """The kind of question a problem asks: the procedural query kind, else its answer type."""
    return json.loads(problem["scene"])["query"]["kind"] if problem["scene"] else problem["answer_type"]


def kind_key(problem: dict) -> str:
    """"source/kind", e.g. "synthetic/chart/value": how per-kind figures are keyed."""
    return f"{problem['source']}/{question_kind(problem)}"


def majority_baseline(dataset: datasets.Dataset, by_kind: bool = False) -> dict[str, float]:
    """Accuracy of always giving the most common answer per (source, question kind): the study's chance level.

    For multiple choice the most common option *position* is used (always answering "(B)" is a strategy a
    model can follow whatever the option texts are). Returns {source: accuracy, ..., "overall": weighted}, or
    with `by_kind` {"source/kind": accuracy, ..., "overall": weighted}.
    """
    columns = dataset.select_columns(["source", "scene", "answer_type", "answer", "choices"])
    groups = defaultdict(Counter)
    for problem in columns:
        answer = problem["answer"]
        if problem["answer_type"] == "multiple_choice":
            answer = option_letter(problem["choices"].index(answer))
        groups[problem["source"], kind_key(problem)][answer] += 1  # the majority answer is per question kind
    hits, totals = Counter(), Counter()
    for (source, kind), answers in groups.items():
        key = kind if by_kind else source
        hits[key] += answers.most_common(1)[0][1]
        totals[key] += sum(answers.values())
    if not totals:
        raise ValueError("majority_baseline needs a non-empty data set")
    baseline = {key: hits[key] / totals[key] for key in sorted(totals)}
    baseline["overall"] = sum(hits.values()) / sum(totals.values())
    return baseline
