"""Tiny random-init students of each architecture ovlt knows, in Hugging Face format, for the rehearsal rows; and
a tiny Qwen3, a reasoner of today with its own thinking switch (`build_tiny_qwen3_reasoner`).

Each is the real model class from a transformers config of small dimensions, with the real processor class, a
tokenizer trained like `models.build_tiny`'s (the architecture's special tokens), and the architecture's own chat
template as TRL 1.16 keeps it to recognise the model (`trl/chat_templates/<name>.jinja`, the hub repository's text)
or, where TRL keeps none (InternVL, LLaVA-OneVision), the template transformers' conversion script writes into the
`-hf` checkpoints (`CONVERTED_TEMPLATES`), so the stages meet the same classes, templates and processors as with the
hub checkpoint. Qwen2.5-VL, the embedded
default's student, is `models.build_tiny`. Heads of 32: vLLM's CPU attention takes head sizes 32, 64, 80, ...
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from ovlt.engines import models
from ovlt.ground.artifacts import fingerprint

log = logging.getLogger(__name__)

TINY_STUDENT_RECIPE_VERSION = 1
TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True}
VOCAB = 1024
# The SigLIP-style vision tower of Gemma 3 and SmolVLM: 64-px images of 16-px patches
SIGLIP_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "image_size": 64, "patch_size": 16}


def _seeded(model_class, config, seed: int):
    """`model_class(config)` with weights drawn from `seed`, without moving the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config).eval()


def trl_chat_template(name: str) -> str:
    """A model's original chat template as TRL keeps it (trl/chat_templates/<name>.jinja)."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    if not path.exists():
        raise FileNotFoundError(f"TRL {trl.__version__} keeps no {path.name}: the tiny student needs its chat template")
    return path.read_text()


def _qwen3_vl(texts: list[str], seed: int, moe: bool = False):
    import transformers
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    family = "Qwen3VLMoe" if moe else "Qwen3VL"
    # the MoE's language model: 4 experts of which 2 answer each token (Qwen3-VL-30B-A3B: 128 and 8)
    experts = {"moe_intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2} if moe else {}

    tokenizer = models.train_tokenizer(texts, VOCAB)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in models.SPECIAL_TOKENS}
    special = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
               "pad_token_id": ids["<|endoftext|>"]}
    config = getattr(transformers, f"{family}Config")(
        text_config={**TEXT, **experts, "vocab_size": len(tokenizer), **special,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "mrope_interleaved": True,
                                         "mrope_section": models.mrope_sections(TEXT["head_dim"])}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": TEXT["hidden_size"],
                       "deepstack_visual_indexes": [0], "num_position_embeddings": 256},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    model = _seeded(getattr(transformers, f"{family}ForConditionalGeneration"), config, seed)
    model.generation_config = models.generation_config(ids)
    # 32 px per merged patch (16-px patches, 2x2): the tiny bounds give 4 to 64 image tokens
    image_processor = models.Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 4 * 32 * 32, "longest_edge": 64 * 32 * 32})
    processor = Qwen3VLProcessor(image_processor, tokenizer, Qwen3VLVideoProcessor(),
                                 chat_template=trl_chat_template("qwen3_vl"))
    return model, processor


GEMMA3_NAMED = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>",
                "start_of_turn_token": "<start_of_turn>", "end_of_turn_token": "<end_of_turn>"}


def _gemma3(texts: list[str], seed: int):
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        GenerationConfig,
    )

    tokenizer = models.train_tokenizer(texts, VOCAB, ["<pad>", "<eos>", "<bos>", *GEMMA3_NAMED.values()],
                                       eos_token="<eos>", pad_token="<pad>", bos_token="<bos>",
                                       named_tokens=GEMMA3_NAMED)
    # Gemma's SentencePiece vocabulary holds runs of 1 to 4 newlines as tokens; vLLM's Gemma 3 processing looks them up
    tokenizer.add_tokens(["\n" * k for k in range(4, 0, -1)])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<eos>", "<bos>", *GEMMA3_NAMED.values())}
    ends = [ids["<eos>"], ids["<end_of_turn>"]]  # as Gemma 3's generation_config.json: a turn ends at either
    special = {"bos_token_id": ids["<bos>"], "eos_token_id": ends, "pad_token_id": ids["<pad>"]}
    # 64-px views of 16-px patches pooled to 2 x 2: 4 image tokens (the real one: 896 px, 256 tokens)
    config = Gemma3Config(
        text_config={**TEXT, "vocab_size": len(tokenizer), "sliding_window": 512, **special},
        vision_config=SIGLIP_VISION,
        mm_tokens_per_image=4, boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"])
    model = _seeded(Gemma3ForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(**special)
    image_processor = Gemma3ImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3)
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=trl_chat_template("gemma3"),
                                image_seq_length=4)
    return model, processor


SMOLVLM_NAMED = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                 "global_image_token": "<global-img>", "video_token": "<video>",
                 # the grid of a 2 x 2 split (the tiny one splits into tiles of 64 px, up to 128 px a side)
                 **{f"row_{r}_col_{c}_token": f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)}}


def _smolvlm(texts: list[str], seed: int):
    from transformers import (
        GenerationConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
    )
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", *SMOLVLM_NAMED.values()]
    tokenizer = models.train_tokenizer(texts, VOCAB, specials, eos_token="<end_of_utterance>",
                                       pad_token="<|endoftext|>", bos_token="<|im_start|>", named_tokens=SMOLVLM_NAMED)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    special = {"bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<end_of_utterance>"],
               "pad_token_id": ids["<|endoftext|>"]}
    # 64-px tiles of 16-px patches, pixel-shuffled by 2: 4 image tokens a view (SmolVLM2: 512 px, 64 tokens)
    config = SmolVLMConfig(
        text_config={"model_type": "llama", **TEXT, "vocab_size": len(tokenizer), **special},
        vision_config=SIGLIP_VISION,
        scale_factor=2, image_token_id=ids["<image>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True)
    model = _seeded(SmolVLMForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(**special)
    image_processor = SmolVLMImageProcessorPil(max_image_size={"longest_edge": 64}, size={"longest_edge": 128},
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = SmolVLMProcessor(image_processor, tokenizer, SmolVLMVideoProcessor(), image_seq_len=4,
                                 chat_template=trl_chat_template("smolvlm"))
    return model, processor


# The chat templates transformers' conversion scripts (models/<name>/convert_<name>_weights_to_hf.py) write into the
# hub's transformers-format checkpoints, which TRL 1.16 does not keep: the same rendering, rewritten here. Both are
# ChatML; InternVL puts one context token per image where its text has it, LLaVA-OneVision puts every image and
# video first, then the text.
CONVERTED_TEMPLATES = {
    "internvl": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
        "{% elif part['type'] == 'video' %}{{ '<video>\\n' }}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "llava_onevision": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
        "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
        "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] }}{% endgeneration %}"
        "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
}
CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INTERNVL_NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                  "video_token": "<video>"}


def _chatml_tokenizer(texts: list[str], named: dict[str, str]):
    """A tokenizer with ChatML's turn tokens (Qwen's) and the architecture's named image tokens; their ids."""
    specials = [*CHATML, *named.values()]
    tokenizer = models.train_tokenizer(texts, VOCAB, specials, named_tokens=named)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    return tokenizer, ids, {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                            "pad_token_id": ids["<|endoftext|>"]}


def _internvl(texts: list[str], seed: int):
    from transformers import (
        GenerationConfig,
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
    )
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    tokenizer, ids, special = _chatml_tokenizer(texts, INTERNVL_NAMED)
    # InternVL3.5's language model is Qwen3; 64-px tiles of 16-px patches, pixel-shuffled by 2: 4 image tokens a
    # tile (the real one: 448 px, 256 tokens), up to 4 tiles and a thumbnail
    config = InternVLConfig(
        text_config={"model_type": "qwen3", **TEXT, "vocab_size": len(tokenizer), **special},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": [64, 64], "patch_size": [16, 16], "use_absolute_position_embeddings": True},
        image_token_id=ids["<IMG_CONTEXT>"], downsample_ratio=0.5)
    model = _seeded(InternVLForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(**special)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 64, "width": 64}, crop_to_patches=True, min_patches=1,
                                               max_patches=4, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = InternVLProcessor(image_processor, tokenizer, InternVLVideoProcessor(), image_seq_length=4,
                                  chat_template=CONVERTED_TEMPLATES["internvl"])
    return model, processor


def _llava_onevision(texts: list[str], seed: int):
    from transformers import (
        GenerationConfig,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )
    from transformers.models.llava_onevision.video_processing_llava_onevision import (
        LlavaOnevisionVideoProcessor,
    )

    tokenizer, ids, special = _chatml_tokenizer(texts, {"image_token": "<image>", "video_token": "<video>"})
    # LLaVA-OneVision's language model is Qwen2; SigLIP at 64 px in 16-px patches, 16 tokens a view (the real one:
    # 384 px, 729), a grid of up to 2 x 2 views plus the whole image
    grids = [[64, 64], [64, 128], [128, 64], [128, 128]]
    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **TEXT, "vocab_size": len(tokenizer), **special},
        vision_config={"model_type": "siglip_vision_model", **SIGLIP_VISION}, vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=grids, image_token_index=ids["<image>"],
        video_token_index=ids["<video>"], tie_word_embeddings=True)
    model = _seeded(LlavaOnevisionForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(**special)
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 64, "width": 64}, image_grid_pinpoints=grids,
                                                      image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = LlavaOnevisionProcessor(image_processor, tokenizer, LlavaOnevisionVideoProcessor(),
                                        num_image_tokens=16, vision_feature_select_strategy="full",
                                        chat_template=CONVERTED_TEMPLATES["llava_onevision"])
    return model, processor


BUILDERS = {"qwen3_vl": _qwen3_vl, "qwen3_vl_moe": functools.partial(_qwen3_vl, moe=True), "gemma3": _gemma3, "internvl": _internvl, "smolvlm": _smolvlm,
            "llava_onevision": _llava_onevision}


def build_tiny_student(out_dir: str | Path, model_type: str, seed: int = 0, corpus: Iterable[str] | None = None) -> Path:
    """Build (or find cached) a tiny random-init student of `model_type` under `out_dir`; returns its folder,
    loadable with `models.load` and the generation backends. Qwen2.5-VL is `models.build_tiny`."""
    if model_type == "qwen2_5_vl":
        return models.build_tiny(out_dir, seed=seed, corpus=corpus)
    if model_type not in BUILDERS:
        raise ValueError(f"no tiny student of {model_type!r} yet; built: qwen2_5_vl, {', '.join(BUILDERS)}")
    texts = models.builtin_corpus(seed) + list(corpus or [])
    key = fingerprint({"recipe": TINY_STUDENT_RECIPE_VERSION, "type": model_type, "seed": seed, "text": TEXT,
                       "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest()})
    folder = Path(out_dir) / f"{model_type}-tiny-{key}"
    if (folder / "config.json").exists():
        return folder
    model, processor = BUILDERS[model_type](texts, seed)
    models.publish(folder, model, processor, processor.image_processor)
    log.info("built tiny %s (%s parameters, vocab %d): %s", model_type, f"{models.count_parameters(model):,}",
             len(processor.tokenizer), folder)
    return folder


def build_tiny_qwen3_reasoner(out_dir: str | Path, seed: int = 0, corpus: Iterable[str] | None = None) -> Path:
    """Build (or find cached) a tiny random-init Qwen3ForCausalLM with Qwen3's chat template as TRL keeps it
    (`enable_thinking`: on by default, the reply opens `<think>` itself; off, the template writes an empty think
    block), under `out_dir`; returns its folder."""
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    texts = models.builtin_corpus(seed) + list(corpus or [])
    template = trl_chat_template("qwen3")
    key = fingerprint({"recipe": TINY_STUDENT_RECIPE_VERSION, "type": "qwen3", "seed": seed, "text": TEXT,
                       "template": template, "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest()})
    folder = Path(out_dir) / f"qwen3-reasoner-tiny-{key}"
    if (folder / "config.json").exists():
        return folder
    # <think> and </think> are single tokens of Qwen3's vocabulary, added but not special (a reply decodes them)
    tokenizer = models.train_tokenizer(texts, VOCAB, CHATML)
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = template
    ids = {"bos_token_id": None, "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
           "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    config = Qwen3Config(**{**TEXT, "vocab_size": len(tokenizer)}, **ids)
    model = _seeded(Qwen3ForCausalLM, config, seed)
    model.generation_config = GenerationConfig(**ids)
    models.publish(folder, model, tokenizer)
    log.info("built tiny Qwen3 reasoner (%s parameters): %s", f"{models.count_parameters(model):,}", folder)
    return folder
