"""HallusionBench scoring: the OpenVLThinker authors' rule-based yes/no verdict, and the benchmark's own aggregate
metrics, ported into our own code.

The verdict (qghuxmu/OpenVLThinker, `evaluation/eval_qwen.py` at commit 487bd2815ef00724484c3e8b23a668f58aa28bb5):
the gold `gt_answer` "1" is the word "Yes", "0" is "No". A response is right when either of two candidates equals the
gold word ignoring case, or by mathruler's `grade_answer(gold, candidate)` (their argument order): the content of
the response's last \\boxed{} (mathruler's extract_boxed_content), then the whole response lower-cased and stripped
(their `reasoning.lower().split("Answer:")[-1]` can never split a lower-cased text, so it is the whole response). An
empty response is wrong. This is the `authors` protocol of `ovlt.scoring.matching`, which runs mathruler in the
scorer's worker under its time limit; `yes_no_verdict` calls it with the gold word. (Their eval_openvlthinker.py reads
the <answer>...</answer> content instead of the box; the study scores the eval_qwen.py way.)

The aggregates (tianyi-lab/HallusionBench, `evaluation.py` and `utils.py` at commit
744007c232c292942c7f80eb61edb2465482da31). Each question is a row with `category` ("VD" visual dependent, "VS"
visual supplement), `subcategory`, `set_id`, `figure_id` ("0" the original figure, or for VS no figure at all),
`question_id`, `visual_input` ("0" no image, "1" the original image, "2" an edited image) and whether it was
answered correctly. All ids are compared as strings (the official code joins str() of them).
  - all-question accuracy, aAcc (get_eval_all): one entry per (category, subcategory, set_id, figure_id,
    question_id), which must be unique; the share answered correctly.
  - question-pair accuracy, qAcc (get_eval_pair_all): questions grouped by (category, subcategory, set_id,
    question_id), i.e. the same question asked about every figure of a set (original and edited, or without and with
    the figure); a group counts only when all its questions are correct.
  - figure accuracy, fAcc (get_eval_fig): questions grouped by (category, subcategory, set_id, figure_id), leaving
    out the VS questions with figure_id "0" (asked without any figure); a figure counts only when all its questions
    are correct.
  - easy / hard question-pair accuracy (get_eval_pair_easy / _hard, the leaderboard's "easy aAcc" and "hard aAcc"):
    qAcc over the questions with visual_input other than "2", and over those with visual_input "2".
  - plain accuracy: correct rows over rows, as the authors' harness reports it; equal to aAcc since keys are unique.
Metrics are fractions in [0, 1] (the official tables print 100 x, rounded to 4 places); an empty group set gives 0.

When correctness comes from a judge's code ("1" correct, "0" incorrect, "2" unclear) rather than a rule,
`official_correct` applies assign_correctness: "unclear" counts as correct only for a VS question asked without its
figure (figure_id "0"), where not knowing is the right answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ovlt.scoring.matching import score

YES, NO = "Yes", "No"
GROUPING_FIELDS = ("category", "subcategory", "set_id", "figure_id", "question_id", "visual_input")
# visual_input of a question about an edited figure: the "hard" questions
EDITED_FIGURE = "2"
NO_FIGURE = "0"


def gold_word(gt_answer) -> str:
    """The word a gold `gt_answer` stands for: "1" -> "Yes", "0" -> "No" (also as ints)."""
    code = str(gt_answer).strip()
    if code == "1":
        return YES
    if code == "0":
        return NO
    raise ValueError(f"HallusionBench gt_answer must be '1' (Yes) or '0' (No), got {gt_answer!r}")


@dataclass(frozen=True)
class YesNoVerdict:
    extracted: str  # the \\boxed{} content the verdict read, or the lower-cased response when that matched; "" if none
    correct: bool


def yes_no_verdict(response: str | None, gt_answer) -> YesNoVerdict:
    """The authors' verdict on one HallusionBench question (see the module docstring)."""
    verdict = score(response or "", gold_word(gt_answer), "text", protocol="authors")
    return YesNoVerdict(verdict.extracted, verdict.correct)


def official_correct(judgement, category: str, figure_id) -> bool:
    """assign_correctness: a judge's code "1" is correct; "2" (unclear) too for a VS question without its figure."""
    code = str(judgement).strip()
    if code not in ("0", "1", "2"):
        raise ValueError(f"HallusionBench judgement must be '0', '1' or '2', got {judgement!r}")
    if str(category) == "VS" and str(figure_id) == NO_FIGURE:
        return code in ("1", "2")
    return code == "1"


@dataclass(frozen=True)
class HallusionBenchMetrics:
    questions: int
    correct_questions: int
    pairs: int
    correct_pairs: int
    figures: int
    correct_figures: int
    easy_pairs: int
    correct_easy_pairs: int
    hard_pairs: int
    correct_hard_pairs: int

    @staticmethod
    def _share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    @property
    def question_pair_accuracy(self) -> float:  # qAcc
        return self._share(self.correct_pairs, self.pairs)

    @property
    def figure_accuracy(self) -> float:  # fAcc
        return self._share(self.correct_figures, self.figures)

    @property
    def all_question_accuracy(self) -> float:  # aAcc
        return self._share(self.correct_questions, self.questions)

    @property
    def accuracy(self) -> float:
        return self.all_question_accuracy

    @property
    def easy_pair_accuracy(self) -> float:
        return self._share(self.correct_easy_pairs, self.easy_pairs)

    @property
    def hard_pair_accuracy(self) -> float:
        return self._share(self.correct_hard_pairs, self.hard_pairs)

    def as_dict(self) -> dict[str, float | int]:
        return {"question_pair_accuracy": self.question_pair_accuracy, "figure_accuracy": self.figure_accuracy,
                "all_question_accuracy": self.all_question_accuracy, "accuracy": self.accuracy,
                "easy_pair_accuracy": self.easy_pair_accuracy, "hard_pair_accuracy": self.hard_pair_accuracy,
                "questions": self.questions, "pairs": self.pairs, "figures": self.figures}


def _all_correct(groups: dict[tuple, bool]) -> tuple[int, int]:
    return len(groups), sum(groups.values())


def _mark(groups: dict[tuple, bool], key: tuple, correct: bool) -> None:
    groups[key] = groups.get(key, True) and correct


def aggregate(rows: Iterable[Mapping]) -> HallusionBenchMetrics:
    """qAcc, fAcc, aAcc, easy/hard qAcc and plain accuracy of per-question rows: mappings with GROUPING_FIELDS and a
    `correct` bool. A question key that repeats raises ValueError (the official get_eval_all asserts it)."""
    questions: dict[tuple, bool] = {}
    pairs: dict[tuple, bool] = {}
    easy_pairs: dict[tuple, bool] = {}
    hard_pairs: dict[tuple, bool] = {}
    figures: dict[tuple, bool] = {}
    for row in rows:
        missing = [name for name in (*GROUPING_FIELDS, "correct") if name not in row]
        if missing:
            raise ValueError(f"HallusionBench row lacks {', '.join(missing)}: {dict(row)!r:.300}")
        category, subcategory, set_id, figure_id, question_id, visual_input = (str(row[n]) for n in GROUPING_FIELDS)
        correct = bool(row["correct"])
        question = (category, subcategory, set_id, figure_id, question_id)
        if question in questions:
            raise ValueError(f"HallusionBench question {'_'.join(question)} occurs twice")
        questions[question] = correct
        pair = (category, subcategory, set_id, question_id)
        _mark(pairs, pair, correct)
        _mark(hard_pairs if visual_input == EDITED_FIGURE else easy_pairs, pair, correct)
        if not (category == "VS" and figure_id == NO_FIGURE):
            _mark(figures, (category, subcategory, set_id, figure_id), correct)
    return HallusionBenchMetrics(*_all_correct(questions), *_all_correct(pairs), *_all_correct(figures),
                                 *_all_correct(easy_pairs), *_all_correct(hard_pairs))
