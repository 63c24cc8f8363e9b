"""Models: the one loader, the tiny Qwen2.5-VL the CPU study runs on, and the processor quirks.

- `load(name_or_path)` loads a tiny local checkpoint and a hub model (Qwen/Qwen2.5-VL-7B-Instruct) the same way.
- `build_tiny(out_dir)` builds, saves and caches a randomly initialised Qwen2.5-VL with tiny dimensions and a
  byte-level BPE tokenizer trained here, on study-like text: the whole pipeline runs on it in minutes on a CPU.
- `build_random(QWEN25_VL_7B_DIMS, ...)` builds a 7B-shaped model with random weights for speed checks.
- `build_tiny_reasoner(out_dir)` builds a tiny text-only reasoner shaped like DeepSeek-R1-Distill-Qwen (its chat
  template takes string content only and opens the reply with "<think>\n") for the distill path on CPU.

Dimensions are one flat dict in transformers' own field names: text fields as in `Qwen2_5_VLTextConfig`
(`rope_theta` and `mrope_section` go into `rope_parameters`), vision fields prefixed with `vision_` as in
`Qwen2_5_VLVisionConfig`. The projector's output size is always the text hidden size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen2VLImageProcessorPil,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.utils import is_torchvision_available

from ovlt.engines.architectures import CHECKPOINT_BUDGET, ImageBudget, architecture, vision_parameters
from ovlt.ground.artifacts import fingerprint
from ovlt.ground.config import TinyDims
from ovlt.ground.schema import option_letters
from ovlt.scoring.chains import chain_text

log = logging.getLogger(__name__)

# Qwen2.5-VL-7B-Instruct's published config.json, in the flat form described above.
QWEN25_VL_7B_DIMS: dict = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "rope_theta": 1e6,
    "mrope_section": [16, 24, 24],
    "tie_word_embeddings": False,
    "vision_depth": 32,
    "vision_hidden_size": 1280,
    "vision_intermediate_size": 3420,
    "vision_num_heads": 16,
    "vision_patch_size": 14,
    "vision_spatial_merge_size": 2,
    "vision_temporal_patch_size": 2,
    "vision_window_size": 112,
    "vision_fullatt_block_indexes": [7, 15, 23, 31],
    "vision_tokens_per_second": 2,
}

# The tiny model's dimensions that the config does not set (`TinyDims` holds the others, with their defaults).
TINY_FIXED_DIMS: dict = {
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "vision_patch_size": 14,
    "vision_spatial_merge_size": 2,
    "vision_temporal_patch_size": 2,
    "vision_window_size": 112,
    "vision_fullatt_block_indexes": [1],
    "vision_tokens_per_second": 2,
}


def mrope_sections(head_dim: int) -> list[int]:
    """Split the rotary half of a head over (time, height, width) as Qwen2.5-VL does ([16, 24, 24] of 64)."""
    half = head_dim // 2
    time_part = half // 4
    height = (half - time_part) // 2
    return [time_part, height, half - time_part - height]


def tiny_dims(**overrides) -> dict:
    """The tiny model's flat dims: `TinyDims`' defaults (the config's models.student.tiny) and `TINY_FIXED_DIMS`,
    under `overrides`; `mrope_section=None` takes Qwen2.5-VL's split for the head size."""
    dims = {**TINY_FIXED_DIMS, **TinyDims().model_dump(), **overrides}
    if dims["mrope_section"] is None:
        dims["mrope_section"] = mrope_sections(dims["hidden_size"] // dims["num_attention_heads"])
    return dims


# The default tiny model: ~2.6 M parameters with the ~3k-token vocabulary; head_dim 256 / 4 = 64, so its mrope
# sections are Qwen's 16:24:24 split scaled down to [8, 12, 12].
TINY_DIMS: dict = tiny_dims()

# Qwen2.5-VL's special tokens and their ids in the real vocabulary.
QWEN_TOKEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
SPECIAL_TOKENS = list(QWEN_TOKEN_IDS)

# Qwen2.5-VL-7B-Instruct's chat template, verbatim (chat_template.json of the hub repo).
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Image bounds of the tiny model: a 112x112 image is 16 visual tokens, 168x168 is 36.
TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 64 * 28 * 28

# Bump when build_tiny's recipe changes, so cached folders from an older recipe are not reused.
TINY_RECIPE_VERSION = 1


class OvltQwenVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without a video processor.

    The stock processor requires one, and every video processor needs torchvision, which cannot be installed
    next to the CPU torch (docs/findings.md, "Qwen2.5-VL without torchvision"). Images are all this study feeds the model.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def to_dict(self):
        # Saved folders name the stock class, so that machines with torchvision (and vLLM) load them with it.
        return {**super().to_dict(), "processor_class": Qwen2_5_VLProcessor.__name__}


def qwen_config(dims: dict, token_ids: dict[str, int]) -> Qwen2_5_VLConfig:
    """A Qwen2_5_VLConfig from flat `dims` (see the module docstring) and special-token ids by token."""
    known = set(QWEN25_VL_7B_DIMS)
    unknown = sorted(set(dims) - known)
    if unknown:
        raise ValueError(f"unknown model dimension(s) {unknown}; known: {sorted(known)}")
    missing = sorted(known - set(dims))
    if missing:
        raise ValueError(f"missing model dimension(s) {missing}")
    text = {k: v for k, v in dims.items() if not k.startswith("vision_")}
    vision = {k.removeprefix("vision_"): v for k, v in dims.items() if k.startswith("vision_")}
    vision["initializer_range"] = text["initializer_range"]
    rope = {
        "rope_type": "default",
        "rope_theta": text.pop("rope_theta"),
        "mrope_section": list(text.pop("mrope_section")),
    }
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(rope["mrope_section"]) != head_dim // 2:
        raise ValueError(f"mrope_section {rope['mrope_section']} must sum to head_dim/2 = {head_dim // 2}")
    tie = text.pop("tie_word_embeddings")
    ids = {
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
    }
    return Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": rope, **ids},
        vision_config={**vision, "out_hidden_size": text["hidden_size"]},
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=tie,
    )


def generation_config(token_ids: dict[str, int]) -> GenerationConfig:
    # As Qwen2.5-VL-Instruct's generation_config.json: a turn ends at <|im_end|> or <|endoftext|>.
    eos = [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]]
    return GenerationConfig(eos_token_id=eos, pad_token_id=token_ids["<|endoftext|>"], bos_token_id=eos[1])


def build_random(dims: dict, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"):
    """A Qwen2.5-VL of the given dims with random weights (nothing downloaded), e.g. 7B-shaped for speed checks."""
    config = qwen_config(dims, QWEN_TOKEN_IDS)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = generation_config(QWEN_TOKEN_IDS)
    return model.eval()


def builtin_corpus(seed: int = 0, size: int = 3000) -> list[str]:
    """Study-like text to train the tiny tokenizer on: the shipped benchmark-style prose
    (assets/tokenizer_corpus.txt: MathVista-like questions, captions, chains, math vocabulary) and `size`
    templated problems with lettered options, reasoning chains and answer tags."""
    shipped = (Path(__file__).parent / "assets" / "tokenizer_corpus.txt").read_text().splitlines()
    rng = random.Random(seed)
    letters = option_letters(8)
    colors = ["red", "blue", "green", "orange", "purple", "gray", "yellow", "black"]
    shapes = ["bar", "dot", "circle", "square", "triangle", "line", "angle", "segment"]
    questions = [
        "Which bar is the tallest?",
        "How many {shape}s are there in the image?",
        "Is the left bar taller than the right bar?",
        "What is the value of the {color} bar?",
        "In the figure, find the measure of angle {letter}.",
        "What is the length of side {letter}{letter2}? Round to one decimal place.",
        "Which {shape} is {color}?",
        "What is the sum of the values of {letter} and {letter2}?",
    ]
    phrases = [
        "The bars show {letter} is {n}, {letter2} is {m}.",
        "Let me count the {shape}s: {counting}.",
        "Wait, let me check. {letter} is {n}, not {m}.",
        "So the answer is {letter}.",
        "{letter} is {n}, {letter2} is {m}. {letter2} is the tallest.",
        "The angle is {n}{m} degrees, so x = {m}{n} - {n}.",
        "Hmm, I need to re-read the question.",
        "First, I look at the {color} {shape}. It is {n} units long.",
        "Yes, {n} + {m} = {total}.",
    ]
    lines = []
    for _ in range(size):
        fill = {
            "letter": rng.choice(letters[:4]),
            "letter2": rng.choice(letters[:4]),
            "shape": rng.choice(shapes),
            "color": rng.choice(colors),
            "n": rng.randint(0, 99),
            "m": rng.randint(0, 99),
        }
        fill["total"] = fill["n"] + fill["m"]
        fill["counting"] = ", ".join(str(i) for i in range(1, rng.randint(2, 7)))
        options = "\n".join(
            f"({letters[i]}) {rng.choice(colors + [str(rng.randint(0, 99))])}" for i in range(4)
        )
        chain = " ".join(rng.choice(phrases).format(**fill) for _ in range(rng.randint(1, 4)))
        answer = rng.choice(
            [fill["letter"], str(fill["n"]), f"{fill['n']}.{fill['m'] % 10}", rng.choice(["Yes", "No"])]
        )
        lines.append(
            f"{rng.choice(questions).format(**fill)}\nChoices:\n{options}\n{chain_text(chain, answer)}"
        )
    return shipped + lines


def train_tokenizer(
    corpus: Iterable[str],
    vocab_size: int,
    special_tokens: list[str] = SPECIAL_TOKENS,
    eos_token: str = "<|im_end|>",
    pad_token: str = "<|endoftext|>",
    bos_token: str | None = None,
    named_tokens: dict[str, str] | None = None,
) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer trained on `corpus`, with Qwen2's pre-tokenizer and `special_tokens`.

    Special tokens take ids 0.. in `special_tokens` order (Qwen2.5-VL's by default); digits are split one by one, as
    in Qwen. `named_tokens` ({attribute: token}) gives the tokenizer attributes a processor reads, e.g. Gemma 3's
    `boi_token`; then every special token that is not eos/pad/bos must be named.
    """
    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    trained = json.loads(bpe.to_str())["model"]
    named = (eos_token, pad_token, bos_token)
    return Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(merge) for merge in trained["merges"]],
        unk_token=None,
        eos_token=eos_token,
        pad_token=pad_token,
        **({"bos_token": bos_token} if bos_token else {}),
        extra_special_tokens=named_tokens or [t for t in special_tokens if t not in named],
        model_max_length=TINY_DIMS["max_position_embeddings"],
    )


def tiny_image_processor() -> Qwen2VLImageProcessorPil:
    # Passed as `size`, not min_pixels/max_pixels: in transformers 5.17 those write into the class-level
    # default `size` dict, which would change every Qwen2VLImageProcessorPil made later in the process.
    return Qwen2VLImageProcessorPil(size={"shortest_edge": TINY_MIN_PIXELS, "longest_edge": TINY_MAX_PIXELS})


def build_tiny(out_dir: str | Path, seed: int = 0, corpus: Iterable[str] | None = None, **dims) -> Path:
    """Build (or find cached) a tiny Qwen2.5-VL under `out_dir`; returns its folder, loadable with `load`.

    `dims` override the defaults of `tiny_dims` (`mrope_section=None` takes Qwen2.5-VL's split for the head size).
    The tokenizer is trained on `builtin_corpus()` plus `corpus` (e.g. the data module's generated questions and
    chains); its size sets the model's vocabulary. Same arguments, same bytes: the folder is named by a fingerprint
    of them, and a second call returns it without building.
    """
    dims = tiny_dims(**dims)
    texts = builtin_corpus(seed) + list(corpus or [])
    corpus_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    key = fingerprint({"recipe": TINY_RECIPE_VERSION, "seed": seed, "dims": dims, "corpus": corpus_hash})
    folder = Path(out_dir) / f"qwen25vl-tiny-{key}"
    if (folder / "config.json").exists():
        return folder

    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, dims["vocab_size"])
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    # A small corpus may learn fewer merges than asked: the embedding matches the tokenizer exactly.
    config = qwen_config({**dims, "vocab_size": len(tokenizer)}, token_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = generation_config(token_ids)
    processor = OvltQwenVLProcessor(tiny_image_processor(), tokenizer, chat_template=QWEN25_VL_CHAT_TEMPLATE)

    # preprocessor_config.json as well, as in the hub repo: the stock processor's video processor falls back to it.
    publish(folder, model, processor, processor.image_processor)
    log.info(
        "built tiny Qwen2.5-VL (%s parameters, vocab %d) in %.1fs: %s",
        f"{count_parameters(model):,}",
        len(tokenizer),
        time.perf_counter() - start,
        folder,
    )
    return folder


def publish(folder: Path, *parts) -> None:
    """`save_pretrained` every part into a temporary sibling, then rename it to `folder`, so a folder that exists
    is always complete."""
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for part in parts:
        part.save_pretrained(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process finished the same build first
        shutil.rmtree(staging)


# --- a tiny text-only reasoner in the shape of DeepSeek-R1-Distill-Qwen ------------------------------------------
# The study's reasoner is a Qwen2 causal LM with DeepSeek-R1-Distill's tokenizer settings and its chat template, the
# text below as its tokenizer_config.json on the hub holds it (deepseek-ai/DeepSeek-R1-Distill-Qwen-*, released
# under the MIT License by DeepSeek). The template joins each message's content to its role marker as a string (a list of
# content parts is a TypeError), puts any system message before the first user turn, and keeps only what follows the
# last </think> of an assistant turn. DeepSeek revised it once: the first revision ends the generation prompt in
# <｜Assistant｜> and its tokenizer adds no BOS; the later one ends it in <｜Assistant｜><think>\n (the reply starts
# inside the reasoning) and its tokenizer adds BOS when it encodes, while the template writes one too. Users meet
# both, so the rehearsal builds both (`R1_DISTILL_REVISIONS`). The later one is byte for byte the copy TRL keeps to
# recognise R1-Distill (trl/chat_templates/deepseek_r1_distill.jinja; tests/test_r1_chains.py).
REASONER_BOS, REASONER_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
REASONER_USER, REASONER_ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
REASONER_SPECIAL_TOKENS = [REASONER_BOS, REASONER_EOS, REASONER_USER, REASONER_ASSISTANT]
_R1_DISTILL_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}"
    "{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
    "'<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + "
    "'```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>"
)
# revision -> (chat template, the tokenizer's add_bos_token)
R1_DISTILL_REVISIONS = {
    "first": (_R1_DISTILL_TEMPLATE + "'}}{% endif %}", False),
    "opens_think": (_R1_DISTILL_TEMPLATE + "<think>\\n'}}{% endif %}", True),
}
# Heads of 32: vLLM's CPU attention takes head sizes 32, 64, 80, ... only (16 failed at the first generate).
TINY_REASONER_DIMS = {"vocab_size": 1024, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                      "rope_theta": 1e4, "tie_word_embeddings": True}
TINY_REASONER_RECIPE_VERSION = 4


def build_tiny_reasoner(out_dir: str | Path, seed: int = 0, corpus: Iterable[str] | None = None,
                        revision: str = "opens_think") -> Path:
    """Build (or find cached) a tiny random-init text reasoner (Qwen2ForCausalLM, DeepSeek-R1-Distill's special
    tokens, chat template and BOS setting of `revision`, a key of `R1_DISTILL_REVISIONS`) under `out_dir`; returns its
    folder, loadable with `load` and the generation backends.

    The tokenizer is trained on `builtin_corpus()` plus `corpus`, as `build_tiny`'s; the folder is named by a
    fingerprint of the arguments, and a second call returns it without building.
    """
    if revision not in R1_DISTILL_REVISIONS:
        raise ValueError(f"unknown R1-Distill template revision {revision!r}; known: {', '.join(R1_DISTILL_REVISIONS)}")
    template, add_bos = R1_DISTILL_REVISIONS[revision]
    texts = builtin_corpus(seed) + list(corpus or [])
    corpus_hash = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    key = fingerprint({"recipe": TINY_REASONER_RECIPE_VERSION, "seed": seed, "dims": TINY_REASONER_DIMS,
                       "template": template, "add_bos": add_bos, "corpus": corpus_hash})
    folder = Path(out_dir) / f"reasoner-tiny-{key}"
    if (folder / "config.json").exists():
        return folder
    dims = dict(TINY_REASONER_DIMS)
    tokenizer = train_tokenizer(texts, dims.pop("vocab_size"), REASONER_SPECIAL_TOKENS, eos_token=REASONER_EOS,
                                pad_token=REASONER_EOS, bos_token=REASONER_BOS)
    tokenizer.chat_template = template
    tokenizer.add_bos_token = add_bos
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = Qwen2Config(vocab_size=len(tokenizer), rope_parameters={"rope_type": "default",
                                                                     "rope_theta": dims.pop("rope_theta")},
                         **dims, **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(**ids)
    publish(folder, model, tokenizer)
    log.info("built tiny reasoner (%s parameters, vocab %d, R1-Distill template %s): %s",
             f"{count_parameters(model):,}", len(tokenizer), revision, folder)
    return folder


def _has_processor(folder: Path) -> bool:
    if (folder / "preprocessor_config.json").exists():
        return True
    processor_config = folder / "processor_config.json"
    return processor_config.exists() and "image_processor" in json.loads(processor_config.read_text())


def load_processor(
    name_or_path: str | Path,
    trust_remote_code: bool = False,
    budget: ImageBudget = CHECKPOINT_BUDGET,
) -> ProcessorMixin:
    """The processor of a local folder or hub id of any student architecture ovlt knows
    (`ovlt.engines.architectures`): for Qwen2.5-VL the stock class where torchvision is importable,
    `OvltQwenVLProcessor` otherwise. Its tokenizer pads on the left (see `load`).

    `budget`, the study's image budget, puts itself on its image processor in the architecture's own terms
    (`ImageBudget.apply`); the default keeps the saved setting.
    """
    folder = Path(name_or_path)
    if folder.is_dir():
        if not _has_processor(folder):
            raise FileNotFoundError(
                f"{folder} has no image processor (neither preprocessor_config.json nor an 'image_processor' "
                "entry in processor_config.json): save the processor next to the model"
            )
        if not (folder / "tokenizer_config.json").exists():
            raise FileNotFoundError(f"{folder} has no tokenizer (tokenizer_config.json missing)")
    model_type = architecture(AutoConfig.from_pretrained(str(name_or_path),
                                                         trust_remote_code=trust_remote_code)).model_type
    if model_type == "qwen2_5_vl":
        processor_class = Qwen2_5_VLProcessor if is_torchvision_available() else OvltQwenVLProcessor
    else:
        processor_class = AutoProcessor
    processor = processor_class.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    # from_pretrained can quietly hand back something else (e.g. just a tokenizer); check what came back.
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        raise TypeError(f"{name_or_path}: expected the processor of a {model_type} model, got "
                        f"{type(processor).__name__}")
    budget.apply(model_type, processor.image_processor)
    left_pad(processor)
    return processor


def left_pad(processor):
    """Pad prompts on the left: generation continues every row from its last real token, and TRL's GRPO
    crashes in get_rope_index on right-padded Qwen2.5-VL batches (docs/findings.md, "TRL 1.16 with Qwen2.5-VL")."""
    getattr(processor, "tokenizer", processor).padding_side = "left"
    return processor


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_processing_class(
    name_or_path: str | Path,
    trust_remote_code: bool = False,
    budget: ImageBudget = CHECKPOINT_BUDGET,
):
    """What turns chats into model inputs: the processor of a vision-language model (`load_processor`, with the
    image budget), or the tokenizer of a text-only one (e.g. a text reasoner), which then plays the processor's part
    and sees no images, so the budget does not apply. Pads left."""
    config = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    if getattr(config, "vision_config", None) is not None:
        return load_processor(name_or_path, trust_remote_code=trust_remote_code, budget=budget)
    return left_pad(AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code))


def sdpa_grouped_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' sdpa attention, except that grouped key/value heads go to torch's kernel as they are.

    With a mask (every left-padded batch), transformers copies each key/value head once per query head it serves,
    because its CUDA kernels need that; torch's CPU kernel takes the groups and the mask together (`enable_gqa`).
    The copies grow with the KV cache: 21% of a batch-64 decode of 128 tokens on the tiny model, and the same
    attention ran 6-10x faster without them (benchmarks/generation.py tells the end-to-end gain).
    """
    if attention_mask is None or query.shape[1] == key.shape[1] or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # As transformers' path with a mask and no position bias: not `is_causal` (the mask says it all), no key slicing.
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return output.transpose(1, 2).contiguous(), None


# Registered by name on import, so `attn_implementation=GROUPED_ATTENTION` builds sdpa's masks and calls the function
# above (the loader here, the trainers through their model_init_kwargs).
GROUPED_ATTENTION = "sdpa_grouped"
AttentionInterface.register(GROUPED_ATTENTION, sdpa_grouped_attention)
AttentionMaskInterface.register(GROUPED_ATTENTION, sdpa_mask)


def attention_options(on_cpu: bool) -> dict:
    """`from_pretrained` options for attention: `sdpa_grouped_attention` on CPU, the model's default elsewhere
    (for the loader here and for the trainers' `model_init_kwargs`)."""
    return {"attn_implementation": GROUPED_ATTENTION} if on_cpu else {}


def load(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    budget: ImageBudget = CHECKPOINT_BUDGET,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The one loader: `(model, processor)` for a local checkpoint or a hub id, in eval mode.

    A text-only model comes with its tokenizer in the processor's place (`load_processing_class`).
    `budget` is the image budget its processor applies (`ImageBudget.apply`).
    Default dtype: bf16 on CUDA, fp32 on CPU. On CPU, attention is `sdpa_grouped_attention`.
    """
    device = torch.device(device or default_device())
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    processor = load_processing_class(name_or_path, trust_remote_code=trust_remote_code, budget=budget)
    model_class = (
        AutoModelForImageTextToText if isinstance(processor, ProcessorMixin) else AutoModelForCausalLM
    )
    model = model_class.from_pretrained(
        str(name_or_path), dtype=dtype, device_map=device, trust_remote_code=trust_remote_code,
        **attention_options(device.type == "cpu"),
    )
    return model.eval(), processor


def freeze_vision(model: PreTrainedModel) -> PreTrainedModel:
    """Freeze the vision encoder and its projector (the architecture's `vision` modules), as the paper's SFT does;
    the language model stays trainable."""
    for parameter in vision_parameters(model):
        parameter.requires_grad_(False)
    return model


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
