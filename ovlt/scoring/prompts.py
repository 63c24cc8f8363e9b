"""The student's prompt: one builder for SFT data, self-generation, difficulty selection, GRPO and evaluation.

Training and evaluation must show the student the same text for the same problem, so every stage builds
its chat here.
"""

from __future__ import annotations

from ovlt.ground.schema import format_question
from ovlt.scoring.chains import REASONING_INSTRUCTION


def student_text(problem: dict, instruction: str = REASONING_INSTRUCTION) -> str:
    """Question (with lettered options) followed by the think/answer instruction."""
    return f"{format_question(problem)}\n{instruction}" if instruction else format_question(problem)


def student_chat(text: str, with_image: bool = True, images: int = 1) -> list[dict]:
    """A one-turn user chat in the transformers/TRL conversational format, the image (or `images` of them) before the
    text."""
    content = [{"type": "image"}] * (images if with_image else 0) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def assistant_turn(text: str) -> list[dict]:
    """A completion in TRL's conversational prompt/completion format."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
