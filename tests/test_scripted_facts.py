"""The scripted reasoner's facts read back: `stated_facts_right` parses the sentences `ScriptedReasoner` writes.

A chain written from a faithful caption states only true facts, and reads back as right; the same chain with one
stated value changed (a bar's value, a table count, an angle, a side, an object's colour) reads back as wrong. The
change is made from the scene, in the writer's own words, not with the reader's patterns.
"""

import json
import re
from collections import Counter

import pytest

from ovlt.engines import scripted
from ovlt.ground.procedural import COLORS, QUESTION_KINDS, generate, question_kind

REASONERS = {
    "terse": scripted.ScriptedReasoner(verbosity=0),
    "chatty": scripted.ScriptedReasoner(verbosity=3),
    "stepwise": scripted.ScriptedReasoner(verbosity=1, stepwise=True),
    "options": scripted.ScriptedReasoner(verbosity=1, stepwise=True, answer_with="option"),
    "slipping and reflecting": scripted.ScriptedReasoner(fidelity=0.0, reflection_rate=1.0, verbosity=2),
}
PER_KIND = 3


@pytest.fixture(scope="module")
def problems_by_kind():
    by_kind = {}
    for row in generate(160, 5, "train"):
        by_kind.setdefault((row["source"].removeprefix("synthetic/"), question_kind(row)), []).append(row)
    return by_kind


def one_value_changed(chain: str, scene: dict) -> str:
    """`chain` with the first fact it states about the scene made false, in the writer's words (`_facts`); the
    answer and every other fact kept."""
    think, sep, rest = chain.partition("</think>")
    family = scene["family"]
    if family == "counting":  # an object's colour: "a small red circle" -> "a small blue circle"
        first = scene["objects"][0]
        pattern = f"a {scripted.SIZE_WORDS[first['size']]} (?P<value>{first['color']}) {first['shape']}"
        new = next(c for c in COLORS if c != first["color"])
    else:  # a number one more: "red is 6" -> "red is 7", "pens 4," -> "pens 5,", "angles are 30" -> "angles are 31"
        if family == "chart":
            facts = [(rf"\b{b['label']}(?: \([A-E]\))? is ", b["value"]) for b in scene["bars"]]
        elif family == "table":
            facts = [(rf"\b{r['item']} ", r["value"]) for r in scene["rows"]]
        elif scene["shape"] == "triangle":
            facts = [("angles are ", scene["angles"][scene["shown"][0]])]
        elif scene["shape"] == "rectangle":
            facts = [("width is ", scene["width"])]
        else:
            facts = [("legs are ", scene["legs"][0])]
        said = [(m.start(), words, value) for words, value in facts
                for m in [re.search(rf"{words}{value}(?![\d])", think)] if m]
        assert said, f"no fact of the scene stated in {think!r}"
        _, words, value = min(said)
        pattern, new = rf"{words}(?P<value>{value})(?![\d])", str(value + 1)
    found = re.search(pattern, think)
    assert found, f"no fact of the scene stated in {think!r}"
    return think[: found.start("value")] + new + think[found.end("value"):] + sep + rest


def test_scripted_chains_read_back_right_and_with_one_value_changed_wrong(problems_by_kind):
    kinds = {(family, kind) for family, family_kinds in QUESTION_KINDS.items() for kind in family_kinds}
    assert set(problems_by_kind) == kinds
    captioner = scripted.ScriptedCaptioner(fidelity=1.0, omit_rate=0.0)
    checked = Counter()
    for (family, kind), rows in sorted(problems_by_kind.items()):
        assert len(rows) >= PER_KIND, (family, kind)
        for row in rows[:PER_KIND]:
            scene = json.loads(row["scene"])
            for name, reasoner in REASONERS.items():
                chain = reasoner.chain(row, captioner.describe(row), 0)
                assert scripted.stated_facts_right(chain, row["scene"]) is True, (name, chain, scene)
                assert scripted.stated_facts_right(chain, scene) is True  # a scene as a dict reads the same
                wrong = one_value_changed(chain, scene)
                assert wrong != chain
                assert scripted.stated_facts_right(wrong, row["scene"]) is False, (name, wrong, scene)
                checked[family] += 1
    assert all(checked[family] >= PER_KIND * len(QUESTION_KINDS[family]) * len(REASONERS) for family in QUESTION_KINDS)


def test_a_lossy_caption_gives_chains_with_wrong_facts_that_read_back_wrong(problems_by_kind):
    """Misread values in the caption reach the chain: some chains state wrong facts, and those read back wrong."""
    lossy = scripted.ScriptedCaptioner(fidelity=0.5, omit_rate=0.0, seed=1)
    reasoner = scripted.ScriptedReasoner(verbosity=1)
    verdicts = [scripted.stated_facts_right(reasoner.chain(row, lossy.describe(row), 0), row["scene"])
                for rows in problems_by_kind.values() for row in rows]
    assert True in verdicts and False in verdicts
