"""A language-model judge for free-form answers: any OpenAI-compatible chat-completions endpoint.

The authors re-checked their MathVerse verdicts with GPT-4 (`evaluation/verify_mathverse_gpt4.py` in their
repository): the benchmark's instruction, the gold answer and the model's extracted answer go to the judge, which
ends its reply with "Judgement: Yes" or "Judgement: No". `ChatJudge` asks the same question of any endpoint that
speaks the chat-completions API (a local vLLM server, or a hosted one), in its own words (`JUDGE_PROMPT`), at
temperature 0 so that a rerun asks the same. The evaluation stage asks it only about free-form answers the rules
marked wrong, and keeps the rules' verdicts beside the judged ones.

Only the standard library is used (urllib), so the judge adds no dependency.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ovlt.ground.config import Judge

JUDGE_PROMPT = """You are checking a model's answer to a math question about an image against the correct answer.
You cannot see the image, and you do not need to: the question and the correct answer are enough to decide.

Question: {instruction}
Correct answer: {gold}
Model's answer: {prediction}

Is the model's answer equivalent to the correct answer (the same value, expression or option, in whatever form it
is written)? Reason briefly, then end with one line that reads exactly "Judgement: Yes" or "Judgement: No"."""

_JUDGEMENT = re.compile(r"judge?ment\s*:\s*\**\s*(yes|no)\b", re.IGNORECASE)


class JudgeError(RuntimeError):
    """The judge endpoint could not be asked or did not answer as a chat-completions endpoint does."""


def parse_judgement(reply: str) -> bool | None:
    """The verdict a reply ends with ("Judgement: Yes" / "Judgement: No", the last one counts; a bare "Yes" or
    "No" too), else None."""
    found = _JUDGEMENT.findall(reply or "")
    if found:
        return found[-1].lower() == "yes"
    bare = (reply or "").strip().rstrip(".").lower()
    return {"yes": True, "no": False}.get(bare)


@dataclass(frozen=True)
class ChatJudge:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    max_tokens: int = 1024
    concurrency: int = 8

    @classmethod
    def from_config(cls, judge: Judge) -> ChatJudge:
        """The configured judge; the API key is read from the environment variable the config names."""
        key = None
        if judge.api_key_env:
            key = os.environ.get(judge.api_key_env)
            if not key:
                raise JudgeError(f"evaluation.judge.api_key_env names {judge.api_key_env!r}, which is not set in the "
                                 f"environment (the judge at {judge.base_url} needs its key there)")
        return cls(judge.base_url, judge.model, key, judge.timeout_s, judge.max_tokens, judge.concurrency)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def describe(self) -> dict:
        """What summary.json records of the judge: where, which model, how it was asked (never the key)."""
        return {"endpoint": self.url, "model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "prompt": JUDGE_PROMPT}

    def ask(self, instruction: str, gold: str, prediction: str) -> dict:
        """One question: {"correct": True / False / None (no verdict in the reply), "reply": the judge's text}."""
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "user", "content": JUDGE_PROMPT.format(
                    instruction=instruction, gold=gold, prediction=prediction)}]}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):  # a read time-out comes bare, a connect time-out inside URLError
                raise JudgeError(f"judge endpoint {self.url} did not answer within {self.timeout_s:g} s "
                                 f"(evaluation.judge.timeout_s)") from None
            raise JudgeError(f"judge endpoint {self.url} is unreachable: {reason}") from None
        try:
            reply = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.url} answered without choices[0].message.content: "
                             f"{raw[:300].decode('utf-8', 'replace')}") from None
        return {"correct": parse_judgement(reply), "reply": reply}

    def ask_many(self, questions: list[tuple[str, str, str]]) -> list[dict]:
        """`ask` for each (instruction, gold, prediction), `concurrency` at a time, in order; the first failure
        raises."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda q: self.ask(*q), questions))
