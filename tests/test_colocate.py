"""What ovlt does to GRPO's colocated vLLM engine (ovlt.stages.training.colocate), without vLLM: the prompts it
sends and the check on the prompts vLLM ran. tests/test_vllm.py runs it on vLLM itself, inside TRL's trainer."""

from types import SimpleNamespace

import pytest

from ovlt.stages.training.colocate import MisalignedRollout, _unexpanded_prompts, one_placeholder_per_image

IMAGE = 9


def test_each_run_of_image_tokens_becomes_one_placeholder():
    assert one_placeholder_per_image([1, IMAGE, IMAGE, IMAGE, 2, IMAGE, IMAGE, 3], IMAGE) == [1, IMAGE, 2, IMAGE, 3]
    assert one_placeholder_per_image([IMAGE, IMAGE], IMAGE) == [IMAGE]
    assert one_placeholder_per_image([1, 2], IMAGE) == [1, 2]


def engine_expanding_to(tokens_per_image: int):
    """What vLLM does with a prompt of placeholders: each becomes the image's run of tokens."""
    sent = []

    def generate(prompts, *args, **kwargs):
        sent.extend(prompts)
        return [SimpleNamespace(prompt_token_ids=[t for token in p["prompt_token_ids"]
                                                  for t in ([token] * tokens_per_image if token == IMAGE else [token])])
                for p in prompts]

    return generate, sent


def test_vllm_gets_placeholders_and_the_trainer_prompt_must_come_back():
    trainer_ids = [1, IMAGE, IMAGE, IMAGE, 2]
    generate, sent = engine_expanding_to(3)
    outputs = _unexpanded_prompts(generate, IMAGE)([{"prompt_token_ids": trainer_ids, "multi_modal_data": {}}])
    assert sent[0]["prompt_token_ids"] == [1, IMAGE, 2] and outputs[0].prompt_token_ids == trainer_ids


def test_a_rollout_on_another_prompt_stops_the_step_naming_it():
    generate, _ = engine_expanding_to(4)  # the engine's processor resizes to 4 tokens, the trainer's to 3
    prompts = [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [1, IMAGE, IMAGE, IMAGE], "multi_modal_data": {}}]
    with pytest.raises(MisalignedRollout, match=r"rollout prompt 1: vLLM ran 5 tokens \(4 image tokens\), the "
                                                r"trainer scores 4 \(3 image tokens\)"):
        _unexpanded_prompts(generate, IMAGE)(prompts)
