"""Tiny random-init students of each architecture ovlt knows, in Hugging Face format, for the rehearsal rows.

Each is the real model class from a transformers config of small dimensions, with the real processor class, a
tokenizer trained like `models.build_tiny`'s (the architecture's special tokens), and the architecture's own chat
template as TRL 1.16 keeps it to recognise the model (`trl/chat_templates/<name>.jinja`, the hub repository's text),
so the stages meet the same classes, templates and processors as with the hub checkpoint. Qwen2.5-VL, the embedded
default's student, is `models.build_tiny`. Heads of 32: vLLM's CPU attention takes head sizes 32, 64, 80, ...
"""

from __future__ import annotations

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


def _qwen3_vl(texts: list[str], seed: int):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = models.train_tokenizer(texts, VOCAB)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in models.SPECIAL_TOKENS}
    special = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
               "pad_token_id": ids["<|endoftext|>"]}
    config = Qwen3VLConfig(
        text_config={**TEXT, "vocab_size": len(tokenizer), **special,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "mrope_interleaved": True,
                                         "mrope_section": models.mrope_sections(TEXT["head_dim"])}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": TEXT["hidden_size"],
                       "deepstack_visual_indexes": [0], "num_position_embeddings": 256},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    model = _seeded(Qwen3VLForConditionalGeneration, config, seed)
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


BUILDERS = {"qwen3_vl": _qwen3_vl, "gemma3": _gemma3, "smolvlm": _smolvlm}


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
