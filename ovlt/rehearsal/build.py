"""The paper config's rehearsal: its models and data as local stand-ins, so `configs/rehearsal.yaml` (the paper
config with only what a CPU cannot hold swapped) runs the paper-scale code path end to end, offline.

`python -m ovlt.rehearsal ROOT` (or `make rehearse`) writes under ROOT:
- `hub/`: local folders laid out as the hub data set repositories the paper config reads (`ovlt.rehearsal.local_hub`),
  which the config's `data.hub_root` points the real loaders at;
- `models/<hub name>`: tiny random-init models of the paper's architectures, saved in Hugging Face format under
  their hub names: Qwen2.5-VL for captioner and student, a Qwen2 text-only reasoner with DeepSeek-R1-Distill's own
  chat template and tokenizer flags (`ovlt.engines.models.build_tiny_reasoner`), in its current revision (the
  template opens `<think>`) and, as `<hub name>-first-template`, its first (the reply opens it); and today's
  students that vLLM runs (`STUDENTS_OF_TODAY`: Qwen3-VL, InternVL3.5, SmolVLM2), each of its own architecture.

Random weights never end a reply or write an answer tag, so every chain would be dropped and the loop would stop
at its first SFT set: the reasoner and the student are first taught the output FORMAT alone with TRL's SFTTrainer
(R1's `...</think>` then `\\boxed{}`; the student's `<think>...</think><answer>...</answer>`), on answers that are
right half the time, so the verifier keeps some chains and the difficulty bands hold some problems, as with the
real models. The captioner learns one fixed description: decoding greedily, a random one repeats a single token,
often a special one, and its captions come out empty.
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

import datasets

from ovlt.engines import models
from ovlt.engines.generation import render_prompt
from ovlt.engines.tiny_students import build_tiny_student
from ovlt.ground.config import PAPER_CAPTION_PROMPT, R1_DISTILL_PROMPT
from ovlt.ground.hub import load_source
from ovlt.rehearsal.local_hub import write_hub
from ovlt.scoring.chains import chain_text
from ovlt.scoring.prompts import assistant_turn, student_chat, student_text
from ovlt.stages.teachers import distill_prompt

log = logging.getLogger(__name__)

CAPTIONER, REASONER, STUDENT = "Qwen2.5-VL-3B-Instruct", "DeepSeek-R1-Distill-Qwen-14B", "Qwen2.5-VL-7B-Instruct"
# Today's students, each a tiny model of its own architecture taught the student's format (ovlt.engines.tiny_students)
STUDENTS_OF_TODAY = {"qwen3_vl": "Qwen3-VL-8B-Instruct", "internvl": "InternVL3_5-1B-HF",
                     "smolvlm": "SmolVLM2-2.2B-Instruct"}
# R1-Distill's template revisions -> the stand-in's folder name (configs/rehearsal-released.yaml reads the first)
REASONER_FOLDERS = {"opens_think": REASONER, "first": f"{REASONER}-first-template"}
SOURCES = ("figureqa", "geos", "geometry3k", "tabmwp", "vizwiz", "ai2d")
# Small enough to train on two cores in seconds, large enough to learn a fixed format.
DIMS = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 256, "vision_depth": 1, "vision_hidden_size": 32, "vision_intermediate_size": 64,
        "vision_num_heads": 2, "vocab_size": 1024, "mrope_section": [0, 8, 8]}
FORMAT_STEPS = 150


def _answer(problem: dict, rng: random.Random) -> str:
    """The gold answer half the time, otherwise a wrong one of the same kind."""
    gold = problem["answer"]
    if rng.random() < 0.5:
        return gold
    if problem["choices"]:
        return rng.choice([c for c in problem["choices"] if c != gold] or [gold])
    if gold.lower() in ("yes", "no"):
        return "No" if gold.lower() == "yes" else "Yes"
    return str(rng.randint(0, 20))


CAPTION = "The image shows a chart or a figure with labels and numbers."


def student_chain(answer: str) -> str:
    return chain_text(f"I read the image and the question. So the answer is {answer}.", answer)


def reasoner_reply(answer: str, opened: bool = True) -> str:
    """An R1-style reply; `opened`: its chat template opened the `<think>` (else the reply opens it)."""
    reply = f"The description and the question are read. So the answer is {answer}.\n</think>\n\nThe answer is \\boxed{{{answer}}}."
    return reply if opened else f"<think>\n{reply}"


def _problems(hub_root: Path) -> list[dict]:
    rows = []
    for name in SOURCES:
        rows += list(load_source(name, split="train", hub_root=str(hub_root)))
    return rows


def _teach_format(folder: Path, dataset: datasets.Dataset, processing_class, steps: int = FORMAT_STEPS) -> None:
    """A short SFT (TRL's SFTTrainer, completion-only loss) that teaches the model at `folder` its output format."""
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(output_dir=scratch, max_steps=steps, per_device_train_batch_size=8, learning_rate=2e-3,
                         lr_scheduler_type="constant", bf16=False, use_cpu=True, report_to="none",
                         save_strategy="no", logging_steps=steps, max_length=None, completion_only_loss=True,
                         seed=0, model_init_kwargs={"dtype": "float32", **models.attention_options(True)})
        trainer = SFTTrainer(model=str(folder), args=args, train_dataset=dataset, processing_class=processing_class)
        trainer.train()
        trainer.save_model(str(folder))
    log.info("%s: output format taught in %d steps (last loss %.3f)", folder.name, steps,
             trainer.state.log_history[-1].get("train_loss", float("nan")))


def _place(built: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, target)
    return target


def build(root: str | Path, seed: int = 0) -> dict:
    """Write the rehearsal's hub stand-in and models under `root`; returns what was written."""
    root = Path(root).resolve()
    shutil.rmtree(root / "hub", ignore_errors=True)  # write_hub refuses to write over files a pattern could match
    hub_counts = write_hub(root / "hub", seed=seed)
    problems = _problems(root / "hub")
    rng = random.Random(seed)
    answers = [_answer(p, rng) for p in problems]
    student_texts = [student_text(p) for p in problems]
    reasoner_prompts = [distill_prompt(R1_DISTILL_PROMPT, p, "An image.") for p in problems]
    corpus = student_texts + [student_chain(a) for a in answers] + [reasoner_reply(a) for a in answers] + [
        PAPER_CAPTION_PROMPT, CAPTION]
    out = root / "models"
    with tempfile.TemporaryDirectory() as scratch:
        captioner = _place(models.build_tiny(scratch, seed=seed, corpus=corpus, **DIMS), out / CAPTIONER)
        student = _place(models.build_tiny(scratch, seed=seed + 1, corpus=corpus, **DIMS), out / STUDENT)
        reasoners = [_place(models.build_tiny_reasoner(scratch, seed=seed, corpus=corpus, revision=revision),
                            out / folder) for revision, folder in REASONER_FOLDERS.items()]
        today = [_place(build_tiny_student(scratch, model_type, seed=seed + 1, corpus=corpus), out / folder)
                 for model_type, folder in STUDENTS_OF_TODAY.items()]

    images = [[p["image"].convert("RGB")] for p in problems]
    taught = [(folder, [student_chat(t) for t in student_texts], [student_chain(a) for a in answers])
              for folder in (student, *today)]
    taught.append((captioner, [student_chat(PAPER_CAPTION_PROMPT)] * len(problems), [CAPTION] * len(problems)))
    for folder, prompts, replies in taught:
        processor = models.load_processor(folder)
        _teach_format(folder, datasets.Dataset.from_dict({
            "prompt": prompts, "completion": [assistant_turn(r) for r in replies], "images": images}), processor)
        processor.save_pretrained(str(folder))
        processor.image_processor.save_pretrained(str(folder))

    for reasoner in reasoners:
        tokenizer = models.load_processing_class(reasoner)
        prompts = [render_prompt(tokenizer, chat) for chat in reasoner_prompts]
        opened = prompts[0].endswith("<think>\n")
        _teach_format(reasoner, datasets.Dataset.from_dict({
            "prompt": prompts, "completion": [reasoner_reply(a, opened) + tokenizer.eos_token for a in answers]}),
            tokenizer)
        tokenizer.save_pretrained(str(reasoner))
    written = {"hub": hub_counts, "models": [str(p) for p in (captioner, *reasoners, student, *today)],
               "format_examples": len(problems)}
    log.info("rehearsal written under %s: %s", root, written)
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m ovlt.rehearsal ROOT   (configs/rehearsal.yaml reads ROOT = .rehearsal)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    build(argv[0])
