"""Teacher stages: scripted captioner and reasoner, R1 format conversion, caption/distill/self-generate stages,
resume from shards, and bad rows."""

import json
import re

import datasets
import pytest
from helpers import add_checkpoint
from helpers import teachers_config as tiny_config
from helpers import teachers_run as make_run

from ovlt.engines import scripted
from ovlt.engines.generation import Backend
from ovlt.ground.artifacts import Stage, load_dataset_dir
from ovlt.ground.config import DEFAULT_REFLECTION_MARKERS
from ovlt.ground.procedural import generate
from ovlt.ground.schema import option_letter
from ovlt.scoring.chains import well_formed
from ovlt.scoring.matching import score
from ovlt.stages import student, teachers
from ovlt.stages.curation import is_consistent

PROBLEM_COLUMNS = ["id", "question", "choices", "answer", "answer_type", "precision", "source", "scene"]


@pytest.fixture(scope="module")
def problems():
    return generate(200, 1, "train").select_columns(PROBLEM_COLUMNS)


def teacher_pass_rate(problems, captioner, reasoner, k=1):
    hits = 0
    for row in problems:
        chains = reasoner.chains(row, captioner.describe(row), k)
        hits += any(score(c, row["answer"], row["answer_type"], row["choices"], row["precision"]).correct
                    for c in chains)
    return hits / len(problems)


# --------------------------------------------------------------------------------------------------------
# scripted teachers


def test_faithful_caption_states_every_fact_and_the_reasoner_solves_everything(problems):
    captioner = scripted.ScriptedCaptioner(fidelity=1.0, omit_rate=0.0)
    chart = next(r for r in problems if r["source"] == "synthetic/chart")
    text = captioner.describe(chart)
    for bar in json.loads(chart["scene"])["bars"]:
        assert f"The {bar['label']} bar is {bar['value']}." in text
    assert "about" not in text
    assert teacher_pass_rate(problems, captioner, scripted.ScriptedReasoner(verbosity=1)) == 1.0


def test_fidelity_and_omissions_lower_teacher_accuracy_and_k_samples_recover_some(problems):
    reasoner = scripted.ScriptedReasoner(reflection_rate=0.0, verbosity=1)
    lossy = scripted.ScriptedCaptioner(fidelity=0.6, omit_rate=0.15)
    single, at_4 = teacher_pass_rate(problems, lossy, reasoner, 1), teacher_pass_rate(problems, lossy, reasoner, 4)
    assert single < 0.85
    assert at_4 > single  # vague and missing facts are read differently per chain
    blind = scripted.ScriptedCaptioner(fidelity=1.0, omit_rate=1.0)
    assert " bar is " not in blind.describe(next(r for r in problems if r["source"] == "synthetic/chart"))


def test_chain_is_dense_well_formed_and_verbosity_adds_words(problems):
    chart = next(r for r in problems if r["source"] == "synthetic/chart")
    caption = scripted.ScriptedCaptioner().describe(chart)
    terse = scripted.ScriptedReasoner(verbosity=0).chain(chart, caption, 0)
    chatty = scripted.ScriptedReasoner(verbosity=3).chain(chart, caption, 0)
    assert well_formed(terse) and well_formed(chatty)
    first = terse.removeprefix("<think>").split(". ")[0]
    bars = json.loads(chart["scene"])["bars"]
    assert first.rstrip(".") == ", ".join(f"{b['label']} is {b['value']}" for b in bars)  # values first
    assert len(chatty.split()) > len(terse.split())
    assert len(terse.split()) < 40


def test_stepwise_chains_keep_a_running_best_and_stay_consistent(problems):
    captioner = scripted.ScriptedCaptioner(fidelity=1.0, omit_rate=0.0)
    stepwise = scripted.ScriptedReasoner(verbosity=1, stepwise=True)
    assert teacher_pass_rate(problems, captioner, stepwise) == 1.0  # new words, same answers
    extremes = [r for r in problems if json.loads(r["scene"])["query"]["kind"] in ("tallest", "shortest")]
    assert extremes
    for row in extremes:
        scene = json.loads(row["scene"])
        chain = stepwise.chain(row, captioner.describe(row), 0)
        letter = chain.split("<answer>")[1].split("</answer>")[0]
        assert f"bar is {row['answer']} ({letter})." in chain  # the conclusion names the bar and its letter
        assert is_consistent(chain, row) and scripted.stated_facts_right(chain, row["scene"])
        better = max if scene["query"]["kind"] == "tallest" else min
        for i, bar in enumerate(scene["bars"]):  # after every value, the best of the values so far
            best = better(scene["bars"][: i + 1], key=lambda b: b["value"])
            word = "top" if better is max else "low"
            assert (f"{bar['label']} ({option_letter(i)}) is {bar['value']}, {word} {best['label']} "
                    f"({option_letter(scene['bars'].index(best))}) {best['value']}.") in chain
    plain = scripted.ScriptedReasoner(verbosity=1)
    kinds = {}
    for row in problems:
        kinds.setdefault(json.loads(row["scene"])["query"]["kind"], row)
    # value / compare: only the bars asked about, in the question's order, so no lookup across a list
    value = kinds["value"]
    query = json.loads(value["scene"])["query"]
    assert stepwise.chain(value, captioner.describe(value), 0).startswith(
        f"<think>{query['label']} is {value['answer']}. ")
    compare = kinds["compare"]
    query, bars = json.loads(compare["scene"])["query"], json.loads(compare["scene"])["bars"]
    heights = {bar["label"]: bar["value"] for bar in bars}
    assert stepwise.chain(compare, captioner.describe(compare), 0).startswith(
        f"<think>{query['a']} is {heights[query['a']]}, {query['b']} is {heights[query['b']]}. ")
    # count: a running count after each object asked about; largest: the options with their letters first
    count = kinds["count"]
    tallies = re.findall(r"\((\d)\)", stepwise.chain(count, captioner.describe(count), 0))
    assert tallies == [str(i) for i in range(1, int(count["answer"]) + 1)]
    largest = kinds["largest"]
    chain = stepwise.chain(largest, captioner.describe(largest), 0)
    letter = option_letter(largest["choices"].index(largest["answer"]))
    assert chain.startswith("<think>The options are " + ", ".join(
        f"{c} ({option_letter(i)})" for i, c in enumerate(largest["choices"])) + ". I see ")
    assert chain.endswith(f"The largest object is the {largest['answer']} ({letter}).</think>\n<answer>{letter}</answer>")
    for row in kinds.values():
        assert is_consistent(stepwise.chain(row, captioner.describe(row), 0), row)
        assert scripted.stated_facts_right(stepwise.chain(row, captioner.describe(row), 0), row["scene"])
    # other families are untouched
    table = next(r for r in problems if r["source"] == "synthetic/table")
    assert stepwise.chain(table, captioner.describe(table), 0) == plain.chain(table, captioner.describe(table), 0)


def test_answer_with_option_puts_the_option_text_in_the_answer_tag(problems):
    captioner = scripted.ScriptedCaptioner(fidelity=1.0, omit_rate=0.0)
    by_letter = scripted.ScriptedReasoner(verbosity=1, stepwise=True)
    by_option = scripted.ScriptedReasoner(verbosity=1, stepwise=True, answer_with="option")
    assert teacher_pass_rate(problems, captioner, by_option) == 1.0  # the scorer reads an option's text too
    multiple_choice = [r for r in problems if r["choices"]]
    assert multiple_choice
    for row in problems:
        caption = captioner.describe(row)
        chain, lettered = by_option.chain(row, caption, 0), by_letter.chain(row, caption, 0)
        # the same reasoning, without the option letters it no longer needs
        assert chain.split("<answer>")[0] == re.sub(r" \([A-E]\)", "", lettered.split("<answer>")[0])
        expected = row["answer"] if row["choices"] else lettered.split("<answer>")[1].removesuffix("</answer>")
        assert chain.endswith(f"<answer>{expected}</answer>")
        assert is_consistent(chain, row)
    with pytest.raises(ValueError, match="answer_with"):
        scripted.ScriptedReasoner(answer_with="number")

def test_reflections_are_inserted_at_the_configured_rate_and_correct_a_slip(problems):
    captioner = scripted.ScriptedCaptioner()
    slipping = scripted.ScriptedReasoner(fidelity=0.0, reflection_rate=0.0)
    reflecting = scripted.ScriptedReasoner(fidelity=0.0, reflection_rate=1.0)
    rows = problems.select(range(40))
    assert teacher_pass_rate(rows, captioner, slipping) == 0.0
    assert teacher_pass_rate(rows, captioner, reflecting) == 1.0
    chain = reflecting.chain(rows[0], captioner.describe(rows[0]), 0)
    assert any(m in chain for m in DEFAULT_REFLECTION_MARKERS)
    assert not any(m in slipping.chain(rows[0], captioner.describe(rows[0]), 0) for m in DEFAULT_REFLECTION_MARKERS)


def test_corpus_for_tokenizer_holds_prompts_captions_and_chains(problems):
    corpus = student.corpus_for_tokenizer(problems, 8)
    assert len(corpus) == 24
    assert any(text.startswith("<think>") for text in corpus)
    assert any("bar chart" in text or "table of items" in text for text in corpus)


# --------------------------------------------------------------------------------------------------------
# stages


def test_caption_and_distill_stages_write_counts_and_resume_as_done(tmp_path, repo, tiny_checkpoint):
    cfg = tiny_config(repo)
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    manifest = teachers.caption(cfg, run, 1)
    assert manifest["counts"]["in"] == manifest["counts"]["out"] == 24
    assert manifest["teacher"] == {"backend": "scripted", "name": "scripted-captioner", "fidelity": 0.7,
                                   "omit_rate": 0.1}
    distilled = teachers.distill(cfg, run, 1)
    chains = load_dataset_dir(run.stage_dir("distill", 1) / "chains")
    assert len(chains) == 24 and all(len(c) == 4 for c in chains["chains"])
    assert distilled["counts"]["chains"] == 96 and distilled["teacher"]["reflection_rate"] == 0.5
    assert teachers.distill(cfg, run, 1)["finished_at"] == distilled["finished_at"]  # done: not redone


class Killed(RuntimeError):
    """Stands for the process being killed mid-stage."""


def test_killed_stage_resumes_from_last_complete_shard(tmp_path, repo, tiny_checkpoint, monkeypatch):
    cfg = tiny_config(repo)
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    teachers.caption(cfg, run, 1)
    calls, killed = [], []
    original = scripted.ScriptedReasoner.chains

    def dies_on_third_shard(self, problem, caption, n):
        calls.append(problem["id"])
        if len(calls) == 9 and not killed:  # shards hold 2 x 4 = 8 problems: die inside the second
            killed.append(problem["id"])
            raise Killed
        return original(self, problem, caption, n)

    monkeypatch.setattr(scripted.ScriptedReasoner, "chains", dies_on_third_shard)
    with pytest.raises(Killed):
        teachers.distill(cfg, run, 1)
    assert len(Stage(run, "distill", 1).shards().rows()) == 8
    calls.clear()
    manifest = teachers.distill(cfg, run, 1)
    assert len(calls) == 16  # only the problems of the unfinished shards ran again
    ids = load_dataset_dir(run.stage_dir("distill", 1) / "chains")["id"]
    assert len(ids) == len(set(ids)) == 24 and manifest["counts"]["out"] == 24


def test_bad_rows_are_counted_and_skipped(tmp_path, repo, tiny_checkpoint, monkeypatch):
    cfg = tiny_config(repo, n_sft=8)
    pool = generate(16, 0, "train").cast_column("image", datasets.Image(decode=False))
    records = pool.to_list()
    records[1]["image"] = {"bytes": b"not a png", "path": None}
    records[2]["answer"] = ""
    pool = datasets.Dataset.from_list(records, features=pool.features)
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint, pool=pool)
    describe = scripted.ScriptedCaptioner.describe
    monkeypatch.setattr(scripted.ScriptedCaptioner, "describe",
                        lambda self, p: "" if p["id"] == records[3]["id"] else describe(self, p))
    manifest = teachers.caption(cfg, run, 1)
    assert manifest["counts"]["dropped"] == {"empty_response": 1, "no_gold_answer": 1, "unreadable_image": 1}
    assert manifest["counts"]["out"] == 5
    assert {s["id"] for s in manifest["skipped"]} == {records[i]["id"] for i in (1, 2, 3)}
    monkeypatch.setattr(scripted.ScriptedReasoner, "chains", lambda self, p, c, n: ["", "  "] * (n // 2))
    distilled = teachers.distill(cfg, run, 1)
    assert distilled["counts"]["dropped"] == {"empty_response": 5} and distilled["counts"]["out"] == 0


def test_self_generation_with_the_untrained_tiny_student(tmp_path, repo, tiny_checkpoint):
    from ovlt.stages import curation

    cfg = tiny_config(repo, n_sft=4, n_sft2=8,
                      self_generate={"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 12}})
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    with pytest.raises(Exception, match="grpo"):
        teachers.self_generate(cfg, run, 2)  # grpo-1 has not finished
    add_checkpoint(run, "grpo", 1, tiny_checkpoint)
    manifest = teachers.self_generate(cfg, run, 2)
    counts = manifest["counts"]
    assert counts["in"] == 8 and manifest["model"] == "grpo-1"
    # An untrained student rarely ends its turn within 12 tokens: those responses are cut, dropped and counted.
    assert counts["chains"] + sum(counts["dropped_responses"].values()) + counts["truncated"] == 8 * 2
    assert counts["truncated"] > 0
    selected = curation.select(cfg, run, 2)
    print("self-generation pass@k of the untrained tiny student:", selected["pass_at_k"]["all"])
    assert selected["verified"] and selected["pass_at_k"]["all"]["problems"] == manifest["counts"]["out"]
    assert selected["counts"]["in"] == selected["counts"]["out"] + sum(selected["counts"]["dropped"].values())


@pytest.mark.parametrize("family", ["r1_distill", "qwen3_thinking"])
def test_distill_runs_through_a_tiny_text_reasoner_with_the_transformers_backend(family, tmp_path, repo,
                                                                                  tiny_checkpoint):
    """R1-Distill's template, and Qwen3's with thinking on (`chat_template_kwargs`, the template's own switch)."""
    from ovlt.engines.models import build_tiny_reasoner
    from ovlt.engines.tiny_students import build_tiny_qwen3_reasoner

    if family == "r1_distill":
        reasoner, switch = build_tiny_reasoner(tmp_path / "models"), {}
    else:
        reasoner, switch = build_tiny_qwen3_reasoner(tmp_path / "models"), {"enable_thinking": True}
    cfg = tiny_config(repo, n_sft=6, models={"captioner": {"batch_size": 2}, "student": {"batch_size": 4},
                                             "reasoner": {"name": str(reasoner), "backend": "transformers",
                                                          "batch_size": 4, "chat_template_kwargs": switch}},
                      distill={"sampling": {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 8}})
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    teachers.caption(cfg, run, 1)
    counts = teachers.distill(cfg, run, 1)["counts"]
    assert counts["in"] == 6 and counts["in"] == counts["out"] + sum(counts["dropped"].values())
    # Every response is accounted for: kept as a chain, dropped for a named cause, or cut at max_new_tokens.
    assert counts["chains"] + sum(counts["dropped_responses"].values()) + counts["truncated"] == 6 * 2
    # A random model does not end its turn within 8 tokens: every response is cut, none is read.
    assert counts["truncated"] == 12 and counts["dropped"] == {"truncated": 6}
    assert sum(source["truncated"] for source in counts["by_source"].values()) == 12


class CannedBackend(Backend):
    """A generation backend that returns, for every prompt, the completions it was made with."""

    engines = 1

    def __init__(self, completions):
        self.completions, self.closed = completions, False

    def generate(self, prompts, images, params):
        return [list(self.completions) for _ in prompts]

    def close(self):
        self.closed = True


def test_chains_cut_at_max_new_tokens_are_dropped_and_counted_per_source(tmp_path, repo, tiny_checkpoint,
                                                                         monkeypatch):
    from ovlt.engines.generation import Completion

    # An R1 chain cut mid-thought: no </think>, and "8" in its middle that an answer reader would take.
    cut = "<think>\nThe red bar is 3 and the blue bar is 5, so together 8. Wait, the question asks for the tallest"
    whole = "<think>\nThe blue bar is 5, the red bar 3.\n</think>\n\nThe answer is \\boxed{5}."
    backend = CannedBackend([Completion(cut, 4096, truncated=True), Completion(whole, 30, truncated=False)])
    monkeypatch.setattr(teachers, "study_backend", lambda cfg, spec, model_path=None: backend)
    cfg = tiny_config(repo, n_sft=8, models={"captioner": {"batch_size": 2}, "student": {"batch_size": 4},
                                             "reasoner": {"name": "some/reasoner", "backend": "transformers",
                                                          "batch_size": 2}},
                      distill={"sampling": {"n": 2}})
    run = make_run(tmp_path / "run", cfg, tiny_checkpoint)
    teachers.caption(cfg, run, 1)
    counts = teachers.distill(cfg, run, 1)["counts"]
    chains = load_dataset_dir(run.stage_dir("distill", 1) / "chains")
    assert all(c == ["<think>The blue bar is 5, the red bar 3.</think>\n<answer>5</answer>"] for c in chains["chains"])
    assert counts["out"] == 8 and counts["chains"] == 8 and counts["truncated"] == 8
    assert {s: v["truncated"] for s, v in counts["by_source"].items()} == \
        {s: v["in"] for s, v in counts["by_source"].items()}
    assert backend.closed  # the stage releases its engines

    # Every response cut: the problem is dropped as truncated, not as empty.
    backend.completions = [Completion(cut, 4096, truncated=True)] * 2
    cfg2 = tiny_config(repo, n_sft=4, models=cfg.models.model_dump(), distill={"sampling": {"n": 2}})
    run2 = make_run(tmp_path / "run2", cfg2, tiny_checkpoint)
    teachers.caption(cfg2, run2, 1)
    counts = teachers.distill(cfg2, run2, 1)["counts"]
    assert counts["dropped"] == {"truncated": 4} and counts["truncated"] == 8 and counts["out"] == 0
