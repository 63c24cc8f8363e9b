"""Where a study model's generation engines go: how many engines, each on how many GPUs. Torch-free, so that
`ovlt plan` sizes a study without loading a model (`ovlt.engines.generation.backend_for` builds the engines)."""

from __future__ import annotations


def gpus_per_engine(spec) -> int:
    """GPUs one generation engine of a study model (`ovlt.ground.config.ModelSpec`) holds: vLLM shards the model over
    tensor_parallel_size; transformers runs it on one device."""
    return spec.tensor_parallel_size if spec.backend == "vllm" else 1


def engine_count(spec, gpus: int) -> int:
    """Generation engines a study model runs side by side on a machine with `gpus` GPUs: its data_parallel_size,
    where "auto" fills the GPUs with vLLM engines and is one engine for the other backends (transformers' generate
    is for CPU runs and small checks)."""
    if spec.data_parallel_size != "auto":
        return spec.data_parallel_size
    if spec.backend == "vllm":
        return max(1, gpus // gpus_per_engine(spec))
    return 1

