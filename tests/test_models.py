import hashlib
import json
import time

import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessorPil

from ovlt.engines import models
from ovlt.engines.architectures import ImageBudget


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny(tmp_path_factory.mktemp("models"))


def state_dict_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def image_chat(question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def test_build_tiny_is_deterministic_by_seed(tmp_path):
    first = models.build_tiny(tmp_path / "a", seed=0)
    again = models.build_tiny(tmp_path / "b", seed=0)
    other = models.build_tiny(tmp_path / "c", seed=1)
    weights = [state_dict_hash(models.load(path)[0]) for path in (first, again, other)]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]
    assert (first / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()


def test_build_tiny_is_cached_by_arguments(tmp_path):
    class_default_size = dict(Qwen2VLImageProcessorPil.size)
    path = models.build_tiny(tmp_path)
    # Building must not change transformers' class-level image size default (a 5.17 trap, see the code).
    assert Qwen2VLImageProcessorPil.size == class_default_size
    built_at = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert models.build_tiny(tmp_path) == path
    assert time.perf_counter() - start < 1.0
    assert (path / "model.safetensors").stat().st_mtime_ns == built_at
    assert models.build_tiny(tmp_path, num_hidden_layers=3) != path
    assert models.build_tiny(tmp_path, corpus=["Which triangle is acute?"]) != path
    low_theta = models.build_tiny(tmp_path, rope_theta=10.0)  # a config knob (models.student.tiny.rope_theta)
    assert low_theta != path
    assert json.loads((low_theta / "config.json").read_text())["text_config"]["rope_parameters"]["rope_theta"] == 10.0
    no_time = models.build_tiny(tmp_path, mrope_section=[0, 16, 16])  # models.student.tiny.mrope_section
    assert no_time != path
    rope = json.loads((no_time / "config.json").read_text())["text_config"]["rope_parameters"]
    assert rope["mrope_section"] == [0, 16, 16]
    with pytest.raises(ValueError, match="must sum to head_dim/2"):
        models.build_tiny(tmp_path, mrope_section=[8, 8, 8])


def test_tiny_model_shape_tokenizer_and_processor(tiny):
    model, processor = models.load(tiny)
    tokenizer = processor.tokenizer
    assert isinstance(processor, models.Qwen2_5_VLProcessor)
    assert 1_000_000 < models.count_parameters(model) < 4_000_000
    assert 2000 <= len(tokenizer) <= models.TINY_DIMS["vocab_size"]
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.padding_side == "left"

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in models.SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(models.SPECIAL_TOKENS)
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id == ids["<|im_end|>"]
    assert model.config.text_config.pad_token_id == tokenizer.pad_token_id == ids["<|endoftext|>"]
    assert ids["<|im_end|>"] in model.generation_config.eos_token_id

    text = "<think>The bars show A is 6, B is 8. Wait, let me check.</think>\n<answer>(B) 8</answer>"
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert len(tokenizer("Which bar is the tallest?").input_ids) <= 8  # trained merges, not bytes

    rendered = processor.apply_chat_template(
        image_chat("Which bar?"), add_generation_prompt=True, tokenize=False
    )
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Which bar?<|im_end|>\n<|im_start|>assistant\n"
    )
    for size, expected_tokens in [((112, 112), 16), ((168, 168), 36)]:
        inputs = processor(text=[rendered], images=[Image.new("RGB", size)], return_tensors="pt")
        assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == expected_tokens


def test_save_load_round_trip_gives_same_logits(tiny, tmp_path):
    model, processor = models.load(tiny)
    rendered = processor.apply_chat_template(
        image_chat("How many dots?"), add_generation_prompt=True, tokenize=False
    )
    image = Image.new("RGB", (140, 112), (200, 30, 30))
    inputs = processor(text=[rendered], images=[image], return_tensors="pt")
    with torch.inference_mode():
        before = model(**inputs).logits
    # As a trainer saves a checkpoint: the model, then its processor (processor_config.json only).
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded, reloaded_processor = models.load(tmp_path)
    assert isinstance(reloaded_processor, models.Qwen2_5_VLProcessor)
    # Saved under the stock class name, so machines with torchvision load the stock processor.
    assert (
        json.loads((tmp_path / "processor_config.json").read_text())["processor_class"]
        == "Qwen2_5_VLProcessor"
    )
    reloaded_inputs = reloaded_processor(text=[rendered], images=[image], return_tensors="pt")
    assert torch.equal(reloaded_inputs["input_ids"], inputs["input_ids"])
    assert torch.equal(reloaded_inputs["pixel_values"], inputs["pixel_values"])
    with torch.inference_mode():
        after = reloaded(**reloaded_inputs).logits
    assert torch.allclose(before, after, atol=1e-6)


def test_grouped_attention_matches_transformers_sdpa_on_a_padded_batch(tiny, tmp_path):
    model, processor = models.load(tiny)
    assert model.config._attn_implementation == "sdpa_grouped"  # the CPU default of the one loader
    assert model.config.text_config.num_key_value_heads < model.config.text_config.num_attention_heads
    texts = [
        processor.apply_chat_template(image_chat(question), add_generation_prompt=True, tokenize=False)
        for question in ("How many dots?", "Which bar is the tallest of all the bars in the chart?")
    ]
    images = [Image.new("RGB", (140, 112), (200, 30, 30)), Image.new("RGB", (112, 112), (30, 30, 200))]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert (inputs["attention_mask"] == 0).any()  # left padding, so the masked path is the one compared
    with torch.inference_mode():
        grouped = model(**inputs).logits
        model.set_attn_implementation("sdpa")
        stock = model(**inputs).logits
    assert torch.allclose(grouped, stock, atol=1e-5)
    # A checkpoint does not carry the choice: GPU machines and vLLM load it with their own attention.
    model.save_pretrained(tmp_path)
    assert "sdpa_grouped" not in (tmp_path / "config.json").read_text()


def test_loader_rejects_a_folder_without_processor(tiny, tmp_path):
    model, _ = models.load(tiny)
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        models.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        models.load_processor(tmp_path)


def test_freeze_vision_freezes_tower_and_projector_only(tiny):
    model, _ = models.load(tiny)
    total = models.count_parameters(model)
    models.freeze_vision(model)
    visual = model.model.visual
    assert all(not p.requires_grad for p in visual.parameters())
    assert all(not p.requires_grad for p in visual.merger.parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())
    vision_size = sum(p.numel() for p in visual.parameters())
    assert vision_size > 0
    assert models.count_parameters(model, trainable_only=True) == total - vision_size


def test_qwen25_vl_7b_dims_build_the_published_model():
    model = models.build_random(models.QWEN25_VL_7B_DIMS, dtype=torch.bfloat16, device="meta")
    config = model.config
    assert config.text_config.hidden_size == 3584 and config.text_config.num_hidden_layers == 28
    assert config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    assert config.vision_config.hidden_size == 1280 and config.vision_config.out_hidden_size == 3584
    assert list(config.vision_config.fullatt_block_indexes) == [7, 15, 23, 31]
    assert config.image_token_id == 151655 and config.vision_start_token_id == 151652
    # Qwen2.5-VL-7B-Instruct's model card: 8.29 B parameters.
    assert models.count_parameters(model) == 8_292_166_656


def test_bad_dims_are_named():
    with pytest.raises(ValueError, match="hidden_sise"):
        models.qwen_config({**models.TINY_DIMS, "hidden_sise": 3}, models.QWEN_TOKEN_IDS)
    with pytest.raises(ValueError, match="mrope_section"):
        models.qwen_config({**models.TINY_DIMS, "mrope_section": [8, 8, 8]}, models.QWEN_TOKEN_IDS)


def test_pixel_bounds_limit_image_tokens_and_survive_save_and_reload(tiny, tmp_path):
    class_default_size = dict(Qwen2VLImageProcessorPil.size)
    # A phone photo: 12 MP. Under max_pixels = 128 tokens x 784 pixels it is at most 128 visual tokens; the tiny
    # checkpoint's own bound (64 tokens) must not be what limits it, so the bound read here is the one asked for.
    max_pixels = 128 * 28 * 28
    processor = models.load_processor(tiny, budget=ImageBudget(3136, max_pixels))
    assert Qwen2VLImageProcessorPil.size == class_default_size  # set on the instance, not the class
    rendered = processor.apply_chat_template(image_chat("Which bar?"), add_generation_prompt=True, tokenize=False)
    photo = Image.new("RGB", (4000, 3000), (90, 140, 200))
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def image_tokens(proc) -> int:
        return int((proc(text=[rendered], images=[photo], return_tensors="pt")["input_ids"] == image_pad).sum())

    bounded = image_tokens(processor)
    assert models.TINY_MAX_PIXELS // 784 < bounded <= max_pixels // 784
    assert image_tokens(models.load_processor(tiny)) <= models.TINY_MAX_PIXELS // 784  # unchanged without bounds
    # What a trainer does at the end: save the processor beside the weights; the bounds come back with it.
    model, _ = models.load(tiny)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = models.load_processor(tmp_path)
    assert reloaded.image_processor.size["longest_edge"] == max_pixels
    assert image_tokens(reloaded) == bounded
    _, via_load = models.load(tiny, budget=ImageBudget(3136, max_pixels))
    assert image_tokens(via_load) == bounded
    assert image_tokens(models.load_processing_class(tiny, budget=ImageBudget(3136, max_pixels))) == bounded
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        models.load_processor(tiny, budget=ImageBudget(10_000, 5_000))


def test_tiny_reasoner_is_a_cached_text_only_causal_lm(tmp_path):
    first = models.build_tiny_reasoner(tmp_path)
    assert models.build_tiny_reasoner(tmp_path) == first  # cached by its arguments
    assert models.build_tiny_reasoner(tmp_path, seed=1) != first
    model, tokenizer = models.load(first)
    assert type(model).__name__ == "Qwen2ForCausalLM" and not hasattr(tokenizer, "image_processor")
    assert tokenizer.padding_side == "left"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(
        models.REASONER_EOS)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Q"}], add_generation_prompt=True,
                                             tokenize=False)
    assert rendered == f"{models.REASONER_BOS}{models.REASONER_USER}Q{models.REASONER_ASSISTANT}<think>\n"
    # A text-only model sees no images: the bounds every study model gets do not apply to it.
    assert not hasattr(models.load_processing_class(first, budget=ImageBudget(3136, 262144)), "image_processor")
