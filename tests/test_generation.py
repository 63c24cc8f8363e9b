import importlib.util

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import Qwen2Config, Qwen2ForCausalLM

from ovlt import models
from ovlt.generation import (
    Completion,
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    make_backend,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # Larger initial weights than the default 0.02: a random tiny model then answers differently to different
    # inputs (with 0.02 it repeats one token for every prompt, and comparing outputs would prove little).
    return models.build_tiny(tmp_path_factory.mktemp("models"), initializer_range=0.5)


@pytest.fixture(scope="module")
def loaded(tiny):
    return models.load(tiny)


def backend(loaded, batch_size: int) -> TransformersBackend:
    return TransformersBackend(loaded, batch_size=batch_size, show_progress=False)


def chart(size: tuple[int, int], heights: list[int]) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for i, height in enumerate(heights):
        draw.rectangle([8 + 24 * i, size[1] - height, 24 + 24 * i, size[1]], fill=(60 * i, 80, 200))
    return image


def image_chat(question: str, images: int = 1) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": question}]}]


PROMPTS = [
    image_chat("Which bar is the tallest?"),
    image_chat("How many bars are there? Choices:\n(A) 2\n(B) 3\n(C) 4\n(D) 5"),
    image_chat("Is the left bar taller than the right bar?"),
    image_chat("Compare the two charts. Which one has the taller first bar?", images=2),
    image_chat("x?"),
]
IMAGES = [
    [chart((112, 112), [30, 60, 90])],
    [chart((168, 140), [50, 20, 70, 40])],
    [chart((112, 168), [80, 40])],
    [chart((112, 112), [20, 90]), chart((140, 112), [70, 30])],
    [chart((168, 168), [10, 100, 50])],
]


def test_batched_greedy_equals_one_by_one(loaded):
    params = SamplingParams(max_new_tokens=12)
    batched = backend(loaded, batch_size=3).generate(PROMPTS, IMAGES, params)
    one_by_one = backend(loaded, batch_size=1).generate(PROMPTS, IMAGES, params)
    assert batched == one_by_one
    # Results come back in prompt order, and the prompts do get different answers.
    assert [r[0] for r in one_by_one] == [
        backend(loaded, 1).generate([p], [i], params)[0][0] for p, i in zip(PROMPTS, IMAGES, strict=True)
    ]
    assert len({r[0].text for r in batched}) > 1


def test_sampling_returns_n_completions_with_token_counts(loaded):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=0)
    results = backend(loaded, batch_size=2).generate(PROMPTS[:3], IMAGES[:3], params)
    assert [len(r) for r in results] == [4, 4, 4]
    for completions in results:
        assert all(isinstance(c, Completion) and 1 <= c.num_tokens <= 10 for c in completions)
        assert len({c.text for c in completions}) > 1  # samples, not copies

    exact = SamplingParams(n=2, temperature=1.0, max_new_tokens=7, seed=0, ignore_eos=True)
    counts = [c.num_tokens for r in backend(loaded, 2).generate(PROMPTS[:3], IMAGES[:3], exact) for c in r]
    assert counts == [7] * 6


def test_checkpoint_sampling_defaults_do_not_leak_in(tiny):
    # Qwen2.5-VL-Instruct's generation_config.json sets top_k=1: sampling must still sample.
    model, processor = models.load(tiny)
    model.generation_config.top_k = 1
    model.generation_config.repetition_penalty = 1.05
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=0)
    results = TransformersBackend((model, processor), show_progress=False).generate(
        PROMPTS[:1], IMAGES[:1], params
    )
    assert len({c.text for c in results[0]}) > 1


def test_greedy_n_repeats_the_one_greedy_answer(loaded):
    results = backend(loaded, batch_size=2).generate(
        PROMPTS[:2], IMAGES[:2], SamplingParams(n=3, max_new_tokens=6)
    )
    assert all(len(r) == 3 and len(set(r)) == 1 for r in results)


def test_seeded_sampling_is_reproducible(loaded):
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=7)
    first = backend(loaded, batch_size=2).generate(PROMPTS, IMAGES, params)
    torch.manual_seed(12345)  # the caller's global RNG state must not matter
    assert backend(loaded, batch_size=2).generate(PROMPTS, IMAGES, params) == first
    other_seed = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=8)
    assert backend(loaded, batch_size=2).generate(PROMPTS, IMAGES, other_seed) != first


def test_stop_string_ends_the_text(loaded):
    runner = backend(loaded, batch_size=2)
    full = runner.generate(PROMPTS[:1], IMAGES[:1], SamplingParams(max_new_tokens=12))[0][0]
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    stopped = runner.generate(PROMPTS[:1], IMAGES[:1], SamplingParams(max_new_tokens=12, stop=(stop,)))[0][0]
    assert stopped.text.endswith(stop)
    assert full.text.startswith(stopped.text)
    assert stopped.num_tokens < full.num_tokens


def test_text_only_prompts_on_the_vision_model(loaded):
    prompts = [
        [{"role": "user", "content": "What is 2 + 3?"}],
        [{"role": "user", "content": "Solve x + 1 = 4."}],
    ]
    results = backend(loaded, batch_size=2).generate(prompts, None, SamplingParams(max_new_tokens=5))
    assert [len(r) for r in results] == [1, 1] and all(r[0].num_tokens >= 1 for r in results)


def test_text_only_model(tiny, tmp_path):
    # A text reasoner: a causal LM with the same tokenizer; `make_backend` loads it with AutoModelForCausalLM.
    tokenizer = models.load_processor(tiny).tokenizer
    tokenizer.chat_template = models.QWEN25_VL_CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runner = make_backend(tmp_path, batch_size=2, show_progress=False)
    assert isinstance(runner.model, Qwen2ForCausalLM)
    prompts = [
        [{"role": "user", "content": "Caption: four bars. Which is tallest?"}],
        [{"role": "user", "content": "Hi"}],
    ]
    results = runner.generate(prompts, None, SamplingParams(max_new_tokens=4, ignore_eos=True))
    assert [[c.num_tokens for c in r] for r in results] == [[4], [4]]
    with pytest.raises(ValueError, match="text-only"):
        runner.generate(PROMPTS[:1], IMAGES[:1], SamplingParams(max_new_tokens=2))


def test_images_must_match_image_slots(loaded):
    runner = backend(loaded, batch_size=2)
    with pytest.raises(ValueError, match="prompt 1 has 1 image slot"):
        runner.generate(PROMPTS[:2], [IMAGES[0], []], SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="2 prompts but 1 image lists"):
        runner.generate(PROMPTS[:2], IMAGES[:1], SamplingParams(max_new_tokens=2))


def test_sampling_params_are_checked():
    with pytest.raises(ValueError, match="n must be"):
        SamplingParams(n=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_unknown_backend_lists_known_ones(tiny):
    with pytest.raises(ValueError, match=r"unknown generation backend 'sglang'.*transformers.*vllm"):
        make_backend(tiny, backend="sglang")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here: the missing-vLLM error cannot be shown")
def test_vllm_backend_without_vllm_says_why(tiny):
    with pytest.raises(ImportError, match="CUDA-only"):
        VLLMBackend(tiny)


@pytest.mark.skipif(
    not HAS_VLLM or not torch.cuda.is_available(),
    reason="vLLM is a CUDA-only package, not installed on CPU machines (pip install 'ovlt[gpu]' on a GPU)",
)
def test_vllm_backend_matches_transformers_greedy(tiny, loaded):
    runner = make_backend(
        tiny,
        backend="vllm",
        gpu_memory_utilization=0.3,
        max_model_len=2048,
        limit_mm_per_prompt={"image": 2},
        dtype="float32",
    )
    params = SamplingParams(n=2, max_new_tokens=8)
    try:
        results = runner.generate(PROMPTS, IMAGES, params)
    finally:
        runner.close()
    assert [len(r) for r in results] == [2] * len(PROMPTS)
    assert all(1 <= c.num_tokens <= 8 for r in results for c in r)
