"""Scripted teachers for the procedural data: a captioner and a text-only reasoner, imperfect the way the paper's are.

They read the problem's `scene` (the procedural generator's ground truth). The captioner omits, rounds ("about
6") or misreads a share of the facts (models.captioner.fidelity, omit_rate); the reasoner sees only the caption
and the question. It writes DENSE chains, the form the tiny student learns best from
(docs/findings.md, "Learning on CPU"): first the values it relies on, then a short computation, then a concluding
sentence, then the answer, with optional restatements (verbosity) and self-reflections ("Wait, let me check ...",
reflection_rate) that the filter cuts. `stated_facts_right` reads the facts a chain states back against the
scene, in the sentences the reasoner writes them in (`ScriptedReasoner._facts`).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import get_args

from ovlt.ground.config import AnswerWith
from ovlt.ground.procedural import COLORS, SHAPES, solve
from ovlt.ground.schema import OPTION_LETTER, option_letter
from ovlt.scoring.chains import chain_text, think_text

SIZE_WORDS = {1: "small", 2: "medium", 3: "big"}


def _round_step(value: int) -> int:
    return 2 if value < 20 else 5 if value < 100 else 10


class ScriptedCaptioner:
    """Describes a procedural problem's scene in fixed sentences that `ScriptedReasoner` parses.

    Each fact is omitted with probability `omit_rate`; a stated fact is exact with probability `fidelity`,
    otherwise rounded ("about 6", "red or orange") or misread (a wrong value, colour or shape), half each.
    """

    def __init__(self, fidelity: float = 1.0, omit_rate: float = 0.0, seed: int = 0):
        self.fidelity, self.omit_rate, self.seed = fidelity, omit_rate, seed

    def _number(self, rng: random.Random, value: int, low: int, high: int) -> str | None:
        if rng.random() < self.omit_rate:
            return None
        if rng.random() < self.fidelity:
            return str(value)
        step = _round_step(value)
        if rng.random() < 0.5:
            return f"about {step * round(value / step)}"
        wrong = [v for v in range(max(low, value - step), min(high, value + step) + 1) if v != value]
        return str(rng.choice(wrong)) if wrong else str(value)

    def _object(self, rng: random.Random, obj: dict) -> str | None:
        if rng.random() < self.omit_rate:
            return None
        color, shape, size = obj["color"], obj["shape"], SIZE_WORDS[obj["size"]]
        if rng.random() >= self.fidelity:
            other_color = rng.choice([c for c in COLORS if c != color])
            if rng.random() < 0.5:  # unsure between two colours, the true one in either place
                color = " or ".join(rng.sample([color, other_color], 2))
            elif rng.random() < 0.5:
                color = other_color
            else:
                shape = rng.choice([s for s in SHAPES if s != shape])
        return f"a {size} {color} {shape}"

    def describe(self, problem: dict) -> str:
        scene = json.loads(problem["scene"])
        rng = random.Random(f"caption-{self.seed}-{problem['id']}")
        family = scene["family"]
        if family == "chart":
            top = scene["axis_max"]
            parts = [f"A bar chart with {len(scene['bars'])} bars on a grid from 0 to {top}."]
            for bar in scene["bars"]:
                value = self._number(rng, bar["value"], 1, top)
                if value is not None:
                    parts.append(f"The {bar['label']} bar is {value}.")
            return " ".join(parts)
        if family == "geometry":
            if scene["shape"] == "triangle":
                shown = [self._number(rng, scene["angles"][i], 1, 178) for i in scene["shown"]]
                angles = " and ".join(f"angle {a}°" for a in shown if a is not None) or "two angles"
                return f"A triangle with {angles} marked; the third angle is marked ?."
            if scene["shape"] == "rectangle":
                sides = [f"{name} {value}" for name, value in
                         (("width", self._number(rng, scene["width"], 1, 99)),
                          ("height", self._number(rng, scene["height"], 1, 99))) if value is not None]
                return f"A rectangle with {' and '.join(sides) or 'its sides labelled'}."
            legs = [self._number(rng, leg, 1, 99) for leg in scene["legs"]]
            legs = " and ".join(f"leg {leg}" for leg in legs if leg is not None) or "two legs"
            return f"A right triangle with {legs}; the hypotenuse is marked ?."
        if family == "table":
            rows = [(row["item"], self._number(rng, row["value"], 0, 999)) for row in scene["rows"]]
            listed = ", ".join(f"{item} {value}" for item, value in rows if value is not None)
            return f"A table of items and counts with {len(rows)} rows: {listed}."
        if family == "counting":
            described = [self._object(rng, obj) for obj in scene["objects"]]
            return "A picture of objects: " + ", ".join(d for d in described if d is not None) + "."
        raise ValueError(f"problem {problem['id']}: the scripted captioner has no rule for family {family!r}")


_NUMBER_FACT = r"(about )?(\d+)"


REFLECTIONS = ("Wait, let me check {what}.", "But wait, let me check {what} again.", "Let me double-check {what}.")


class _Reading:
    """A fact as the caption states it: an exact value, "about" a value, "a or b", or unknown."""

    def __init__(self, text: str | None, about: bool = False):
        self.text, self.about = text, about

    def resolve(self, rng: random.Random, guess: Callable[[], int | str]):
        if self.text is None:
            return guess()
        if " or " in self.text:
            return rng.choice(self.text.split(" or "))
        value = int(self.text)
        if self.about:
            half = _round_step(value) // 2
            return rng.randint(max(value - half, 0), value + half)
        return value


def _number_readings(pattern: str, caption: str) -> list[_Reading]:
    return [_Reading(m.group(2), bool(m.group(1))) for m in re.finditer(pattern, caption)]


class ScriptedReasoner:
    """Writes k chains from the caption and the question only (the question's query, never the scene facts).

    Per chain, vague facts are read one way or another and missing ones guessed, so chains differ; with
    probability 1 - `fidelity` a chain slips in its computation. `verbosity` 0-3 adds restatements;
    each chain holds a self-reflection with probability `reflection_rate` (a second one with half of it).
    A reflection re-checks the values and corrects a slip, so the final answer follows the corrected step.
    `stepwise` chart and counting chains make every step copy from a few tokens back, because looking a value up
    across the chain is the step a tiny student fails at (docs/findings.md, "Teacher chains"). Tallest / shortest
    bar chains carry each option's letter beside the bar that has it and keep a running best after every value
    ("red (A) is 3, top red (A) 3. blue (B) is 4, top blue (B) 4. ...") instead of "red is 3, blue is 4, green is 1.
    4 is the largest value. The tallest bar is blue.". Value and compare chains state only the bars asked about, in
    the question's order; count chains number each asked-about object as they list it ("a small red square (1)").
    For the largest object they first copy the options in order, each followed by its letter ("The options are red
    square (A), blue circle (B)."), and conclude "the red square (A)".
    `answer_with="option"` writes a multiple-choice answer as the option's text instead of its letter (the prompt
    asks for neither, and the scorer, like MathVista's, reads both) and leaves the letters out of the reasoning:
    with letters the student found the right option and wrote the wrong letter (same section).
    """

    def __init__(self, fidelity: float = 1.0, reflection_rate: float = 0.0, verbosity: int = 1, seed: int = 0,
                 stepwise: bool = False, answer_with: AnswerWith = "letter"):
        if answer_with not in get_args(AnswerWith):
            raise ValueError(f"answer_with must be one of {get_args(AnswerWith)}, not {answer_with!r}")
        self.fidelity, self.reflection_rate, self.verbosity, self.seed = fidelity, reflection_rate, verbosity, seed
        self.stepwise, self.answer_with = stepwise, answer_with

    # -- believed scene: what the caption says, resolved for one chain ----------------------------------

    def _believe(self, problem: dict, caption: str, rng: random.Random) -> dict:
        query = json.loads(problem["scene"])["query"]
        family = problem["source"].removeprefix("synthetic/")
        if family == "chart":
            top = re.search(r"from 0 to (\d+)", caption)
            top = int(top.group(1)) if top else 9
            stated = {m.group(1): _Reading(m.group(3), bool(m.group(2)))
                      for m in re.finditer(r"The (\w+) bar is " + _NUMBER_FACT, caption)}
            asked = {"tallest": problem["choices"], "shortest": problem["choices"],
                     "compare": [query.get("a"), query.get("b")], "value": [query.get("label")]}[query["kind"]]
            # Left to right: the options name every bar in order; otherwise the caption's order.
            in_order = [*asked, *stated] if query["kind"] in ("tallest", "shortest") else [*stated, *asked]
            labels = list(dict.fromkeys(in_order))
            bars = [{"label": label, "value": stated.get(label, _Reading(None)).resolve(
                rng, lambda: rng.randint(1, top))} for label in labels]
            return {"family": family, "bars": bars, "query": query}
        if family == "geometry":
            kind = query["kind"]
            if kind == "missing_angle":
                angles = [r.resolve(rng, lambda: rng.randrange(30, 111, 10))
                          for r in _number_readings(r"angle " + _NUMBER_FACT + "°", caption)]
                angles += [rng.randrange(30, 111, 10) for _ in range(2 - len(angles))]
                return {"family": family, "shape": "triangle", "angles": [*angles[:2], 0], "shown": [0, 1],
                        "query": query}
            if kind == "hypotenuse":
                legs = [r.resolve(rng, lambda: rng.randint(2, 15))
                        for r in _number_readings(r"leg " + _NUMBER_FACT, caption)]
                legs += [rng.randint(2, 15) for _ in range(2 - len(legs))]
                return {"family": family, "shape": "right_triangle", "legs": legs[:2], "query": query}
            sides = {}
            for name in ("width", "height"):
                found = _number_readings(name + " " + _NUMBER_FACT, caption)
                sides[name] = (found[0] if found else _Reading(None)).resolve(rng, lambda: rng.randint(2, 15))
            return {"family": family, "shape": "rectangle", **sides, "query": query}
        if family == "table":
            rows_stated = re.search(r"with (\d+) rows", caption)
            stated = {m.group(1): _Reading(m.group(3), bool(m.group(2)))
                      for m in re.finditer(r"(\w+) " + _NUMBER_FACT + r"(?=[,.])", caption)}
            names = list(stated) + [n for n in list(problem["choices"]) + [query.get("a"), query.get("b")]
                                    if n and n not in stated]
            count = max(int(rows_stated.group(1)) if rows_stated else len(names), len(names))
            names += [f"unnamed{i + 1}" for i in range(count - len(names))]
            seen = [int(r.text) for r in stated.values()] or [1, 9]
            rows = [{"item": name, "value": stated.get(name, _Reading(None)).resolve(
                rng, lambda: rng.randint(min(seen), max(seen)))} for name in names]
            return {"family": family, "rows": rows, "query": query}
        if family == "counting":
            objects = [{"size": [k for k, w in SIZE_WORDS.items() if w == m.group(1)][0],
                        "color": _Reading(m.group(2)).resolve(rng, str) if " or " in m.group(2) else m.group(2),
                        "shape": m.group(3)}
                       for m in re.finditer(r"a (small|medium|big) (\w+(?: or \w+)?) (circle|square|triangle)",
                                            caption)]
            if not objects and query["kind"] == "largest":  # nothing described: guess one of the options
                color, shape = rng.choice(problem["choices"]).split()
                objects = [{"size": 3, "color": color, "shape": shape}]
            return {"family": family, "objects": objects, "query": query}
        raise ValueError(f"problem {problem['id']}: the scripted reasoner has no rule for source {problem['source']!r}")

    # -- chain text ------------------------------------------------------------------------------------

    def _is_stepwise(self, scene: dict) -> bool:
        return self.stepwise and scene["family"] in ("chart", "counting")

    def _lettered(self, label: str, choices) -> str:
        """An option's text with its letter, "red (B)", when it is one of the options and the answer is a letter."""
        choices = list(choices)
        if label not in choices or self.answer_with == "option":
            return label
        return f"{label} ({option_letter(choices.index(label))})"

    def _running_best(self, scene: dict, choices) -> str:
        """The stepwise facts of a tallest/shortest question: each value, then the best so far."""
        word, better = ("top", int.__gt__) if scene["query"]["kind"] == "tallest" else ("low", int.__lt__)
        steps, best = [], None
        for bar in scene["bars"]:
            named = self._lettered(bar["label"], choices)
            if best is None or better(bar["value"], best[1]):
                best = (named, bar["value"])
            steps.append(f"{named} is {bar['value']}, {word} {best[0]} {best[1]}.")
        return " ".join(steps)

    def _objects(self, scene: dict, choices) -> str:
        """What a counting picture shows; stepwise, a running count after each asked-about object, or for the
        largest object the options first (each with its letter when answers are letters)."""
        query, tally, listed = scene["query"], 0, []
        for o in scene["objects"]:
            item = f"a {SIZE_WORDS[o['size']]} {o['color']} {o['shape']}"
            if self._is_stepwise(scene) and query["kind"] == "count" and (o["color"], o["shape"]) == (
                    query["color"], query["shape"]):
                tally += 1
                item += f" ({tally})"
            listed.append(item)
        seen = f"I see {', '.join(listed) or 'no objects'}."
        if self._is_stepwise(scene) and query["kind"] == "largest":
            return f"The options are {', '.join(self._lettered(c, choices) for c in choices)}. {seen}"
        return seen

    def _facts(self, scene: dict, choices=()) -> str:
        family, query = scene["family"], scene["query"]
        if family == "chart":
            bars = scene["bars"]
            if self._is_stepwise(scene):
                if query["kind"] in ("tallest", "shortest"):
                    return self._running_best(scene, choices)
                # only the bars asked about, in the question's order: no lookup across a list of values
                asked = [query["label"]] if query["kind"] == "value" else [query["a"], query["b"]]
                bars = [next(b for b in bars if b["label"] == label) for label in asked]
            return ", ".join(f"{b['label']} is {b['value']}" for b in bars) + "."
        if family == "counting":
            return self._objects(scene, choices)
        if family == "table":
            return ", ".join(f"{r['item']} {r['value']}" for r in scene["rows"]) + "."
        shape = scene["shape"]
        if shape == "triangle":
            return f"The angles are {scene['angles'][0]} and {scene['angles'][1]}."
        if shape == "rectangle":
            return f"The width is {scene['width']} and the height is {scene['height']}."
        return f"The legs are {scene['legs'][0]} and {scene['legs'][1]}."

    def _steps(self, scene: dict, answer: str, choices=()) -> tuple[str, str | None, str]:
        """(question restatement, computation or None, concluding sentence ending in "is <answer>." or, for
        stepwise chains, "is <answer> (<letter>).")."""
        family, query = scene["family"], scene["query"]
        kind = query["kind"]
        if family == "chart":
            values = {b["label"]: b["value"] for b in scene["bars"]}
            if kind in ("tallest", "shortest"):
                if self._is_stepwise(scene):  # the running best is the computation
                    return f"We need the {kind} bar.", None, f"The {kind} bar is {self._lettered(answer, choices)}."
                pick = max(values.values()) if kind == "tallest" else min(values.values())
                word = "largest" if kind == "tallest" else "smallest"
                return (f"We need the {kind} bar.", f"{pick} is the {word} value.", f"The {kind} bar is {answer}.")
            if kind == "compare":
                a, b = query["a"], query["b"]
                sign = ">" if values[a] > values[b] else "<" if values[a] < values[b] else "="
                verdict = "taller" if answer == "Yes" else "not taller"
                return (f"We compare the {a} bar with the {b} bar.", f"{values[a]} {sign} {values[b]}.",
                        f"{a} is {verdict} than {b}, so the answer is {answer}.")
            return (f"We need the value of the {query['label']} bar.", f"The {query['label']} bar reaches {answer}.",
                    f"The value of the {query['label']} bar is {answer}.")
        if family == "geometry":
            if kind == "missing_angle":
                a, b = scene["angles"][:2]
                return ("The angles of a triangle add up to 180.", f"180 - {a} - {b} = {answer}.",
                        f"The missing angle is {answer}.")
            if kind == "hypotenuse":
                a, b = scene["legs"]
                return ("The hypotenuse follows from the Pythagorean theorem.",
                        f"{a}^2 + {b}^2 = {a * a + b * b}, and its square root is {answer}.",
                        f"The hypotenuse is {answer}.")
            w, h = scene["width"], scene["height"]
            if kind == "rectangle_area":
                return ("The area is width times height.", f"{w} x {h} = {answer}.", f"The area is {answer}.")
            return ("The perimeter is twice width plus height.", f"2 x ({w} + {h}) = {answer}.",
                    f"The perimeter is {answer}.")
        if family == "table":
            count = {r["item"]: r["value"] for r in scene["rows"]}
            if kind == "total":
                return ("We add all counts.", " + ".join(str(v) for v in count.values()) + f" = {answer}.",
                        f"The total is {answer}.")
            if kind == "difference":
                a, b = query["a"], query["b"]
                return (f"We subtract {b} from {a}.", f"{count[a]} - {count[b]} = {answer}.",
                        f"The difference is {answer}.")
            word = "largest" if kind == "most" else "smallest"
            pick = max(count.values()) if kind == "most" else min(count.values())
            return (f"We need the item with the {word} count.", f"{pick} is the {word} count.",
                    f"The item with the {word} count is {answer}.")
        if kind == "count":
            target = f"{query['color']} {query['shape']}s"
            return (f"We count the {target}.", f"{answer} of them are {target}.",
                    f"The number of {target} is {answer}.")
        largest = self._lettered(answer, choices) if self._is_stepwise(scene) else answer
        return ("We look for the biggest object.", "Only one object is big.", f"The largest object is the {largest}.")

    @staticmethod
    def _slip(answer: str, problem: dict, rng: random.Random) -> str:
        """A wrong step's result: another option, or a number off by 1-3."""
        others = [c for c in problem["choices"] if c != answer]
        if others:
            return rng.choice(others)
        try:
            value = float(answer)
        except ValueError:
            return answer
        wrong = value + rng.choice([-3, -2, -1, 1, 2, 3])
        return f"{wrong:.{problem['precision']}f}" if problem["answer_type"] == "float" else str(int(wrong))

    def _answer_tag(self, answer: str, problem: dict) -> str:
        """A multiple-choice answer as its option letter, or (answer_with="option") as the option's own text."""
        choices = list(problem["choices"])
        if answer in choices and self.answer_with == "letter":
            return option_letter(choices.index(answer))
        return answer

    def chain(self, problem: dict, caption: str, index: int) -> str:
        rng = random.Random(f"reason-{self.seed}-{problem['id']}-{index}")
        scene = self._believe(problem, caption, rng)
        answer = solve(scene)
        if problem["answer_type"] == "float":
            answer = f"{float(answer):.{problem['precision']}f}"
        stated = self._slip(answer, problem, rng) if rng.random() >= self.fidelity else answer
        choices = problem["choices"]
        restate, compute, conclude = self._steps(scene, stated, choices)
        sentences = ([restate] if self.verbosity >= 2 else []) + [self._facts(scene, choices)]
        sentences += ([compute] if compute and self.verbosity >= 1 else []) + [conclude]
        if self.verbosity >= 3:
            sentences.append(f"So the answer is {self._answer_tag(stated, problem)}.")
        reflections = int(rng.random() < self.reflection_rate) + int(rng.random() < self.reflection_rate / 2)
        for _ in range(reflections):  # re-check the values; a reflection is where a slip gets corrected
            _, compute, conclude = self._steps(scene, answer, choices)
            what = rng.choice(["the values", "the question", "my computation"])
            sentences += [rng.choice(REFLECTIONS).format(what=what), self._facts(scene, choices),
                          *([compute] if compute else []), conclude]
            stated = answer
        return chain_text(" ".join(sentences), self._answer_tag(stated, problem))

    def chains(self, problem: dict, caption: str, n: int) -> list[str]:
        return [self.chain(problem, caption, i) for i in range(n)]


# -- reading a chain's facts back: the sentences `ScriptedReasoner._facts` writes -----------------------


def stated_facts_right(chain: str, scene: dict | str) -> bool | None:
    """Whether every fact a chain states in the scripted form ("red is 6", "pens 4", "The width is 5 ...",
    "a small red circle") is true of the scene; None for scenes without such facts. Measures how many
    kept chains are right by luck: a correct answer reached from wrong values."""
    if not scene:
        return None
    scene = json.loads(scene) if isinstance(scene, str) else scene
    think = think_text(chain)
    family = scene["family"]
    if family == "chart":
        truth = {b["label"]: b["value"] for b in scene["bars"]}
        stated = re.findall(rf"\b({'|'.join(COLORS)})(?: \({OPTION_LETTER}\))? is (\d+)\b", think)
        return bool(stated) and all(truth.get(label) == int(value) for label, value in stated)
    if family == "table":
        truth = {r["item"]: r["value"] for r in scene["rows"]}
        stated = re.findall(r"(?:^|, |\. )([a-z]\w*) (\d+)(?=[,.])", think)
        return bool(stated) and all(truth.get(item) == int(value) for item, value in stated)
    if family == "counting":
        listed = re.search(r"I see (.*?)\.(?:\s|$)", think)
        stated = re.findall(r"\ba (?:small|medium|big) (\w+) (circle|square|triangle)\b", listed.group(1)) \
            if listed else []
        return Counter(stated) == Counter((o["color"], o["shape"]) for o in scene["objects"])
    patterns = {"triangle": (r"angles are (\d+) and (\d+)", [scene.get("angles", [0] * 3)[i]
                                                              for i in scene.get("shown", [])]),
                "rectangle": (r"width is (\d+) and the height is (\d+)", [scene.get("width"), scene.get("height")]),
                "right_triangle": (r"legs are (\d+) and (\d+)", scene.get("legs"))}
    pattern, truth = patterns[scene["shape"]]
    stated = re.findall(pattern, think)
    return bool(stated) and all([int(v) for v in pair] == list(truth) for pair in stated)
