"""The think/answer format the student learns (`REASONING_INSTRUCTION`): the one place that writes and reads its tags.

`chain_text` writes a chain, `think_text` / `answer_text` / `split_reasoning` read its parts, `well_formed` checks its
form, so curation, the teachers, the scorer and the rewards read a chain alike (`ovlt.scoring.reasoners` turns a
reasoner's response into one).
"""

from __future__ import annotations

import re

REASONING_INSTRUCTION = (
    "You should first think through the reasoning process inside <think> </think> tags, "
    "then give the final answer inside <answer> </answer> tags."
)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
WELL_FORMED = re.compile(r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)*"
                         r"</answer>\s*(?:<\|im_end\|>|<\|endoftext\|>|</s>)?\s*", re.DOTALL)


def chain_text(think: str, answer: str) -> str:
    """A chain in the format the student learns: `<think>think</think>`, a new line, `<answer>answer</answer>`."""
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def _last_answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    return text[start + len("<answer>") : end] if start >= 0 else None


def answer_text(chain: str) -> str | None:
    """The content of the chain's last <answer>...</answer>, trimmed, or None."""
    tagged = _last_answer_tag(chain)
    return tagged.strip() if tagged is not None else None


def think_text(chain: str) -> str:
    """The reasoning of a chain: inside its first <think>...</think>, else everything before <answer>; trimmed."""
    found = _THINK.search(chain)
    return (found.group(1) if found else chain.split("<answer>")[0]).strip()


def split_reasoning(response: str) -> tuple[str, str]:
    """(reasoning, rest) of a reasoner's response. With a </think>: the text before the last one, from the last
    <think> (R1-distill's chat template opens <think> in the prompt, so a response may start inside it), and the
    text after it. Without: the text before the first <answer> less any <think>, and the response from that
    <answer> on; when nothing follows an <answer> (or there is none), the rest is the text before it."""
    if "</think>" in response:
        think, _, rest = response.rpartition("</think>")
        return think.split("<think>")[-1], rest
    think, _, rest = response.partition("<answer>")
    return think.replace("<think>", ""), ("<answer>" + rest if rest else think)


def well_formed(text: str) -> bool:
    """<think>...</think> then <answer>...</answer>, and nothing after </answer> but whitespace or an eos token."""
    return WELL_FORMED.fullmatch(text or "") is not None
