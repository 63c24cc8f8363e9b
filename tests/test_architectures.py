"""The architecture registry (`ovlt.engines.architectures`): what `freeze_vision` freezes, where LoRA adapts, how the
study's image budget is honoured in each processor's own terms, and which architectures need their weights copied in
on resume, each checked on a tiny random-init model or the real image-processor class of every listed student."""

import os
import tempfile

import pytest
import safetensors.torch
import transformers
from PIL import Image

from ovlt.engines import architectures, models

TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512}
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
CONFIGS = {
    "qwen2_5_vl": lambda: transformers.Qwen2_5_VLConfig(
        text_config={**TEXT, "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64}),
    "qwen3_vl": lambda: transformers.Qwen3VLConfig(
        text_config={**TEXT, "head_dim": 16, "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3],
                                                             "mrope_interleaved": True}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 16, "deepstack_visual_indexes": [0], "num_position_embeddings": 64}),
    "qwen3_vl_moe": lambda: transformers.Qwen3VLMoeConfig(
        text_config={**TEXT, "head_dim": 16, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2,
                     "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 16, "deepstack_visual_indexes": [0], "num_position_embeddings": 64}),
    "gemma3": lambda: transformers.Gemma3Config(
        text_config={**TEXT, "head_dim": 16, "sliding_window": 32},
        vision_config={**VISION, "image_size": 64, "patch_size": 16}, mm_tokens_per_image=4),
    "internvl": lambda: transformers.InternVLConfig(
        text_config={"model_type": "qwen2", **TEXT},
        vision_config={**VISION, "image_size": [64, 64], "patch_size": [16, 16]}),
    "smolvlm": lambda: transformers.SmolVLMConfig(
        text_config={"model_type": "llama", **TEXT}, vision_config={**VISION, "image_size": 64, "patch_size": 16},
        scale_factor=2),
    "llava_onevision": lambda: transformers.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **TEXT},
        vision_config={"model_type": "siglip_vision_model", **VISION, "image_size": 64, "patch_size": 16},
        vision_feature_layer=-1),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def tiny(request):
    return transformers.AutoModelForImageTextToText.from_config(CONFIGS[request.param]())


def test_every_listed_student_is_registered():
    assert set(CONFIGS) == set(architectures.ARCHITECTURES)
    with pytest.raises(ValueError, match="model type 'mllama' is not a student ovlt knows; known: qwen2_5_vl"):
        architectures.architecture("mllama")


def test_freeze_vision_freezes_the_vision_encoder_and_projector_only(tiny):
    arch = architectures.architecture(tiny)
    models.freeze_vision(tiny)
    frozen = {name for name, p in tiny.named_parameters() if not p.requires_grad}
    vision = {name for name, _ in tiny.named_parameters() if any(name == v or name.startswith(v + ".")
                                                                  for v in arch.vision)}
    assert frozen == vision and frozen, arch.model_type
    assert any(name.startswith(arch.language + ".") for name, p in tiny.named_parameters() if p.requires_grad)


def test_lora_adapts_the_language_model_only(tiny):
    from peft import LoraConfig, get_peft_model

    arch = architectures.architecture(tiny)
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(tiny, LoraConfig(r=2, target_modules=architectures.lora_targets(arch.model_type, names)))
    adapted = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert len(adapted) == TEXT["num_hidden_layers"] * len(names), adapted
    assert all(f".{arch.language}." in f".{name}" for name in adapted), adapted
    model.unload()


def test_reload_on_resume_is_set_where_save_pretrained_writes_other_key_names(tiny):
    with tempfile.TemporaryDirectory() as folder:
        tiny.save_pretrained(folder)
        saved = set(safetensors.torch.load_file(os.path.join(folder, "model.safetensors")))
    renamed = saved != set(tiny.state_dict())
    print(f"{tiny.config.model_type}: save_pretrained writes other key names: {renamed}")
    assert architectures.architecture(tiny).reload_on_resume == renamed


# --- the image budget, in each processor's own terms ----------------------------------------------------------

PHOTO = Image.new("RGB", (4000, 3000), "white")  # a 12-megapixel phone photo
BUDGET = 512 * 512  # the paper's image_max_pixels

# the image processors as the hub checkpoints set them (tile sizes: Gemma 3 896, InternVL3.5 448, SmolVLM2 512,
# LLaVA-OneVision 384; Qwen3-VL 16-px patches merged 2x2)
PROCESSORS = {
    "qwen2_5_vl": lambda: transformers.Qwen2VLImageProcessorPil(),
    "qwen3_vl": lambda: transformers.Qwen2VLImageProcessorPil(patch_size=16, merge_size=2),
    "qwen3_vl_moe": lambda: transformers.Qwen2VLImageProcessorPil(patch_size=16, merge_size=2),
    "gemma3": lambda: transformers.Gemma3ImageProcessorPil(size={"height": 896, "width": 896}),
    "internvl": lambda: transformers.GotOcr2ImageProcessorPil(size={"height": 448, "width": 448},
                                                              crop_to_patches=True, max_patches=12),
    "smolvlm": lambda: transformers.SmolVLMImageProcessorPil(max_image_size={"longest_edge": 512},
                                                             size={"longest_edge": 2048}),
    "llava_onevision": lambda: transformers.LlavaOnevisionImageProcessorPil(),
}


def views_and_pixels(model_type: str, processor) -> tuple[int, int]:
    """How many views of the photo the processor makes and how many pixels they hold."""
    out = processor(images=[PHOTO], return_tensors="pt")
    if model_type.startswith("qwen"):
        t, h, w = out["image_grid_thw"][0].tolist()
        return 1, t * h * w * processor.patch_size ** 2
    pixels = out["pixel_values"]
    side = pixels.shape[-1] * pixels.shape[-2]
    views = pixels.shape[:-3].numel()
    return views, views * side


@pytest.mark.parametrize("model_type", list(PROCESSORS))
def test_the_image_budget_is_honoured_in_each_processors_terms(model_type):
    before = views_and_pixels(model_type, PROCESSORS[model_type]())
    processor = PROCESSORS[model_type]()
    recorded = architectures.ImageBudget(3136, BUDGET).apply(model_type, processor)
    views, pixels = views_and_pixels(model_type, processor)
    print(f"{model_type}: 12 MP photo -> {before[0]} view(s), {before[1]:,} px unbounded; {views} view(s), "
          f"{pixels:,} px under a {BUDGET:,}-px budget; recorded {recorded}")
    assert recorded["kind"] == architectures.architecture(model_type).budget
    if recorded["kind"] == "fixed":
        assert (views, pixels) == before == (1, 896 * 896)  # one view at its fixed size: nothing to cap
    else:
        assert BUDGET < before[1] and views >= 1
        # within the budget, or at the fewest views the processor makes (LLaVA-OneVision: the image and one tile)
        assert pixels <= BUDGET if not recorded.get("floor") else views == 2 and model_type == "llava_onevision"


def test_a_tile_budget_below_one_view_keeps_one_view():
    processor = PROCESSORS["internvl"]()
    assert architectures.ImageBudget(None, 1000).apply("internvl", processor) == {
        "kind": "tiles", "tile": 448, "max_patches": 1, "floor": True}
    assert views_and_pixels("internvl", processor) == (1, 448 * 448)
