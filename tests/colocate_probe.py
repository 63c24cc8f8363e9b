"""TRL's GRPOTrainer with vLLM in colocate mode on a Qwen2.5-VL student, measured from outside the trainer.

Run as a script by tests/test_vllm.py (its own process: vLLM's external launcher joins a process group that must not
outlive it): `python tests/colocate_probe.py STUDENT OUT.json MIN_PIXELS MAX_PIXELS`. From the student saved as the
SFT stage saves a checkpoint (its processor with the pixel bounds), it trains a few GRPO steps on prompts of
different lengths and image sizes, a 12 MP photo among them, then writes what the test asserts:
- `photo_image_tokens`: the photo's image tokens in the trainer's processor and in the engine TRL opened from the
  checkpoint's name, without ovlt's `mm_processor_kwargs`;
- `rollouts`: for every prompt TRL sent to vLLM, the image tokens in the trainer's prompt ids and in the ids vLLM
  ran (TRL issue 6294: placeholders expanded twice);
- `start` / `stale` / `synced`: greedy responses and log-probabilities of the trainer's model against vLLM's, before
  training, after it (vLLM still holding the weights of its last rollout), and after TRL's weight sync;
- TRL's own `sampling/sampling_logp_difference` per step (its importance-sampling correction reads that gap).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import torch
from PIL import Image, ImageDraw

from ovlt.engines.architectures import ImageBudget
from ovlt.engines.generation import render_prompt
from ovlt.engines.models import load_processor
from ovlt.ground.config import load_config
from ovlt.scoring import rewards
from ovlt.scoring.prompts import student_chat
from ovlt.stages.training.colocate import colocated_vllm, student_engine

STEPS = 3
# The rehearsal's student: its CPU engine options reach TRL's engine as they do in the grpo stage.
STUDENT = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "rehearsal.yaml")).models.student
QUESTIONS = ["What is the value of the tallest bar?", "How many bars are there?",
             "Which bar is the shortest? Answer with its colour, and explain how you read the chart first.",
             "What is the sum of the first two bars?"]


def chart(width: int, height: int, bars: list[int]) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, value in enumerate(bars):
        draw.rectangle([10 + 30 * i, height - value, 30 + 30 * i, height], fill=(50 * i, 90, 200 - 40 * i))
    return image


IMAGES = [chart(224, 168, [40, 90, 60]), chart(448, 336, [120, 30, 200, 80]), chart(168, 168, [20, 70]),
          chart(640, 480, [300, 150, 90, 250, 40])]
PHOTO = chart(4000, 3000, [1500, 2800, 900])  # a 12-megapixel phone photo's size


def greedy(llm, processor, chats, images) -> list[dict]:
    """vLLM's greedy responses and the log-probability of each token it chose."""
    from vllm import SamplingParams

    requests = [{"prompt": render_prompt(processor, chat), "multi_modal_data": {"image": [image]}}
                for chat, image in zip(chats, images, strict=True)]
    outputs = llm.generate(requests, SamplingParams(temperature=0.0, max_tokens=24, logprobs=0), use_tqdm=False)
    return [{"ids": list(o.outputs[0].token_ids), "text": o.outputs[0].text,
             "logprobs": [next(iter(step.values())).logprob for step in o.outputs[0].logprobs]} for o in outputs]


@torch.inference_mode()
def trainer_view(model, processor, chats, images, completions) -> list[dict]:
    """The trainer's model on the same completions: its log-probability of each token, and its own greedy choice."""
    rows = []
    for chat, image, completion in zip(chats, images, completions, strict=True):
        inputs = processor(text=[render_prompt(processor, chat)], images=[image], return_tensors="pt")
        prompt_length = inputs["input_ids"].shape[1]
        ids = torch.tensor([completion["ids"]])
        full = {**inputs, "input_ids": torch.cat([inputs["input_ids"], ids], 1),
                "attention_mask": torch.ones(1, prompt_length + ids.shape[1], dtype=torch.long)}
        if "mm_token_type_ids" in inputs:  # the completion's tokens are text
            full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1)
        logits = model(**full).logits[0, prompt_length - 1:-1].float()
        logprobs = torch.log_softmax(logits, -1)
        rows.append({"logprobs": logprobs.gather(1, ids[0][:, None])[:, 0].tolist(),
                     "argmax": logits.argmax(-1).tolist()})
    return rows


def compare(model, processor, llm, chats, images) -> dict:
    vllm_side = greedy(llm, processor, chats, images)
    hf_side = trainer_view(model, processor, chats, images, vllm_side)
    gaps = [abs(a - b) for v, h in zip(vllm_side, hf_side, strict=True)
            for a, b in zip(v["logprobs"], h["logprobs"], strict=True)]
    return {"texts": [v["text"] for v in vllm_side],
            # vLLM's greedy choice is the trainer's at every step: the same greedy response
            "same_greedy": [v["ids"] == h["argmax"] for v, h in zip(vllm_side, hf_side, strict=True)],
            "max_logprob_gap": max(gaps), "mean_logprob_gap": sum(gaps) / len(gaps)}


def length_reward(completions, **kwargs) -> list[float]:
    """A reward that differs within nearly every group, so every step moves the weights: a format-taught stand-in's
    samples often all earn the same accuracy and format rewards (no advantage, no update: InternVL's did)."""
    return [len(str(completion)) / 1000 for completion in completions]


def sft_checkpoint(student: str, folder: str, min_pixels: int, max_pixels: int) -> str:
    """The student as the SFT stage leaves a checkpoint: its processor saved with the study's pixel bounds."""
    shutil.copytree(student, folder)
    load_processor(student, budget=ImageBudget(min_pixels, max_pixels)).save_pretrained(folder)
    return folder


def image_tokens(processor, ids: list[int]) -> int:
    return list(ids).count(processor.image_token_id)


def main(student: str, out: str, min_pixels: str, max_pixels: str) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from vllm import SamplingParams

    start = sft_checkpoint(student, os.path.join(os.path.dirname(out), "sft"), int(min_pixels), int(max_pixels))
    # As the grpo stage loads it: the study's bounds (TRL's engine gets none: it reads the checkpoint's).
    processor = load_processor(start, budget=ImageBudget(int(min_pixels), int(max_pixels)))
    chats = [student_chat(q + " Think first, then answer.") for q in QUESTIONS]
    dataset = Dataset.from_dict({
        "prompt": chats + chats[:1], "image": IMAGES + [PHOTO], "answer": ["200", "4", "red", "110", "200"],
        "answer_type": ["integer", "integer", "text", "integer", "integer"], "choices": [[]] * 5,
        "precision": [None] * 5})
    args = GRPOConfig(
        output_dir=os.path.join(os.path.dirname(out), "grpo"), use_cpu=True, bf16=False, max_steps=STEPS,
        learning_rate=1e-3, per_device_train_batch_size=4, num_generations=4, max_completion_length=48,
        temperature=1.0, beta=0.0, logging_steps=1, save_strategy="no", report_to="none", seed=0,
        use_vllm=True, vllm_mode="colocate", vllm_max_model_length=STUDENT.max_model_len,
        model_init_kwargs={"dtype": "float32"})
    with student_engine(STUDENT):  # as the grpo stage builds the trainer
        trainer = GRPOTrainer(model=start, reward_funcs=[rewards.accuracy_reward, rewards.format_reward, length_reward],
                              args=args, train_dataset=dataset, processing_class=processor)
    colocated_vllm(trainer)  # as the grpo stage does
    engine = trainer.vllm_generation
    rollouts = []
    generate = engine.llm.generate

    def recorded(prompts, *rest, **options):  # TRL's call, passed through unchanged; what vLLM ran is recorded
        outputs = generate(prompts, *rest, **options)
        rollouts.extend({"trainer": image_tokens(processor, p["prompt_token_ids"]),
                         "vllm": image_tokens(processor, o.prompt_token_ids)}
                        for p, o in zip(prompts, outputs, strict=True))
        return outputs

    # The engine TRL opened from the checkpoint's name, against the trainer's processor, on the 12 MP photo.
    text = render_prompt(processor, chats[0])
    ran = generate([{"prompt": text, "multi_modal_data": {"image": [PHOTO]}}], SamplingParams(max_tokens=1),
                   use_tqdm=False)[0].prompt_token_ids
    photo = {"trainer": image_tokens(processor, processor(text=[text], images=[PHOTO])["input_ids"][0]),
             "vllm": image_tokens(processor, ran)}
    initial = compare(trainer.model, processor, engine.llm, chats, IMAGES)
    engine.llm.generate = recorded
    trainer.train()
    engine.llm.generate = generate
    stale = compare(trainer.model, processor, engine.llm, chats, IMAGES)
    engine.sync_weights()
    synced = compare(trainer.model, processor, engine.llm, chats, IMAGES)
    history = [row for row in trainer.state.log_history if "sampling/sampling_logp_difference/max" in row]
    with open(out, "w") as handle:
        json.dump({"photo_image_tokens": photo, "rollouts": rollouts, "start": initial, "stale": stale, "synced": synced,
                   "trl_logp_difference_max": [row["sampling/sampling_logp_difference/max"] for row in history],
                   "trl_logp_difference_mean": [row["sampling/sampling_logp_difference/mean"] for row in history],
                   "steps": trainer.state.global_step}, handle, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
