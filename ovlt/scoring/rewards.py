"""TRL reward functions and the table GRPO reads them by (`REWARDS`), side by side as open-r1 keeps them.

Ours: `accuracy_reward` (the strict protocol's verdict) and `format_reward` (`well_formed`); the authors' (their r1v.py):
`r1v_reward` and `r1v_format_reward`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ovlt.scoring.chains import split_reasoning, well_formed
from ovlt.scoring.matching import SYMPY_WORKER, authors_gold, score


def _completion_text(completion) -> str:
    """TRL passes plain strings, or conversational lists [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] if isinstance(m["content"], str) else
                   "".join(part.get("text", "") for part in m["content"]) for m in completion)


def accuracy_reward(completions, answer, answer_type, choices, precision, **kwargs) -> list[float]:
    """TRL reward: 1.0 when the completion's answer is right under the strict protocol, else 0.0."""
    return [float(score(_completion_text(c), a, t, ch or (), -1 if p is None else p).correct)
            for c, a, t, ch, p in zip(completions, answer, answer_type, choices, precision, strict=True)]


def format_reward(completions, **kwargs) -> list[float]:
    """TRL reward: 1.0 for a well-formed think/answer completion, else 0.0."""
    return [float(well_formed(_completion_text(c))) for c in completions]


# The authors' GRPO reward (train/easyr1/examples/reward_function/r1v.py), read as r1v.py reads a completion.
_R1V_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # the first tag whose content fits on one line
_R1V_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)  # the whole completion
R1V_NO_BRIDGE_PENALTY = 0.5


def _r1v_accuracy(text: str, gold: str) -> float:
    found = _R1V_ANSWER.search(text)
    given = found.group(1).strip() if found else text.strip()
    if not (given.lower() == gold.lower() or SYMPY_WORKER.grade_answer(given, gold.strip())):
        return 0.0
    # r1v.py punishes a right answer with nothing between the last </think> and the <answer> after it.
    no_bridge = "</think>" in text and "<answer>" in text and not split_reasoning(text)[1].split("<answer>")[0].strip()
    return 1.0 - R1V_NO_BRIDGE_PENALTY if no_bridge else 1.0


def r1v_reward(completions, answer, answer_type, choices, **kwargs) -> list[float]:
    """TRL reward, the authors' (r1v.py): 1.0 when the content of the first one-line <answer>...</answer> (without
    one, the whole completion) equals the gold ignoring case or by mathruler's grade_answer, 0.5 when it does but
    nothing stands between </think> and <answer>, else 0.0. A multiple-choice gold is its option's letter."""
    return [_r1v_accuracy(_completion_text(c), authors_gold(str(a), t, ch))
            for c, a, t, ch in zip(completions, answer, answer_type, choices, strict=True)]


def r1v_format_reward(completions, **kwargs) -> list[float]:
    """TRL reward, the authors' format score (r1v.py; logged, not rewarded): 1.0 when the completion is exactly
    <think>...</think>, whitespace, <answer>...</answer>, with nothing before or after."""
    return [float(_R1V_FORMAT.fullmatch(_completion_text(c)) is not None) for c in completions]


@dataclass(frozen=True)
class Reward:
    """A reward function as GRPO uses it: the function, what it measures (`accuracy` or `format`) and its weight
    when `grpo.reward_weights` is not given (None: `grpo.format_reward_weight`)."""

    function: Callable[..., list[float]]
    kind: str
    default_weight: float | None


# Every name the config may give (ovlt.ground.config.RewardName), each the name of its function.
REWARDS = {
    "accuracy_reward": Reward(accuracy_reward, "accuracy", 1.0),
    "format_reward": Reward(format_reward, "format", None),
    "r1v_reward": Reward(r1v_reward, "accuracy", 1.0),
    "r1v_format_reward": Reward(r1v_format_reward, "format", 0.0),  # logged, not rewarded, as the authors ran it
}


def logged_as(name: str) -> str:
    """The key TRL logs a reward's mean under, each step (a weight-0 reward's too)."""
    return f"rewards/{name}/mean"
