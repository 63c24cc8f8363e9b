"""A reasoner's response (DeepSeek-R1-Distill's and other <think> reasoners') read as a think/answer chain.

`reasoner_chain` keeps a response as `<think>reasoning</think>` + `<answer>final answer</answer>` (the final answer read
by `ovlt.scoring.extraction.extract`), repairs it (`REASONER_REPAIRS`) or says why it was dropped (`REASONER_DROPS`),
so the teachers build their chains exactly as the scorer reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ovlt.scoring.chains import chain_text
from ovlt.scoring.extraction import extract


@dataclass(frozen=True)
class ReasonerChain:
    """A reasoner's response in the think/answer format: `chain` (None when dropped) and `cause`: "kept", a
    repair (`REASONER_REPAIRS`) or the reason it was dropped (`REASONER_DROPS`)."""
    chain: str | None
    cause: str


REASONER_DROPS = {
    "empty_response": "the response is empty",
    "unclosed_think": "the reasoning never closes with </think>: no final answer follows it",
    "empty_reasoning": "nothing stands between <think> and </think>",
    "tags_in_reasoning": "the reasoning names a <think>/<answer> tag or drafts one: no chain built from it is well "
                         "formed",
    "refusal": "the final answer declines to answer",
    "no_answer": "no final answer after the reasoning",
}
REASONER_REPAIRS = {"restated_think": "a think block restated after the reasoning was set aside; the answer is read "
                                      "from the text around it"}
_THINK_TAGS = re.compile(r"</?think>")
_CHAIN_TAGS = re.compile(r"</?(?:think|answer)>")
_RESTATED_THINK = re.compile(r"<think>(?:(?!</?think>).)*</think>", re.DOTALL)


def _closing_think(body: str) -> int | None:
    """Where the </think> that closes the already open reasoning block stands in `body`, or None: a <think> inside
    opens a nested block that its own </think> closes ("put it inside <think> </think> tags")."""
    depth = 1
    for tag in _THINK_TAGS.finditer(body):
        depth += 1 if tag.group() == "<think>" else -1
        if depth == 0:
            return tag.start()
    return None


def reasoner_chain(response: str, choices=()) -> ReasonerChain:
    """A reasoner's response as `<think>reasoning</think>` + `<answer>final answer</answer>`, or why it was dropped.

    The reasoning is the text of the block the chat template opened (R1-Distill's later template ends the prompt in
    `<think>\\n`) or that the response opens itself (its first template), up to the </think> that closes it. The
    final answer is read by `extract` from what follows. A think block restated after the reasoning (R1 asked for the
    student's tags writes `...</think>\\n\\n<think>summary</think>\\n<answer>X</answer>`) is not the reasoning:
    it is set aside and counted (`restated_think`). A response whose think never closes holds no final answer (as
    vLLM's R1 reasoning parser reads it: all reasoning). Reasoning that holds a tag is dropped, never repaired, so
    every chain returned is `well_formed`.
    """
    text = (response or "").strip()
    if not text:
        return ReasonerChain(None, "empty_response")
    body = text.removeprefix("<think>")
    close = _closing_think(body)
    if close is None:
        return ReasonerChain(None, "unclosed_think")
    reasoning, rest = body[:close].strip(), body[close + len("</think>"):]
    if not reasoning:
        return ReasonerChain(None, "empty_reasoning")
    if _CHAIN_TAGS.search(reasoning):
        return ReasonerChain(None, "tags_in_reasoning")
    cause = "kept"
    if _THINK_TAGS.search(rest):
        rest, restated = _RESTATED_THINK.subn("\n", rest)
        if _THINK_TAGS.search(rest):  # a stray </think>: the one that seemed to close the reasoning was a tag word
            return ReasonerChain(None, "tags_in_reasoning")
        cause = "restated_think" if restated else cause
    found = extract(rest, choices)
    if found.rule == "refusal":
        return ReasonerChain(None, "refusal")
    if found.rule == "none" or not found.text.strip() or _CHAIN_TAGS.search(found.text):
        return ReasonerChain(None, "no_answer")
    return ReasonerChain(chain_text(reasoning, found.text.strip()), cause)
