"""`ovlt plan` for both shipped configs: every stage, in paper order, with volumes, and no model loaded."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ovlt.ground.config import load_config
from ovlt.ground.layout import checkpoint_names, pool_ranges
from ovlt.study.order import stage_order
from ovlt.study.plan import (
    AUTHORS_SFT,
    GPU_STAGES,
    THROUGHPUT,
    format_plan,
    grpo_gpu_seconds,
    grpo_volume,
    plan,
    throughput,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["tiny.yaml", "openvlthinker-7b.yaml", "openvlthinker-7b-released.yaml"])
def test_plan_cli_runs_without_loading_models(name):
    code = (
        "import sys; from ovlt.cli import main; rc = main(['plan', '--config', sys.argv[1]]);"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'plan must not load models';"
        "sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "configs" / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cfg = load_config(REPO / "configs" / name)
    for i in range(1, cfg.iterations + 1):
        assert f"iteration {i}:" in out.stdout
        assert f"iter{i}/grpo" in out.stdout and f"evaluate grpo-{i}" in out.stdout
    assert "samples=" in out.stdout and "max_tokens=" in out.stdout


def test_iteration_semantics():
    cfg = load_config(REPO / "configs/openvlthinker-7b.yaml")
    labels = [ref.label for ref in stage_order(cfg)]
    assert labels.index("iter1/caption") < labels.index("iter1/distill") < labels.index("iter1/sft")
    assert "iter2/caption" not in labels and "iter2/self_generate" in labels and "iter1/self_generate" not in labels
    assert [lab.split()[1] for lab in labels if lab.startswith("evaluate")] == checkpoint_names(cfg)


def test_paper_volumes():
    cfg = load_config(REPO / "configs/openvlthinker-7b.yaml")
    by_label = {p.ref.label: p.volumes for p in plan(cfg)}
    # distillation draws until the 25k examples are met: its volumes are those of every problem it may draw
    assert by_label["iter1/distill"]["samples"] == cfg.schedule[0].sft_problems * 4
    # 25k examples, global batch 32, 1 epoch
    assert by_label["iter1/sft"]["steps"] == 25000 // 32 and by_label["iter1/filter"]["examples_max"] == 25000
    assert by_label["iter2/self_generate"]["samples"] == cfg.schedule[1].sft_problems * 4


def test_pool_ranges_are_disjoint():
    cfg = load_config(REPO / "configs/tiny.yaml")
    spans = sorted(pool_ranges(cfg).values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


PAPER = REPO / "configs/openvlthinker-7b.yaml"


def test_paper_gpu_hours_are_positive_per_gpu_stage_and_add_up_to_the_printed_total():
    cfg = load_config(PAPER)
    planned = plan(cfg)
    for p in planned:
        if p.ref.name in GPU_STAGES:
            assert p.gpu_hours is not None and math.isfinite(p.gpu_hours) and p.gpu_hours > 0, p.ref.label
        else:
            assert p.gpu_hours is None, p.ref.label
    text = format_plan(cfg)
    assert "measured on an H100" in text and "ASSUMED" in text and "authors' reported H100s" in text
    printed = float(re.search(r"^  total +([\d.]+) GPU-h$", text, re.MULTILINE).group(1))
    assert printed == pytest.approx(sum(p.gpu_hours for p in planned if p.gpu_hours is not None), abs=0.05)


def test_sft_1_estimate_is_within_a_factor_3_of_the_authors_hardware():
    # The authors report ~30 min on 2 H100s for 5k SFT examples: 1 GPU-hour. THROUGHPUT holds our H100 measurement and
    # independent public figures; a factor of 3 either way covers their setup (LLaMA-Factory) and our assumed example lengths.
    by_label = {p.ref.label: p for p in plan(load_config(PAPER))}
    sft1 = by_label["iter1/sft"]
    per_5k = sft1.gpu_hours * AUTHORS_SFT["examples"] / sft1.volumes["examples_max"]
    authors = AUTHORS_SFT["gpus"] * AUTHORS_SFT["hours"]
    assert authors / 3 <= per_5k <= authors * 3
    assert by_label["iter2/sft"].gpu_hours == pytest.approx(per_5k)  # iteration 2 trains on 5k examples


def test_gpu_hours_follow_the_volumes_and_the_model_sizes():
    base = {p.ref.label: p.gpu_hours for p in plan(load_config(PAPER))}
    doubled = {p.ref.label: p.gpu_hours for p in plan(load_config(PAPER, {"distill": {"sampling": {"n": 8}}}))}
    assert doubled["iter1/distill"] == pytest.approx(2 * base["iter1/distill"])
    assert doubled["iter1/sft"] == base["iter1/sft"]
    assert throughput("Qwen/Qwen2.5-VL-7B-Instruct") is THROUGHPUT["7B"]
    assert throughput("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B") is THROUGHPUT["14B"]
    assert throughput("tiny") is None and throughput("Qwen/Qwen2.5-VL-72B-Instruct") is None


def test_the_qwen3_vl_config_is_planned_with_its_students_size_and_image_tokens():
    paper = {p.ref.label: p for p in plan(load_config(PAPER))}
    today = {p.ref.label: p for p in plan(load_config(REPO / "configs/qwen3vl-8b.yaml"))}
    assert throughput("Qwen/Qwen3-VL-8B-Instruct") is THROUGHPUT["8B"]
    # the same SFT volume, more parameters per token and fewer image tokens (256 of 32x32 px against 334 of 28x28)
    assert today["iter1/sft"].gpu_hours > paper["iter1/sft"].gpu_hours
    assert today["iter1/distill"].gpu_hours == paper["iter1/distill"].gpu_hours  # the paper's reasoner, unchanged


def test_tiny_config_prints_no_gpu_hours():
    cfg = load_config(REPO / "configs/tiny.yaml")
    assert all(p.gpu_hours is None for p in plan(cfg))
    text = format_plan(cfg)
    assert "GPU-hours: none estimated" in text and "GPU-h" not in text.replace("GPU-hours", "")


def test_generation_spreads_over_every_gpu_and_the_plan_prints_wall_clock_hours():
    from ovlt.engines.placement import engine_count
    from ovlt.study.plan import generation_gpus, study_gpus

    cfg = load_config(PAPER)
    assert study_gpus(cfg) == 8  # the launch sections' num_processes
    models = cfg.models
    assert [engine_count(m, 8) for m in (models.captioner, models.reasoner, models.student)] == [8, 4, 8]
    assert [generation_gpus(m, 8) for m in (models.captioner, models.reasoner, models.student)] == [8, 8, 8]
    by_label = {p.ref.label: p for p in plan(cfg)}
    distill = by_label["iter1/distill"]
    assert (distill.gpus, distill.engines) == (8, 4)
    assert distill.wall_hours == pytest.approx(distill.gpu_hours / 8)
    assert by_label["iter1/sft"].gpus == cfg.sft.launch.num_processes
    text = format_plan(cfg)
    line = next(line for line in text.splitlines() if line.startswith("  iter1/distill") and "GPU-h" in line)
    assert f"{distill.gpu_hours:.1f} GPU-h on  8 GPU(s) (4 engine(s) x 2): {distill.wall_hours:6.2f} h" in line
    walls = float(re.search(r"^  total wall-clock +([\d.]+) h", text, re.MULTILINE).group(1))
    assert walls == pytest.approx(sum(p.wall_hours for p in plan(cfg) if p.wall_hours is not None), abs=0.05)

    # One engine each, as before data parallelism: the reasoner holds 2 of the 8 GPUs, 4x the wall-clock hours.
    single = load_config(PAPER, {"models": {role: {"data_parallel_size": 1}
                                            for role in ("captioner", "reasoner", "student")}})
    alone = {p.ref.label: p for p in plan(single)}["iter1/distill"]
    assert (alone.gpus, alone.engines) == (2, 1) and alone.gpu_hours == pytest.approx(distill.gpu_hours)
    assert alone.wall_hours == pytest.approx(4 * distill.wall_hours)


def test_engine_count_rules():
    from ovlt.engines.placement import engine_count
    from ovlt.ground.config import ModelSpec

    assert engine_count(ModelSpec(name="m", backend="vllm", data_parallel_size="auto"), 8) == 8
    assert engine_count(ModelSpec(name="m", backend="vllm", tensor_parallel_size=2, data_parallel_size="auto"), 7) == 3
    assert engine_count(ModelSpec(name="m", backend="vllm", data_parallel_size="auto"), 0) == 1
    assert engine_count(ModelSpec(name="m", backend="transformers", data_parallel_size="auto"), 8) == 1
    assert engine_count(ModelSpec(name="m", backend="transformers", data_parallel_size=2), 0) == 2


RELEASED = REPO / "configs/openvlthinker-7b-released.yaml"


def test_grpo_volumes_count_rollouts_updates_epochs_and_reuse():
    section = load_config(RELEASED).grpo
    # 5,000 prompts x 5 = 25,000 completions an epoch, in whole rollouts of 2,560 (TRL drops the last partial one):
    # 9 rollouts, 36 updates of 640.
    one_epoch = grpo_volume(section.model_copy(update={"phases": [], "num_train_epochs": 1.0}), 5000)
    assert (one_epoch.rollouts, one_epoch.generation_batch, one_epoch.sampled, one_epoch.steps) == (9, 2560, 23040, 36)
    reused = grpo_volume(section.model_copy(update={"phases": [], "num_train_epochs": 1.0, "num_iterations": 2}), 5000)
    assert (reused.rollouts, reused.sampled, reused.trained, reused.steps) == (9, 23040, 46080, 72)
    # The paper config: one rollout per update (generation batch = the update's 160 completions).
    paper = grpo_volume(load_config(PAPER).grpo, 5000)
    assert (paper.rollouts, paper.generation_batch, paper.steps) == (156, 160, 156)


def test_released_plan_runs_both_phases_and_costs_their_sum():
    cfg = load_config(RELEASED)
    grpo_1 = next(p for p in plan(cfg) if p.ref.label == "iter1/grpo")
    assert grpo_1.volumes["steps"] == 36 * 5 + 36 * 15 and grpo_1.volumes["rollouts"] == 9 * 5 + 9 * 15
    assert "medium 5,000 problems x 5 epoch(s)" in grpo_1.volumes["phases"] and "vision frozen" in grpo_1.volumes["phases"]
    medium, hard = cfg.grpo.phase_sections()
    seconds = [grpo_gpu_seconds(cfg, section, v.rollouts, v.generation_batch, v.trained)
               for v, (_, section) in ((grpo_volume(medium[1], 5000), medium), (grpo_volume(hard[1], 5000), hard))]
    assert grpo_1.gpu_hours == pytest.approx(sum(seconds) / 3600)
    paper_grpo = next(p for p in plan(load_config(PAPER)) if p.ref.label == "iter1/grpo")
    assert grpo_1.gpu_hours > 5 * paper_grpo.gpu_hours  # 20 passes of two sets against one pass of one
    text = format_plan(cfg)
    assert re.search(r"^  total +[\d.]+ GPU-h$", text, re.MULTILINE)
