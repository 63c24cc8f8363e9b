"""What ovlt does to GRPO's colocated vLLM engine (ovlt.stages.training.colocate), without vLLM: the prompts it
sends and the check on the prompts vLLM ran. tests/test_vllm.py runs it on vLLM itself, inside TRL's trainer."""

from types import SimpleNamespace

import pytest

from ovlt.stages.training.colocate import MisalignedRollout, _unexpanded_prompts, unexpanded

IMAGE, START, END, ROW, NEWLINE = 9, 7, 8, 6, 5


def test_each_images_expansion_goes_back_to_its_placeholder():
    # Qwen: a run of image tokens
    assert unexpanded([1, IMAGE, IMAGE, IMAGE, 2, IMAGE, IMAGE, 3], [[IMAGE] * 3, [IMAGE] * 2], [IMAGE]) == [
        1, IMAGE, 2, IMAGE, 3]
    # InternVL: the run inside start and end tokens, which the placeholder does not write
    assert unexpanded([1, START, IMAGE, IMAGE, END, 2], [[START, IMAGE, IMAGE, END]], [IMAGE]) == [1, IMAGE, 2]
    # SmolVLM: a grid of tiles, each with its own tokens, rows ended by newlines
    grid = [START, ROW, IMAGE, IMAGE, START, ROW, IMAGE, IMAGE, NEWLINE, START, IMAGE, IMAGE, START]
    assert unexpanded([1, *grid, 2, *grid], [grid, grid], [IMAGE]) == [1, IMAGE, 2, IMAGE]
    assert unexpanded([1, 2], [], [IMAGE]) == [1, 2]


def test_an_image_the_trainer_expanded_otherwise_is_refused():
    with pytest.raises(MisalignedRollout, match=r"image 1 of a rollout prompt: its expansion \(3 tokens\)"):
        unexpanded([1, IMAGE, IMAGE, 2, IMAGE, IMAGE], [[IMAGE] * 2, [IMAGE] * 3], [IMAGE])


class _Expansions:
    """The trainer's processor, as `colocate.ImageExpansions`: each image a run of `tokens_per_image` tokens."""

    image_token_id, placeholder = IMAGE, [IMAGE]

    def __init__(self, tokens_per_image: int):
        self.tokens_per_image = tokens_per_image

    def __call__(self, images):
        return [[IMAGE] * self.tokens_per_image for _ in (images if isinstance(images, list) else [images])]


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
    outputs = _unexpanded_prompts(generate, _Expansions(3))([{"prompt_token_ids": trainer_ids,
                                                              "multi_modal_data": {"image": "one image"}}])
    assert sent[0]["prompt_token_ids"] == [1, IMAGE, 2] and outputs[0].prompt_token_ids == trainer_ids


def test_a_rollout_on_another_prompt_stops_the_step_naming_it():
    generate, _ = engine_expanding_to(4)  # the engine's processor resizes to 4 tokens, the trainer's to 3
    prompts = [{"prompt_token_ids": [1, 2]},
               {"prompt_token_ids": [1, IMAGE, IMAGE, IMAGE], "multi_modal_data": {"image": ["one image"]}}]
    with pytest.raises(MisalignedRollout, match=r"rollout prompt 1: vLLM ran 5 tokens \(4 image tokens\), the "
                                                r"trainer scores 4 \(3 image tokens\)"):
        _unexpanded_prompts(generate, _Expansions(3))(prompts)
