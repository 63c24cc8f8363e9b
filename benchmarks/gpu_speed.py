"""Speed of Qwen2.5-VL-7B's real shape on a GPU, with random weights (speed needs the architecture, not the
weights; `ovlt.engines.models.QWEN25_VL_7B_DIMS` holds the published dimensions, so nothing is downloaded).

    python benchmarks/gpu_speed.py [--seq 2048] [--batch 1] [--new-tokens 128]

Prints:
- SFT: tokens/s of forward + backward in bf16 with gradient checkpointing (no optimizer step: a full AdamW
  state for 8.3B parameters does not fit one 80 GB GPU; the paper trains under ZeRO-3), and model FLOPs
  utilisation = 6 x parameters x tokens/s / the GPU's dense bf16 peak;
- decoding: tokens/s at batch 1 against the memory-bandwidth roofline (weights bytes / HBM bandwidth per token),
  and at --decode-batch sequences decoded together (transformers' generate: a lower bound for vLLM's batched
  throughput, which `ovlt.study.plan.THROUGHPUT` needs).
"""

import argparse
import time

import torch

from ovlt.engines.models import QWEN25_VL_7B_DIMS, build_random, count_parameters

# Dense bf16 peak FLOP/s and HBM bandwidth (bytes/s) from the vendors' data sheets (SXM parts).
DEVICES = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12)}


def device_specs() -> tuple[str, float, float]:
    name = torch.cuda.get_device_name()
    for key, (peak, bandwidth) in DEVICES.items():
        if key in name:
            return name, peak, bandwidth
    raise SystemExit(f"unknown GPU {name!r}: add its bf16 peak and bandwidth to DEVICES")


def sync_time() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--decode-batch", type=int, default=64)
    args = parser.parse_args()
    name, peak, bandwidth = device_specs()
    model = build_random(QWEN25_VL_7B_DIMS, dtype=torch.bfloat16, device="cuda")
    n_params = count_parameters(model)
    language_params = count_parameters(model.model.language_model) + model.lm_head.weight.numel()
    print(f"device: {name}; model: Qwen2.5-VL-7B shape, {n_params / 1e9:.2f}B parameters (random weights)")

    model.train()
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    ids = torch.randint(0, QWEN25_VL_7B_DIMS["vocab_size"] - 1000, (args.batch, args.seq), device="cuda")
    for step in range(args.steps + 1):
        if step == 1:  # the first step warms up kernels and the allocator
            start = sync_time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
    seconds = (sync_time() - start) / args.steps
    tokens_per_s = args.batch * args.seq / seconds
    # Gradient checkpointing recomputes the forward: 8 x N FLOPs per token are executed, 6 x N are useful.
    mfu = 6 * language_params * tokens_per_s / peak
    print(f"SFT (fwd+bwd, bf16, checkpointing, seq {args.seq}, batch {args.batch}): {tokens_per_s:,.0f} tokens/s, "
          f"{seconds:.2f} s/step, MFU {mfu:.1%}, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")

    model.eval()
    model.config.use_cache = True
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    roofline = bandwidth / weight_bytes
    for batch in (1, args.decode_batch):
        prompts = torch.randint(0, QWEN25_VL_7B_DIMS["vocab_size"] - 1000, (batch, 128), device="cuda")
        rate = decode_tokens_per_s(model, prompts, args.new_tokens)
        against = (f"; roofline {roofline:,.1f} tokens/s ({weight_bytes / 2**30:.1f} GiB of weights / "
                   f"{bandwidth / 1e12:.2f} TB/s): {rate / roofline:.0%} of it") if batch == 1 else ""
        print(f"decode (batch {batch}, 128-token prompts, {args.new_tokens} new tokens, transformers generate): "
              f"{rate:,.1f} tokens/s{against}")


def decode_tokens_per_s(model, prompts: torch.Tensor, new_tokens: int) -> float:
    """Greedy tokens/s of `generate` (exactly `new_tokens` per sequence), after a short warm-up."""
    with torch.no_grad():
        mask = torch.ones_like(prompts)
        model.generate(prompts, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        start = sync_time()
        model.generate(prompts, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False)
        return prompts.shape[0] * new_tokens / (sync_time() - start)


if __name__ == "__main__":
    main()
