"""HallusionBench scoring (ovlt.scoring.hallusionbench): the authors' yes/no verdict, and the benchmark's aggregates
on a hand-made set of questions whose metrics are counted by hand below.

(When written, `aggregate` was also checked against the official get_eval_all / get_eval_pair_all / get_eval_fig /
get_eval_pair_easy / _hard and assign_correctness, run on all 1,129 questions of HallusionBench.json with random
judge codes under five seeds: the same totals and accuracies every time. The official code is not shipped here.)
"""

import pytest

from ovlt.scoring.hallusionbench import (
    HallusionBenchMetrics,
    YesNoVerdict,
    aggregate,
    gold_word,
    official_correct,
    yes_no_verdict,
)


def _row(category, subcategory, set_id, figure_id, question_id, visual_input, correct):
    return {"category": category, "subcategory": subcategory, "set_id": set_id, "figure_id": figure_id,
            "question_id": question_id, "visual_input": visual_input, "correct": correct}


# VD illusion set 0: two questions, each asked about the original figure (0) and an edited one (1).
# VS chart set 1: one question asked without its figure (0) and with it (1).
# VS map set 2: one question asked without the figure, with the original and with an edited one.
ROWS = [
    _row("VD", "illusion", "0", "0", "0", "1", True),
    _row("VD", "illusion", "0", "1", "0", "2", False),  # pair VD/illusion/0/q0: one right, one wrong
    _row("VD", "illusion", "0", "0", "1", "1", True),
    _row("VD", "illusion", "0", "1", "1", "2", True),
    _row("VS", "chart", "1", "0", "0", "0", False),  # no figure: in aAcc and qAcc, not in fAcc
    _row("VS", "chart", "1", "1", "0", "1", True),
    _row("VS", "map", "2", "0", "0", "0", True),
    _row("VS", "map", "2", "1", "0", "1", True),
    _row("VS", "map", "2", "2", "0", "2", True),
]


def test_metrics_of_a_hand_counted_set():
    metrics = aggregate(ROWS)
    # questions: 7 of 9 right
    assert (metrics.questions, metrics.correct_questions) == (9, 7)
    # pairs: VD q0 (wrong: its edited-figure question), VD q1 (right), VS chart q0 (wrong: the no-figure question),
    # VS map q0 (right: all three)
    assert (metrics.pairs, metrics.correct_pairs) == (4, 2)
    # figures: VD fig 0 (both questions right), VD fig 1 (q0 wrong), VS chart fig 1, VS map figs 1 and 2
    assert (metrics.figures, metrics.correct_figures) == (5, 4)
    # easy (visual_input != "2"): VD q0 and q1 right on fig 0, VS chart q0 wrong, VS map q0 right
    assert (metrics.easy_pairs, metrics.correct_easy_pairs) == (4, 3)
    # hard (visual_input == "2"): VD q0 wrong, VD q1 right, VS map q0 right
    assert (metrics.hard_pairs, metrics.correct_hard_pairs) == (3, 2)
    assert metrics.question_pair_accuracy == pytest.approx(0.5)
    assert metrics.figure_accuracy == pytest.approx(0.8)
    assert metrics.all_question_accuracy == metrics.accuracy == pytest.approx(7 / 9)
    assert metrics.as_dict()["figure_accuracy"] == pytest.approx(0.8)


def test_grouping_keys_keep_sets_and_categories_apart_and_ids_compare_as_strings():
    rows = [_row("VD", "math", 0, 0, 0, 1, True), _row("VD", "math", 1, 0, 0, 1, False),
            _row("VS", "math", "0", "1", "0", "1", False)]
    metrics = aggregate(rows)
    assert (metrics.pairs, metrics.correct_pairs) == (3, 1)
    assert (metrics.figures, metrics.correct_figures) == (3, 1)
    with pytest.raises(ValueError, match="VD_math_0_0_0 occurs twice"):
        aggregate([*rows, _row("VD", "math", "0", "0", "0", "1", True)])


def test_rows_need_every_grouping_field():
    row = dict(ROWS[0])
    del row["set_id"]
    with pytest.raises(ValueError, match="lacks set_id"):
        aggregate([row])
    assert aggregate([]) == HallusionBenchMetrics(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_judge_codes_follow_assign_correctness():
    assert official_correct("1", "VD", "0")
    assert not official_correct("0", "VS", "0")
    assert official_correct("2", "VS", "0")  # no figure, and the model says it cannot tell: right
    assert not official_correct("2", "VS", "1")
    assert not official_correct(2, "VD", 0)
    with pytest.raises(ValueError, match="judgement"):
        official_correct("3", "VD", "0")


def test_gold_codes_are_yes_and_no():
    assert (gold_word("1"), gold_word(0)) == ("Yes", "No")
    with pytest.raises(ValueError, match="'1' \\(Yes\\) or '0' \\(No\\)"):
        gold_word("2")


def test_yes_no_verdict_reads_the_box_then_the_whole_response():
    assert yes_no_verdict("<think>the sizes match</think> \\boxed{Yes}", "1") == YesNoVerdict("Yes", True)
    assert yes_no_verdict("\\boxed{no}", "0") == YesNoVerdict("no", True)  # case ignored
    assert yes_no_verdict("\\boxed{Yes}", "0") == YesNoVerdict("Yes", False)
    assert yes_no_verdict("\\boxed{\\text{Yes}}", "1").correct  # mathruler drops the \text{} wrapper
    assert yes_no_verdict("  No ", "0") == YesNoVerdict("no", True)  # no box: the whole response, lower-cased
    # The authors' rule reads no yes/no from prose: a sentence that starts with the right word is still wrong.
    assert not yes_no_verdict("Yes, the two circles are the same size.", "1").correct
    assert yes_no_verdict("", "1") == YesNoVerdict("", False)
    assert yes_no_verdict(None, "0") == YesNoVerdict("", False)
