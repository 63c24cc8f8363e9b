"""A controlled proof that the study's GRPO learns: a task built so that RL must win, trained by the study's own
`sft`, `grpo` and `evaluate` stages, and summarised by its own `write_summary`.

    python benchmarks/grpo_proof.py                       # the embedded default's student and GRPO section
    python benchmarks/grpo_proof.py --model test --steps 40
    python benchmarks/grpo_proof.py --set grpo.learning_rate=1e-5 --set grpo.beta=0   # one setting changed

The task: a picture of one colour (red or blue, half each) and the question "What colour is the picture?" with
the two colours as options, in random order. The student is fine-tuned (the `sft` stage) on chains that state the
picture's colour and then answer one of the two colours at random: "<think>The picture is red.</think>
<answer>blue</answer>" as often as "... <answer>red</answer>". It learns to read the colour and that the answer does
not follow from it. So it is right about half the time greedily (whatever its bias, half the pictures are each
colour), about half the time under sampling, and at least once in 8 samples nearly always: every GRPO group has
signal, and the chain already holds what the right answer needs (copy the colour it stated). The goal: GRPO, from
that checkpoint, with the config's `grpo` section, raises greedy held-out accuracy from ~50% to >= 90%. What it
measured, setting by setting: docs/findings.md, "The GRPO proof".

Everything before SFT is played, not run: the proof writes the `data` (held-out set), `student` (a tiny base model
whose tokenizer knows the task's words), `filter` (the SFT chains) and `select_hard` (the GRPO problems) stages'
outputs and manifests itself, so that `sft`, `grpo` and `evaluate` run unchanged through `run_stage`.

Prints the per-stage table (greedy, sampled, pass@k, each with its 95% interval) and the paired changes from SFT to
GRPO; `--json PATH` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
QUESTION = "What colour is the picture?"
IMAGE_SIZE = 56  # 4 image tokens: the tiny processor's smallest picture
SOURCE = "proof/colour"

# The test-sized student of tests/helpers.py, for a proof in about a minute.
TEST_MODEL = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "vision_depth": 1, "vision_hidden_size": 32, "vision_intermediate_size": 64,
              "vision_num_heads": 2, "vocab_size": 1000, "mrope_section": [0, 4, 4]}

# What the proof changes in configs/tiny.yaml: one iteration, the played volumes, a short SFT that teaches the chains
# (150 steps at 5e-3 bring the test-sized student's loss to its floor, the coin of the answer).
# The `grpo` section is the embedded default's, but for max_steps (--steps) and what --set changes.
PROOF = {
    "name": "grpo-proof",
    "iterations": 1,
    "data": {"heldout_size": 200},
    "schedule": [{"sft_problems": 400, "grpo_candidates": 400, "grpo_problems": 400}],
    "sft": {"max_steps": 150, "per_device_train_batch_size": 16, "learning_rate": 5.0e-3, "logging_steps": 10,
            "heldout_examples": 0},
    "evaluation": {"sampling": {"max_new_tokens": 24}, "sampled": {"n": 8, "temperature": 1.0}},
}


def chain(seen: str, answered: str) -> str:
    """A chain that states the picture's colour and answers a colour."""
    return f"<think>The picture is {seen}.</think> <answer>{answered}</answer>"


def problems(n: int, seed: int, split: str) -> list[dict]:
    """`n` problem-schema rows, half of each colour, the options in random order."""
    import io

    from PIL import Image

    rng = random.Random(f"grpo-proof-{split}-{seed}")
    rows = []
    for i in range(n):
        colour = sorted(COLOURS)[i % 2]
        buffer = io.BytesIO()
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), COLOURS[colour]).save(buffer, format="PNG")
        rows.append({"id": f"proof-{split}-{i}", "image": {"bytes": buffer.getvalue(), "path": None},
                     "question": QUESTION, "choices": rng.sample(sorted(COLOURS), 2), "answer": colour,
                     "answer_type": "multiple_choice", "precision": -1, "source": SOURCE, "split": split,
                     "difficulty": 1, "scene": ""})
    return rows


def proof_config(folder: Path, model: str, steps: int, overrides: dict):
    """configs/tiny.yaml with PROOF, the student (`tiny`: the embedded default's; `test`: the test-sized one), GRPO's
    max_steps and `overrides` merged in, validated and written to `folder`."""
    import yaml

    from ovlt.ground.config import _merge, load_config

    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    raw = _merge(raw, PROOF)
    if model == "test":
        raw = _merge(raw, {"models": {"student": {"tiny": TEST_MODEL}}})
    raw = _merge(_merge(raw, {"grpo": {"max_steps": steps}}), overrides)
    path = Path(folder) / "grpo-proof.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return load_config(path), path


def play(cfg, run, name: str, key, write) -> None:
    """Write a stage's outputs with `write(folder)` and its manifest, as the stage would, so that the stages
    downstream of it open as usual; the manifest says it was played."""
    from ovlt.ground.artifacts import Stage
    from ovlt.stages.registry import ITERATION, STAGES

    spec = STAGES[name]
    st = Stage(run, name, key if spec.scope == ITERATION else None, params=spec.params(cfg, key),
               folder=spec.folder(run, key))
    if st.done:
        return
    st.begin()
    write(st.dir)
    st.finish({}, [out for out in spec.outputs(cfg) if (st.dir / out).exists()], {"played_by": __file__})


def build(cfg, run) -> None:
    """The played stages: the held-out set, the base model, the SFT chains and the GRPO problems."""
    import datasets

    from ovlt.engines.models import build_tiny
    from ovlt.ground.artifacts import save_dataset
    from ovlt.ground.schema import PROBLEM_FEATURES
    from ovlt.scoring.prompts import assistant_turn, student_chat, student_text
    from ovlt.stages.curation import GRPO_FEATURES, SFT_FEATURES
    from ovlt.stages.rows import open_image, rows_to_dataset

    plan = cfg.schedule[0]
    heldout = problems(cfg.data.heldout_size, cfg.seed, "test")
    sft_rows = problems(plan.sft_problems, cfg.seed, "sft")
    grpo_rows = problems(plan.grpo_problems, cfg.seed, "grpo")
    pick = random.Random(f"grpo-proof-chains-{cfg.seed}")

    def sft_set(folder: Path) -> None:
        records = []
        for row in sft_rows:
            text = chain(row["answer"], pick.choice(sorted(COLOURS)))
            records.append({"prompt": student_chat(student_text(row)), "completion": assistant_turn(text),
                            "images": [open_image(row)], "id": row["id"], "source": SOURCE, "words": len(text.split()),
                            "tokens": 0, "reflections_before": 0, "reflections_after": 0})
        save_dataset(rows_to_dataset(records, SFT_FEATURES), folder / "sft")

    def grpo_set(folder: Path) -> None:
        records = [{**row, "prompt": student_chat(student_text(row)), "image": open_image(row)} for row in grpo_rows]
        save_dataset(rows_to_dataset(records, GRPO_FEATURES), folder / "grpo")

    def student(folder: Path) -> None:
        corpus = [student_text(row) for row in heldout[:20]] + [chain(c, c) for c in COLOURS]
        built = build_tiny(folder / "build", seed=cfg.seed, corpus=corpus, **cfg.models.student.tiny.model_dump())
        built.rename(folder / "checkpoint")
        shutil.rmtree(folder / "build")

    play(cfg, run, "data", None,
         lambda folder: save_dataset(datasets.Dataset.from_list(heldout, features=PROBLEM_FEATURES),
                                     folder / "heldout"))
    play(cfg, run, "student", None, student)
    play(cfg, run, "filter", 1, sft_set)
    play(cfg, run, "select_hard", 1, grpo_set)


def prove(cfg, run, config_path: Path) -> dict:
    """SFT, GRPO and the evaluation of both, by the study's stages; the summary as the study writes it, with the
    wall time of each stage and the GRPO log."""
    from ovlt.stages.evaluation import write_summary
    from ovlt.stages.registry import run_stage

    walls = {}
    for name, key in (("sft", 1), ("evaluate", "sft-1"), ("grpo", 1), ("evaluate", "grpo-1")):
        start = time.perf_counter()
        run_stage(cfg, run, name, key)
        walls[f"{name} {key}"] = round(time.perf_counter() - start, 1)
    summary = write_summary(cfg, run, config_path)
    log_rows = [json.loads(line) for line in (run.stage_dir("grpo", 1) / "log.jsonl").read_text().splitlines()]
    rewards = [row["rewards/accuracy_reward/mean"] for row in log_rows if "rewards/accuracy_reward/mean" in row]
    return {"summary": summary, "walls": walls, "accuracy_reward": rewards}


def result_row(summary: dict, stage: str) -> dict:
    entry = next(s for s in summary["stages"] if s["name"] == stage)
    return entry["results"][0]


def report(figures: dict) -> str:
    summary = figures["summary"]
    lines = [f"{'stage':<8}{'greedy':>8}{'95% CI':>16}{'sampled':>9}{'95% CI':>16}{'pass@k':>8}{'95% CI':>16}"]
    for stage in ("sft-1", "grpo-1"):
        r = result_row(summary, stage)
        cells = [(r["accuracy"], r["ci95"]), (r["sampled"]["accuracy"], r["sampled"]["ci95"]),
                 (r["pass_at_k"]["accuracy"], r["pass_at_k"]["ci95"])]
        lines.append(f"{stage:<8}" + "".join(f"{a:>8.3f}{f'[{lo:.3f}, {hi:.3f}]':>16}" for a, (lo, hi) in cells))
    for c in summary["comparisons"]:
        lo, hi = c["ci95"]
        lines.append(f"{c['from']} -> {c['to']} ({c['measure']}): {c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                     f"p {c['p_value']:.4f}")
    rewards = figures["accuracy_reward"]
    quarter = max(1, len(rewards) // 4)
    lines.append(f"accuracy reward over GRPO: first quarter {sum(rewards[:quarter]) / quarter:.3f}, last quarter "
                 f"{sum(rewards[-quarter:]) / quarter:.3f} ({len(rewards)} steps)")
    lines.append("wall seconds: " + ", ".join(f"{k} {v}" for k, v in figures["walls"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "test"], default="tiny",
                        help="the student: the embedded default's (tiny) or the test suite's (test)")
    parser.add_argument("--steps", type=int, default=90, help="GRPO steps (grpo.max_steps)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "grpo-proof",
                        help="the proof's run folder (reused: finished stages are skipped)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))

    from ovlt.ground.artifacts import Run
    from ovlt.ground.config import overrides_from

    cfg, config_path = proof_config(args.work, args.model, args.steps, overrides_from(args.set))
    run = Run(args.work)
    build(cfg, run)
    figures = prove(cfg, run, config_path)
    print(f"GRPO proof ({args.model} student, {args.steps} GRPO steps{', ' + ' '.join(args.set) if args.set else ''}; "
          f"held-out n = {cfg.data.heldout_size}, chance 0.5)")
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
