"""MMMU-Pro's official scoring (ovlt.scoring.mmmu_pro): conformance with the official verdicts on GPT-4o's
chain-of-thought responses (shared fixtures, never copied), and the parser's rules one by one.

Measured: the port's letter equals the official `pred_indexs` on 1730/1730 items of the 10-option setting (no
fallbacks) and 1727/1727 of the vision setting (3 fallbacks: validation_Accounting_5, validation_Economics_29 and
validation_Energy_and_Power_9 name no letter and no option text, so the official parser guessed at random), with the
verdict equal to `if_right` on all of them. No disagreement remains to explain.
"""

import json
import random
import time

import pytest
from helpers import fixtures_dir

from ovlt.scoring.mmmu_pro import (
    MmmuProVerdict,
    index_to_answer,
    item_rng,
    option_letters,
    parse_multi_choice_response,
    parse_options,
    score_mmmu_pro,
    summarise,
)

FIXTURE_FILES = ("gpt4o_standard10_cot.jsonl", "gpt4o_vision_cot.jsonl")
LETTER_AGREEMENT_FLOOR = 0.995
# A fallback is an official random guess; a port that fell back on many items would be missing a rule.
MAX_FALLBACK_SHARE = 0.01


def _rows(name: str) -> list[dict]:
    folder = fixtures_dir()
    path = None if folder is None else folder / "mmmu_pro" / name
    if path is None or not path.is_file():
        pytest.skip(f"MMMU-Pro fixture {name} not found (shared/fixtures/mmmu_pro beside the project, or OVLT_FIXTURES)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_port_reproduces_official_letters_and_verdicts():
    scored = 0
    elapsed = 0.0
    for name in FIXTURE_FILES:
        rows = _rows(name)
        start = time.perf_counter()
        verdicts = [score_mmmu_pro(row["response"], row["answer"], row["options"], "official", row["id"])
                    for row in rows]
        elapsed += time.perf_counter() - start
        scored += len(rows)

        found = [(row, v) for row, v in zip(rows, verdicts, strict=True) if not v.fell_back]
        fallbacks = len(rows) - len(found)
        letters_agree = sum(v.extracted == row["pred_indexs"] for row, v in found)
        verdicts_agree = sum(v.correct == row["if_right"] for row, v in found)
        print(f"{name}: {len(rows)} items, {fallbacks} fallbacks; letter = pred_indexs on {letters_agree}/{len(found)}"
              f" = {letters_agree / len(found):.4f}; verdict = if_right on {verdicts_agree}/{len(found)}")
        assert len(rows) == 1730
        assert fallbacks <= MAX_FALLBACK_SHARE * len(rows)
        assert letters_agree / len(found) >= LETTER_AGREEMENT_FLOOR
        assert verdicts_agree / len(found) >= LETTER_AGREEMENT_FLOOR
    print(f"scoring speed: {scored / elapsed:,.0f} items/s over {scored} items ({elapsed:.3f} s)")


def test_official_protocol_reruns_give_the_same_verdicts():
    rows = _rows("gpt4o_vision_cot.jsonl")
    first = [score_mmmu_pro(r["response"], r["answer"], r["options"], "official", r["id"]) for r in rows]
    again = [score_mmmu_pro(r["response"], r["answer"], r["options"], "official", r["id"]) for r in rows]
    strict = [score_mmmu_pro(r["response"], r["answer"], r["options"], "strict", r["id"]) for r in rows]
    assert first == again
    official, strictly = summarise(first), summarise(strict)
    print(f"vision: official accuracy {official.accuracy:.4f} ({official.fallbacks} fallbacks, "
          f"{official.fallbacks_correct} guessed right); strict {strictly.accuracy:.4f}")
    assert official.fallbacks == strictly.fallbacks > 0
    assert strictly.correct == official.correct - official.fallbacks_correct


# ---------------------------------------------------------------------------------------------------------------
# the rules, one by one

OPTIONS = ["red apple", "green pear", "yellow banana", "purple plum"]


def _parse(response: str, options=OPTIONS, seed=0):
    letters, index2ans = index_to_answer(options)
    return parse_multi_choice_response(response, letters, index2ans, random.Random(seed))


def test_letters_follow_the_option_count():
    assert option_letters(4) == ["A", "B", "C", "D"]
    assert option_letters(12)[-1] == "L"
    assert index_to_answer(["x", "y"]) == (["A", "B"], {"A": "x", "B": "y"})


def test_parse_options_reads_list_strings_and_names_bad_values():
    assert parse_options("['a', 'b']") == ["a", "b"]
    assert parse_options(["a", 3]) == ["a", "3"]
    with pytest.raises(ValueError, match="not a Python list literal.*__import__"):
        parse_options("__import__('os').system('true')")
    with pytest.raises(ValueError, match="must be a list.*dict"):
        parse_options("{'a': 1}")


def test_unique_letter_after_the_last_answer_marker():
    assert _parse("I think (A) fits. Answer: C") == ("C", False)
    # the text after "Answer:" holds two letters (D, and the capital of "Because"), so the later rules decide
    assert _parse("First (A) looked right. Answer: (D) Because of the colour") == ("D", False)


def test_letter_in_parentheses():
    assert _parse("The fruit shown is (B) green pear, clearly") == ("B", False)
    # among several, the last "(X)" wins
    assert _parse("Not (A), not (D); the right one is (C) here") == ("C", False)


def test_bare_letter_and_letter_with_dot():
    assert _parse("B") == ("B", False)
    assert _parse("so I pick C because it fits") == ("C", False)
    assert _parse("it is D.") == ("D", False)  # the trailing "." is stripped, "D " remains


def test_edge_punctuation_is_stripped_one_character_at_a_time():
    # "D,." ends in "." after the "," strip, which removes nothing; the "." strip then leaves "D," with no "D " or
    # "D." in it: a strip of the whole set would have found "D ".
    assert _parse("D,.", seed=3) == (random.Random(3).choice("ABCD"), True)
    assert _parse("D.,") == ("D", False)


def test_option_text_in_a_long_response():
    assert _parse("after looking at the picture closely the fruit is a yellow banana") == ("C", False)
    # several texts: the one named last wins
    assert _parse("it looks like a red apple at first but then clearly a purple plum") == ("D", False)
    # five words or fewer: the text pass does not run, and the parser guesses
    assert _parse("a yellow banana")[1] is True


def test_nothing_found_falls_back_to_a_seeded_guess():
    letter, fell_back = _parse("i cannot tell from this image at all, sorry", seed=7)
    assert fell_back
    assert letter == random.Random(7).choice(["A", "B", "C", "D"])
    assert _parse("i cannot tell from this image at all, sorry", seed=7) == (letter, True)


def test_strict_scores_a_fallback_wrong_and_official_counts_the_guess():
    response, options = "no idea whatsoever about this one", str(OPTIONS)
    guess = score_mmmu_pro(response, "A", options, "official", seed_key="test_Art_1").extracted
    for gold in "ABCD":
        official = score_mmmu_pro(response, gold, options, "official", seed_key="test_Art_1")
        strict = score_mmmu_pro(response, gold, options, "strict", seed_key="test_Art_1")
        assert official == MmmuProVerdict(guess, True, gold == guess)
        assert strict == MmmuProVerdict("", True, False)
    assert summarise([official, strict]).fallbacks == 2


def test_same_seed_key_same_guess_other_keys_vary():
    guesses = {score_mmmu_pro("nothing here to read", "A", str(OPTIONS), seed_key=f"item_{i}").extracted
               for i in range(40)}
    assert guesses == set("ABCD")
    assert item_rng("item_1").random() == item_rng("item_1").random()


def test_found_letters_score_against_the_gold_letter():
    assert score_mmmu_pro("Answer: B", "B", str(OPTIONS)) == MmmuProVerdict("B", False, True)
    assert score_mmmu_pro("Answer: B", "C", str(OPTIONS), "strict") == MmmuProVerdict("B", False, False)
    assert score_mmmu_pro({"error": "api"}, "B", str(OPTIONS), "strict").fell_back
    with pytest.raises(ValueError, match="unknown MMMU-Pro protocol"):
        score_mmmu_pro("Answer: B", "B", str(OPTIONS), "lenient")
