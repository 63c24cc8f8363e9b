"""Curation rules (selection, reflection filter, consistency, balance, funnel, difficulty bands) and the
select / filter / select_hard stages on a tiny run."""

import json
import random
import tempfile

import pytest
from helpers import add_checkpoint
from helpers import teachers_config as tiny_config
from helpers import teachers_run as make_run

from ovlt.engines import scripted
from ovlt.ground.artifacts import load_dataset_dir
from ovlt.ground.config import DEFAULT_REFLECTION_MARKERS
from ovlt.ground.procedural import generate
from ovlt.scoring.chains import well_formed
from ovlt.stages import curation, teachers

MARKERS = DEFAULT_REFLECTION_MARKERS


def chain(think: str, answer: str) -> str:
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


# --------------------------------------------------------------------------------------------------------
# selection


def test_shortest_correct_ignores_shorter_wrong_chains():
    chains = ["<think>x</think><answer>1</answer>", chain("a b c d e f", "2"), chain("a b c", "2"),
              chain("a b c d", "2")]
    ok = [False, True, True, True]
    rng = random.Random(0)
    assert curation.choose(chains, ok, "shortest_correct", rng) == 2
    assert curation.choose(chains, ok, "longest_correct", rng) == 1
    assert curation.choose(chains, ok, "first_correct", rng) == 1
    assert curation.choose(chains, ok, "random_correct", rng) in (1, 2, 3)
    assert curation.choose(chains, [False] * 4, "shortest_correct", rng) is None


def test_second_longest_correct_drops_the_longest_and_keeps_a_lone_chain():
    """The authors' released rule (generate_reasoning_thinker.py): correct chains sorted by words, the longest
    dropped, the longest of the rest kept; one correct chain is kept as it is; of two, the shorter."""
    chains = [chain("a b c d e f g h", "2"), chain("a b c", "2"), chain("a b c d e f", "2"), chain("a b c d", "2")]
    rng = random.Random(0)
    assert curation.choose(chains, [True, True, True, True], "second_longest_correct", rng) == 2
    assert curation.choose(chains, [True, True, False, False], "second_longest_correct", rng) == 1
    assert curation.choose(chains, [False, False, False, True], "second_longest_correct", rng) == 3
    assert curation.choose(chains, [False] * 4, "second_longest_correct", rng) is None
    # Ties: a stable sort by length puts the later chain last, so the later one counts as the longest.
    tied = [chain("a b", "2"), chain("c d", "2"), chain("e f", "2")]
    assert curation.choose(tied, [True] * 3, "second_longest_correct", rng) == 1


# --------------------------------------------------------------------------------------------------------
# the reflection filter


def test_filter_cuts_at_the_first_marker_and_keeps_the_answer():
    text = chain("A is 6, B is 8. The tallest bar is B. But wait, let me check. Wait, A is 6. The tallest bar is B.",
                 "B")
    kept, removed = curation.cut_reflections(text, MARKERS)
    assert kept == chain("A is 6, B is 8. The tallest bar is B.", "B")
    assert removed.startswith("But wait,")
    assert curation.count_markers(text, MARKERS) == 2 and curation.count_markers(kept, MARKERS) == 0


def test_filter_leaves_clean_chains_and_drops_chains_that_start_with_a_marker():
    clean = chain("A is 6. The value of bar A is 6.", "6")
    assert curation.cut_reflections(clean, MARKERS) == (clean, "")
    kept, removed = curation.cut_reflections(chain("Wait, A is 6.", "6"), MARKERS)
    assert kept is None and removed == "Wait, A is 6."
    assert curation.cut_reflections(chain("A is 6. Hmm, A is 7.", "7"), ["Hmm,"])[0] == chain("A is 6.", "7")


# --------------------------------------------------------------------------------------------------------
# consistency of a chain with its own answer


@pytest.mark.parametrize(("think", "answer", "choices", "consistent"), [
    ("C is 1, F is 5. The tallest bar is F.", "B", ["C", "F"], True),  # option B is bar F
    ("C is 1, F is 5. The tallest bar is F.", "A", ["C", "F"], False),
    ("C (A) is 1, top C (A) 1. F (B) is 5, top F (B) 5. The tallest bar is F (B).", "B", ["C", "F"], True),
    ("C (A) is 1, top C (A) 1. F (B) is 5, top F (B) 5. The tallest bar is F (B).", "A", ["C", "F"], False),
    ("6 < 8. A is not taller than B, so the answer is No.", "B", ["Yes", "No"], True),
    ("I see a big red circle. The largest object is the red circle.", "red circle", ["blue square", "red circle"],
     True),
    ("180 - 60 - 70 = 50. The missing angle is 50.", "50", [], True),
    ("180 - 60 - 70 = 50. The missing angle is 50.", "60", [], False),
    ("The legs are 3 and 4. The hypotenuse is 5.0.", "5", [], True),
    ("blah blah", "5", [], False),
])
def test_consistency_compares_the_last_sentence_with_the_answer(think, answer, choices, consistent):
    problem = {"choices": choices, "answer_type": "multiple_choice" if choices else "float", "precision": 1}
    assert curation.is_consistent(chain(think, answer), problem) is consistent


def test_stated_facts_right_detects_wrong_values_behind_a_right_answer():
    scene = {"family": "chart", "bars": [{"label": "red", "value": 6}, {"label": "blue", "value": 8}], "query": {}}
    assert scripted.stated_facts_right(chain("red is 6, blue is 8. The tallest bar is blue.", "B"), scene) is True
    assert scripted.stated_facts_right(chain("red is 5, blue is 8. The tallest bar is blue.", "B"), scene) is False
    # a bar the picture does not have is a wrong fact; "the red bar is 6" restates, it is not a stated value
    assert scripted.stated_facts_right(chain("green is 6, blue is 8. The tallest bar is blue.", "B"), scene) is False
    assert scripted.stated_facts_right(chain("red (A) is 6, top red (A) 6. The value of the red bar is 6.", "6"),
                                       scene) is True
    assert scripted.stated_facts_right(chain("x", "B"), "") is None
    stepwise = "red (A) is 6, top red (A) 6. blue (B) is {}, top blue (B) {}. The tallest bar is blue (B)."
    assert scripted.stated_facts_right(chain(stepwise.format(8, 8), "B"), scene) is True
    assert scripted.stated_facts_right(chain(stepwise.format(7, 7), "B"), scene) is False


# --------------------------------------------------------------------------------------------------------
# balance, funnel, difficulty bands


def test_cap_shares_caps_common_sources_and_keeps_rare_ones_whole():
    ids = {"a": [f"a{i}" for i in range(500)], "b": [f"b{i}" for i in range(10)], "c": [f"c{i}" for i in range(300)]}
    caps = {"a": 0.5, "b": 0.5, "c": 0.5}
    out = curation.cap_shares(ids, caps, seed=0)
    sizes = {s: len(v) for s, v in out.items()}
    # The rarest source (10) does not cut the others to its size, as equalising to it would (30 in all).
    assert sizes["b"] == 10 and sum(sizes.values()) > 600
    assert all(n <= 0.5 * sum(sizes.values()) for n in sizes.values())
    assert sizes == {"a": 310, "b": 10, "c": 300}  # a capped at half of 620; c and b whole
    # Caps bind together: two sources at 40% each leave 20% to the rarest, whose 10 then bound the whole at 50.
    assert sum(len(v) for v in curation.cap_shares(ids, {"a": 0.4, "c": 0.4}, seed=0).values()) == 50
    assert out == curation.cap_shares(ids, caps, seed=0)
    assert out["a"] == sorted(out["a"], key=ids["a"].index)  # input order kept
    # A source without a cap is kept whole; no caps at all keep everything.
    assert {s: len(v) for s, v in curation.cap_shares(ids, {"a": 0.5}, seed=0).items()} == {"a": 310, "b": 10, "c": 300}
    assert curation.cap_shares(ids, {}, seed=0) == ids
    # Caps of the sources present that cannot fill a whole (0.35 + 0.35 < 1) keep their proportions, with a warning.
    two = {"x": ids["a"][:40], "y": ids["c"][:10]}
    assert {s: len(v) for s, v in curation.cap_shares(two, {"x": 0.35, "y": 0.35, "z": 0.35}, seed=0).items()} == \
        {"x": 10, "y": 10}
    # Caps that add up to one equalise, as the embedded default's two families at 0.5 each do.
    assert {s: len(v) for s, v in curation.cap_shares({"x": ids["a"], "y": ids["c"]}, {"x": 0.5, "y": 0.5},
                                                          seed=0).items()} == {"x": 300, "y": 300}


def _counts(inn, out, dropped, **extra):
    return {"in": inn, "out": out, "dropped": dropped, **extra, "by_source": {
        "s": {"in": inn, "out": out, "dropped": dropped, **extra}}}


def test_funnel_arithmetic():
    caption = _counts(10, 9, {"unreadable_image": 1})
    distill = _counts(9, 8, {"empty_response": 1})
    select = _counts(8, 5, {"no_correct_chain": 2, "balance": 1}, with_correct=6)
    filtered = _counts(5, 4, {"empty_after_cut": 1})
    steps = [("problems", caption, "in"), ("captioned", caption, "out"), ("with_chains", distill, "out"),
             ("with_correct", select, "with_correct"), ("selected", select, "out"), ("kept", filtered, "out")]
    table = curation.funnel(steps)
    assert [s["count"] for s in table["total"]] == [10, 9, 8, 6, 5, 4]
    assert table["total"][4]["dropped"] == {"balance": 1}
    assert curation.funnel_errors(table) == []
    distill["out"] = 7  # a stage that lost a problem without counting it
    errors = curation.funnel_errors(curation.funnel(steps))
    assert errors and all("with_chains 7" in e for e in errors)


def test_pass_rate_and_band_selection():
    problem = {"id": "p", "answer": "B", "answer_type": "multiple_choice", "choices": ["A", "B"], "precision": -1}
    assert curation.pass_rate([chain("x", "B"), chain("x", "A"), "B", "nothing"], problem) == 0.5
    rates = {"never": 0.0, "low": 0.125, "mid": 0.5, "high": 0.875, "always": 1.0}
    assert curation.select_by_band(rates, [(0.1, 0.9)], 10, 0) == ["low", "mid", "high"]
    assert curation.select_by_band(rates, [(0.0, 0.5)], 10, 0) == ["low", "mid"]
    assert curation.select_by_band(rates, [(0.0, 0.5)], 10, 0, include_never_solved=True) == ["never", "low", "mid"]
    assert curation.select_by_band(rates, [(0.0, 0.2), (0.8, 1.0)], 10, 0) == ["low", "high", "always"]
    many = {f"p{i}": 0.5 for i in range(100)}
    picked = curation.select_by_band(many, [(0.1, 0.9)], 30, seed=1)
    assert len(picked) == 30 and picked == curation.select_by_band(many, [(0.1, 0.9)], 30, seed=1)
    assert picked != curation.select_by_band(many, [(0.1, 0.9)], 30, seed=2)


def test_named_sets_are_drawn_in_order_and_disjoint():
    from ovlt.ground.config import SelectHard

    rates = {f"p{i}": rate for i, rate in enumerate([0.125, 0.25, 0.5, 0.5, 0.625, 0.875, 0.0, 1.0] * 5)}
    sh = SelectHard(sets=[{"name": "medium", "bands": [(0.5, 0.875)]}, {"name": "hard", "bands": [(0.125, 0.375)],
                                                                       "problems": 4},
                          {"name": "again", "bands": [(0.0, 1.0)]}])
    sets = curation.named_sets(rates, sh, default_target=12, seed=0)
    assert len(sets["medium"]) == 12 and all(0.5 <= rates[i] <= 0.875 for i in sets["medium"])
    assert len(sets["hard"]) == 4 and all(0.125 <= rates[i] <= 0.375 for i in sets["hard"])
    # The third set draws from what the first two left: never-solved excluded, as for the default set.
    assert not sets["again"] & (sets["medium"] | sets["hard"]) and all(rates[i] > 0 for i in sets["again"])
    assert sets == curation.named_sets(rates, sh, default_target=12, seed=0)


def test_pass_rate_above_chance_discounts_guessing_among_options():
    two = {"answer_type": "multiple_choice", "choices": ["Yes", "No"]}
    three = {"answer_type": "multiple_choice", "choices": ["red", "blue", "green"]}
    free = {"answer_type": "integer", "choices": []}
    assert curation.above_chance(0.5, two) == 0.0  # 3 of 6 on a coin flip shows no skill
    assert curation.above_chance(1 / 3, two) == 0.0  # below chance is no skill either, not negative
    assert abs(curation.above_chance(5 / 6, two) - 2 / 3) < 1e-9
    assert abs(curation.above_chance(0.5, three) - 0.25) < 1e-9
    assert curation.above_chance(1.0, three) == 1.0
    assert curation.above_chance(0.5, free) == 0.5  # free-form answers are not guessed from a list
    # In the band [0.1, 0.9] a coin-flip problem at 3 of 6 drops out; one at 5 of 6 stays.
    rates = {"coin": curation.above_chance(0.5, two), "skill": curation.above_chance(5 / 6, two)}
    assert curation.select_by_band(rates, [(0.1, 0.9)], 10, 0) == ["skill"]


# --------------------------------------------------------------------------------------------------------
# stages


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_checkpoint):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cfg = tiny_config(repo, n_sft=80, models={"captioner": {"batch_size": 16}, "reasoner": {"batch_size": 16},
                                               "student": {"batch_size": 4}})
    run = make_run(tmp_path_factory.mktemp("run"), cfg, tiny_checkpoint)
    teachers.caption(cfg, run, 1)
    teachers.distill(cfg, run, 1)
    curation.select(cfg, run, 1)
    return cfg, run, curation.filter_reflections(cfg, run, 1)


def test_select_keeps_one_correct_chain_per_problem_and_records_pass_at_k(teacher_run):
    cfg, run, _ = teacher_run
    manifest = run.manifest("select", 1)
    selected = load_dataset_dir(run.stage_dir("select", 1) / "selected")
    problems = {r["id"]: r for r in generate(200, 0, "train").remove_columns("image")}
    for row in selected:
        p = problems[row["id"]]
        assert well_formed(row["chain"]) and row["n_correct"] >= 1
        assert curation.score(row["chain"], p["answer"], p["answer_type"], p["choices"], p["precision"]).correct
    passes = manifest["pass_at_k"]["all"]
    assert passes["k"] == 4 and passes["problems"] == 80
    assert passes["pass@k"] >= passes["pass@1"] and passes["pass@k"] == len(selected) / 80
    print("scripted teacher:", json.dumps(manifest["pass_at_k"]))


def test_filter_writes_an_sft_set_with_fewer_reflections_and_words_and_a_funnel_that_adds_up(teacher_run):
    cfg, run, manifest = teacher_run
    counts = manifest["counts"]
    sft = load_dataset_dir(run.stage_dir("filter", 1) / "sft")
    assert set(sft.column_names) == {"prompt", "completion", "images", "id", "source", "words", "tokens",
                                     "reflections_before", "reflections_after"}
    assert len(sft) == counts["out"] == manifest["funnel"]["total"][-1]["count"]
    assert counts["reflections_before"] > 0 and counts["reflections_after"] == 0
    assert counts["words_after"] < counts["words_before"]
    assert sum(sft["reflections_after"]) == 0 and sum(sft["reflections_before"]) == counts["reflections_before"]
    assert curation.funnel_errors(manifest["funnel"]) == []
    assert [s["step"] for s in manifest["funnel"]["total"]] == ["problems", "captioned", "with_chains",
                                                                "with_correct", "selected", "kept"]
    assert max(sft["words"]) < 120 and 0 < min(sft["tokens"])
    row = sft[0]
    assert row["prompt"][0]["content"][0]["type"] == "image" and row["images"][0].mode == "RGB"
    assert row["completion"][0]["role"] == "assistant"
    print("filter: words", counts["words_before"], "->", counts["words_after"], "markers",
          counts["reflections_before"], "->", counts["reflections_after"])


def test_max_words_rule_drops_long_chains(teacher_run):
    cfg, run, _ = teacher_run
    cfg = cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"rule": "max_words", "max_words": 30})})
    manifest = curation.filter_reflections(cfg, run, 1)
    sft = load_dataset_dir(run.stage_dir("filter", 1) / "sft")
    assert max(sft["words"]) <= 30 and manifest["counts"]["dropped"]["over_max_words"] > 0
    assert curation.funnel_errors(manifest["funnel"]) == []
    curation.filter_reflections(teacher_run[0], run, 1)  # the paper's rule again, for the other tests


def test_cut_and_max_words_both_apply_when_both_are_set(teacher_run):
    cfg, run, _ = teacher_run
    cut_only = curation.filter_reflections(cfg, run, 1)["counts"]
    both = cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"max_words": 40})})
    manifest = curation.filter_reflections(both, run, 1)
    counts = manifest["counts"]
    sft = load_dataset_dir(run.stage_dir("filter", 1) / "sft")
    assert max(sft["words"]) <= 40 and counts["reflections_after"] == 0  # cut, then bounded
    assert counts["dropped"]["over_max_words"] > 0  # counted as its own reason, beside empty_after_cut
    assert counts["out"] == cut_only["out"] - counts["dropped"]["over_max_words"]
    assert curation.funnel_errors(manifest["funnel"]) == []
    curation.filter_reflections(cfg, run, 1)  # the paper's rule again, for the other tests


def test_sft_trainer_accepts_the_set(teacher_run):
    from trl import SFTConfig, SFTTrainer

    from ovlt.engines.models import load

    cfg, run, _ = teacher_run
    sft = load_dataset_dir(run.stage_dir("filter", 1) / "sft")
    model, processor = load(run.stage_dir("student") / "checkpoint")
    args = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=2, per_device_train_batch_size=4, bf16=False,
                     max_length=None, report_to=[], save_strategy="no")
    result = SFTTrainer(model=model, args=args, train_dataset=sft, processing_class=processor).train()
    assert result.global_step == 2 and result.training_loss > 0


def test_select_hard_writes_a_grpo_set_and_a_histogram(tmp_path, tiny_checkpoint):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cfg = tiny_config(repo, n_sft=4, candidates=6,
                      select_hard={"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8},
                                   "bands": [[0.0, 1.0]], "include_never_solved": True})
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    add_checkpoint(run, "sft", 1, tiny_checkpoint)
    manifest = curation.select_hard(cfg, run, 1)
    assert manifest["counts"]["in"] == 6 and manifest["counts"]["out"] == 2  # every rate in band; target 2
    assert sum(manifest["histogram"]["all"].values()) == 6
    grpo = load_dataset_dir(run.stage_dir("select_hard", 1) / "grpo")
    assert set(grpo.column_names) == set(curation.GRPO_FEATURES) and len(grpo) == 2
    assert grpo[0]["prompt"][0]["content"][1]["text"].endswith("</answer> tags.")


def test_select_hard_writes_named_sets_beside_the_default_one(tmp_path, tiny_checkpoint):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cfg = tiny_config(repo, n_sft=4, candidates=6,
                      select_hard={"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8},
                                   "bands": [[0.0, 1.0]], "include_never_solved": True,
                                   "sets": [{"name": "first", "bands": [[0.0, 1.0]], "problems": 4},
                                            {"name": "rest", "bands": [[0.0, 1.0]]}]})
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    add_checkpoint(run, "sft", 1, tiny_checkpoint)
    manifest = curation.select_hard(cfg, run, 1)
    assert manifest["counts"]["out"] == 2 and len(load_dataset_dir(run.stage_dir("select_hard", 1) / "grpo")) == 2
    first, rest = (load_dataset_dir(run.stage_dir("select_hard", 1) / "sets" / name) for name in ("first", "rest"))
    assert (len(first), len(rest)) == (4, 2)  # 4, then the schedule's target 2 of the 2 left
    assert not set(first["id"]) & set(rest["id"]) and set(first.column_names) == set(curation.GRPO_FEATURES)
    assert {name: s["problems"] for name, s in manifest["sets"].items()} == {"first": 4, "rest": 2}
    assert "sets" in manifest["outputs"]


def _target_run(tmp_path, tiny_checkpoint, sft_examples):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    schedule = [{"sft_problems": 80, "sft_examples": sft_examples, "grpo_candidates": 4, "grpo_problems": 2},
                {"sft_problems": 8, "grpo_candidates": 4, "grpo_problems": 2}]
    cfg = tiny_config(repo, schedule=schedule, models={"captioner": {"batch_size": 16},
                                                       "reasoner": {"batch_size": 4}, "student": {"batch_size": 4}})
    run = make_run(tmp_path, cfg, tiny_checkpoint)
    teachers.caption(cfg, run, 1)
    distilled = teachers.distill(cfg, run, 1)
    curation.select(cfg, run, 1)
    return cfg, run, distilled, curation.filter_reflections(cfg, run, 1)


def test_drawing_stops_once_the_sft_target_is_met_and_the_set_holds_exactly_the_target(tmp_path, tiny_checkpoint):
    cfg, run, distilled, manifest = _target_run(tmp_path, tiny_checkpoint, 20)
    not_drawn = distilled["counts"]["dropped"]["not_drawn"]
    assert not_drawn >= 16  # a shard is 16 problems here: the reasoner stopped at least one shard early
    assert len(load_dataset_dir(run.stage_dir("filter", 1) / "sft")) == manifest["counts"]["out"] == 20
    assert manifest["target"] == {"examples": 20, "kept": 20, "shortfall": 0, "problems": 80, "not_drawn": not_drawn}
    assert curation.funnel_errors(manifest["funnel"]) == []
    with_chains = manifest["funnel"]["total"][2]
    assert with_chains["step"] == "with_chains" and with_chains["dropped"]["not_drawn"] == not_drawn


def test_a_target_the_problems_cannot_meet_is_named_as_a_shortfall(tmp_path, tiny_checkpoint, caplog):
    cfg, run, distilled, manifest = _target_run(tmp_path, tiny_checkpoint, 80)
    target = manifest["target"]
    assert distilled["counts"]["dropped"].get("not_drawn", 0) == 0  # every problem was drawn
    assert target["kept"] == manifest["counts"]["out"] < 80 and target["shortfall"] == 80 - target["kept"]
    assert "ran out" in target["reason"] and "sft_problems" in target["reason"]
    from ovlt.stages.report import funnel_table

    shown = funnel_table(run).loc[(1, "all")]
    assert (shown["target"], shown["shortfall"]) == ("80", str(target["shortfall"]))
    assert any("short" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert curation.funnel_errors(manifest["funnel"]) == []
