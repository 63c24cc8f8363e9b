"""Sampling: one interface over transformers (CPU, tests, small runs) and vLLM (GPU, paper scale).

A prompt is a chat in the transformers conversational format; its images travel beside it, one PIL image per
`{"type": "image"}` item, in order. Every backend renders prompts with the model's own chat template (plus the
generation prompt) and returns `n` completions per prompt, in prompt order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from tqdm.auto import tqdm

from ovlt import models

log = logging.getLogger(__name__)

Chat = list[dict]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()  # generation ends after the first of these; it stays in the text
    ignore_eos: bool = False  # always generate max_new_tokens (for speed measurements)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int


class Backend(Protocol):
    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def count_images(chat: Chat) -> int:
    return sum(
        1
        for message in chat
        if not isinstance(message["content"], str)
        for item in message["content"]
        if item.get("type") == "image"
    )


def check_images(prompts: list[Chat], images: list[list[Image.Image]] | None) -> list[list[Image.Image]]:
    """Images per prompt, checked against the image slots of each chat; `None` means no prompt has images."""
    images = images if images is not None else [[] for _ in prompts]
    if len(images) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(images)} image lists")
    for index, (chat, prompt_images) in enumerate(zip(prompts, images, strict=True)):
        if count_images(chat) != len(prompt_images):
            raise ValueError(
                f"prompt {index} has {count_images(chat)} image slot(s) but {len(prompt_images)} image(s)"
            )
    return images


def decoded_per_prompt(params: SamplingParams) -> int:
    """Sequences decoded per prompt: n when sampling; greedy decoding gives n identical answers, so one."""
    return params.n if params.temperature > 0 else 1


class TransformersBackend:
    """`model.generate` in left-padded batches with a KV cache.

    Prompts are sorted by length so each batch pads little, and results come back in the caller's order. `n > 1`
    samples come from one encoding of each prompt (`num_return_sequences`), images included. `batch_size` counts
    the sequences decoded together, so a batch holds batch_size // n prompts when sampling n per prompt: decoding
    512 rows at once ran at 0.9x the tokens/s of 64-256 rows on a 2-core CPU (benchmarks/generation.py). With a
    seed, sampling is reproducible for the same prompts and batch size: each batch draws from its own seeded
    stream.
    """

    def __init__(
        self,
        model: str | Path | tuple,
        batch_size: int = 16,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        show_progress: bool = True,
        trust_remote_code: bool = False,
    ):
        if isinstance(model, tuple):
            self.model, processor = model
        else:
            self.model, processor = models.load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        self.processor = models.left_pad(processor)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.batch_size = batch_size
        self.show_progress = show_progress
        eos = self.model.generation_config.eos_token_id
        ends = (eos if isinstance(eos, list) else [eos]) + [
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
        ]
        self.end_ids = {token for token in ends if token is not None}

    def prompt_length(self, text: str, images: list[Image.Image]) -> int:
        length = len(self.tokenizer(text).input_ids)
        image_processor = getattr(self.processor, "image_processor", None)
        for image in images:
            patches = image_processor.get_number_of_image_patches(image.height, image.width)
            length += patches // image_processor.merge_size**2
        return length

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]:
        images = check_images(prompts, images)
        if any(images) and not hasattr(self.processor, "image_processor"):
            raise ValueError(
                f"{type(self.model).__name__} is a text-only model: its prompts cannot take images"
            )
        texts = [
            self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            for chat in prompts
        ]
        # Longest first: a batch that does not fit in memory fails at once, not at the end.
        order = sorted(range(len(prompts)), key=lambda i: -self.prompt_length(texts[i], images[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        start, total_tokens = time.perf_counter(), 0
        per_batch = max(1, self.batch_size // decoded_per_prompt(params))
        batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
        progress = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not self.show_progress)
        for batch_index, batch in enumerate(batches):
            seed = None if params.seed is None else params.seed + batch_index
            completions = self._generate_batch(
                [texts[i] for i in batch], [images[i] for i in batch], params, seed
            )
            for i, prompt_completions in zip(batch, completions, strict=True):
                results[i] = prompt_completions
                total_tokens += sum(c.num_tokens for c in prompt_completions)
            progress.update(len(batch))
        progress.close()
        seconds = time.perf_counter() - start
        log.info(
            "generated %d completions, %d tokens in %.1fs (%.1f tokens/s, batch size %d)",
            len(prompts) * params.n,
            total_tokens,
            seconds,
            total_tokens / max(seconds, 1e-9),
            self.batch_size,
        )
        return results

    @torch.inference_mode()
    def _generate_batch(
        self, texts: list[str], images: list[list[Image.Image]], params: SamplingParams, seed: int | None
    ) -> list[list[Completion]]:
        flat_images = [image for prompt_images in images for image in prompt_images]
        inputs = self.processor(
            text=texts, **({"images": flat_images} if flat_images else {}), padding=True, return_tensors="pt"
        ).to(self.model.device)
        sample = params.temperature > 0
        copies = decoded_per_prompt(params)
        options = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": copies,
            # `params` is the whole recipe: checkpoint defaults (Qwen2.5-VL-Instruct ships top_k=1 and
            # repetition_penalty=1.05) would otherwise fill in what it leaves unset, and top_k=1 is greedy.
            "repetition_penalty": 1.0,
            **({"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if sample else {}),
            **({"min_new_tokens": params.max_new_tokens} if params.ignore_eos else {}),
            **({"stop_strings": list(params.stop), "tokenizer": self.tokenizer} if params.stop else {}),
        }
        cuda_devices = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(**inputs, **options)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        completions = [self._completion(tokens, params) for tokens in new_tokens]
        if not sample:
            completions = [c for c in completions for _ in range(params.n)]
        return [completions[i : i + params.n] for i in range(0, len(completions), params.n)]

    def _completion(self, tokens: list[int], params: SamplingParams) -> Completion:
        # Rows that finish early are padded to the batch's length: the first end-of-turn or pad token ends a row.
        if not params.ignore_eos:
            end = next((i + 1 for i, token in enumerate(tokens) if token in self.end_ids), len(tokens))
            tokens = tokens[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        # The token that completes a stop string may run past it; the text ends with the stop string (as vLLM's).
        stops = [text.index(stop) + len(stop) for stop in params.stop if stop in text]
        return Completion(text[: min(stops)] if stops else text, len(tokens))

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VLLMBackend:
    """The same interface over `vllm.LLM` (GPU only; vLLM is imported here, not at module import).

    Prompts are rendered with the checkpoint's own processor (as in `TransformersBackend`), so both backends
    see identical prompt text; images go in as `multi_modal_data`.
    """

    def __init__(
        self,
        model_path: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int = 8192,
        limit_mm_per_prompt: dict[str, int] | None = None,
        dtype: str = "bfloat16",
        seed: int = 0,
        **llm_options,
    ):
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "VLLMBackend needs vLLM, a CUDA-only package (pip install 'ovlt[gpu]' on a GPU machine); "
                "use backend='transformers' here"
            ) from error
        self.vllm = vllm
        self.processor = models.load_processing_class(model_path)
        is_vision = hasattr(self.processor, "image_processor")
        self.llm = vllm.LLM(
            model=str(model_path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            seed=seed,
            **({"limit_mm_per_prompt": limit_mm_per_prompt or {"image": 1}} if is_vision else {}),
            **llm_options,
        )

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]:
        images = check_images(prompts, images)
        requests = []
        for chat, prompt_images in zip(prompts, images, strict=True):
            text = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            request = {"prompt": text}
            if prompt_images:
                request["multi_modal_data"] = {"image": prompt_images}
            requests.append(request)
        sampling = self.vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            ignore_eos=params.ignore_eos,
        )
        start = time.perf_counter()
        outputs = self.llm.generate(requests, sampling_params=sampling, use_tqdm=True)
        results = [[Completion(o.text, len(o.token_ids)) for o in output.outputs] for output in outputs]
        total_tokens = sum(c.num_tokens for r in results for c in r)
        seconds = time.perf_counter() - start
        log.info(
            "vLLM generated %d tokens in %.1fs (%.1f tokens/s)", total_tokens, seconds, total_tokens / seconds
        )
        return results

    def close(self) -> None:
        del self.llm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(model_path, backend: str = "transformers", **options) -> Backend:
    """A backend by name; `options` go to its constructor (e.g. batch_size, or gpu_memory_utilization)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[backend](model_path, **options)


def backend_for(spec, model_path: str | Path | None = None) -> Backend:
    """The backend for a model of the study config (`ovlt.config.ModelSpec`): its own name, or a checkpoint."""
    path = model_path or spec.name
    if spec.backend == "vllm":
        options = {"tensor_parallel_size": spec.tensor_parallel_size,
                   "gpu_memory_utilization": spec.gpu_memory_utilization,
                   "trust_remote_code": spec.trust_remote_code,
                   **({"max_model_len": spec.max_model_len} if spec.max_model_len else {})}
    elif spec.backend == "transformers":
        options = {"batch_size": spec.batch_size, "trust_remote_code": spec.trust_remote_code}
    else:
        raise ValueError(f"model {spec.name!r}: backend {spec.backend!r} is not a generation backend")
    return make_backend(path, backend=spec.backend, **options)


def sampling_from(sampling, seed: int) -> SamplingParams:
    """SamplingParams from a config `Sampling` section."""
    return SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                          max_new_tokens=sampling.max_new_tokens, seed=seed)
