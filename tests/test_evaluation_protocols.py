"""One generation, several verdicts: the evaluation stage scores the same responses under each protocol of a benchmark
entry, writes them once with a verdict per protocol, and summary.json and the report name the protocol (and prompt)
of every number. The model is a stand-in backend that answers from a table, so these tests load no model."""

from __future__ import annotations

import json

import pytest
from helpers import MATHVISTA, evaluated_run, mathvista_record, write_test_config

from ovlt.ground.artifacts import Run, atomic_write_json
from ovlt.ground.config import ConfigError, load_config


def test_one_generation_scored_by_two_protocols(tmp_path, monkeypatch):
    from ovlt.scoring.predictions import read_predictions, read_responses
    from ovlt.stages.evaluation import write_summary

    items = {"mathvista_testmini": [(mathvista_record(r), response) for r, response in MATHVISTA]}
    cfg, run, backend = evaluated_run(tmp_path, monkeypatch, [{"name": "mathvista_testmini",
                                                               "protocols": ["official", "strict"]}], items)
    assert len(backend.prompts) == len(MATHVISTA), "one generation serves both protocols"
    rows = read_responses(run, "base", "mathvista_testmini")
    assert [r["response"] for r in rows] == [response for _, response in MATHVISTA]
    assert all(list(r["verdicts"]) == ["official", "strict"] for r in rows)
    official = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathvista_testmini", "official")}
    strict = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathvista_testmini", "strict")}
    assert official == {"1": False, "2": True, "3": False} and strict == {"1": True, "2": True, "3": False}
    assert read_predictions(run, "base", "mathvista_testmini") == read_predictions(
        run, "base", "mathvista_testmini", "official")  # the first protocol is the headline
    with pytest.raises(KeyError, match="authors"):
        read_predictions(run, "base", "mathvista_testmini", "authors")

    metrics = json.loads(run.metrics_path("base", "mathvista_testmini").read_text())
    assert metrics["prompt"] == "paper" and metrics["entry"] == "mathvista_testmini"
    assert [(r["protocol"], r["scorer"], r["correct"]) for r in metrics["results"]] == [
        ("official", "mathvista", 1), ("strict", "strict", 2)]

    summary = write_summary(cfg, run)
    results = summary["stages"][0]["results"]
    assert [(r["entry"], r["prompt"], r["protocol"]) for r in results] == [
        ("mathvista_testmini", "paper", "official"), ("mathvista_testmini", "paper", "strict")]
    assert [round(r["accuracy"], 3) for r in results] == [0.333, 0.667]
    for r in results:  # every number names its benchmark, prompt and protocol
        assert {"benchmark", "entry", "prompt", "protocol", "scorer", "accuracy", "ci95", "n"} <= set(r)
    assert summary["judges"] == {} and set(summary["baselines"]) == {"mathvista_testmini"}


def test_sampled_accuracy_and_pass_at_k_beside_greedy(tmp_path, monkeypatch):
    """`evaluation.sampled`: n samples per item, scored by each protocol; accuracy under sampling is the mean share of
    right samples, pass@k the share of items right in any; summary.json compares stages on all three measures."""
    from ovlt.scoring.predictions import read_responses
    from ovlt.stages.evaluation import write_summary

    right, wrong = "<think>x</think><answer>No</answer>", "<think>x</think><answer>Yes</answer>"
    records = [mathvista_record(r) for r, _ in MATHVISTA[1:]]  # both answers "No"
    sampled = {"evaluation": {"sampled": {"n": 4, "temperature": 0.7}}}
    base_items = {"mathvista_testmini": [(records[0], [wrong, right, wrong, wrong]), (records[1], [wrong] * 4)]}
    cfg, run, backend = evaluated_run(tmp_path, monkeypatch, [{"name": "mathvista_testmini", "protocol": "strict"}],
                                      base_items, **sampled["evaluation"])
    assert len(backend.prompts) == 2 and len(backend.sampled) == 2  # one greedy and one sampled generation per item
    assert [row["sampled_right"] for row in read_responses(run, "base", "mathvista_testmini")] == [
        {"strict": 1}, {"strict": 0}]
    [result] = json.loads(run.metrics_path("base", "mathvista_testmini").read_text())["results"]
    assert result["accuracy"] == 0.0  # greedy: the first response of each list, both wrong
    assert (result["sampled"]["n"], result["sampled"]["temperature"], result["sampled"]["accuracy"]) == (4, 0.7, 0.125)
    assert (result["pass_at_k"]["k"], result["pass_at_k"]["accuracy"]) == (4, 0.5)
    assert result["sampled"]["ci95"][0] <= 0.125 <= result["sampled"]["ci95"][1]

    # sft-1: right greedily on the first item, and in every sample of both
    sft_items = {"mathvista_testmini": [(records[0], [right] * 4), (records[1], [wrong, right, right, right])]}
    evaluated_run(tmp_path, monkeypatch, [{"name": "mathvista_testmini", "protocol": "strict"}], sft_items,
                  checkpoint="sft-1", **sampled["evaluation"])
    summary = write_summary(cfg, run)
    [stage] = [s for s in summary["stages"] if s["name"] == "sft-1"]
    assert stage["results"][0]["sampled"]["accuracy"] == 0.875 and stage["results"][0]["pass_at_k"]["accuracy"] == 1.0
    by_measure = {c["measure"]: c for c in summary["comparisons"]}
    assert set(by_measure) == {"greedy", "sampled", "pass@k"}
    assert by_measure["greedy"]["diff"] == 0.5 and by_measure["sampled"]["diff"] == 0.75
    assert by_measure["pass@k"]["diff"] == 0.5
    assert by_measure["sampled"]["mcnemar_p"] is None and by_measure["greedy"]["mcnemar_p"] is not None

    # n 0: no sampling, and no sampled measures anywhere
    off = tmp_path / "off"
    off.mkdir()
    cfg, run, backend = evaluated_run(off, monkeypatch, [{"name": "mathvista_testmini", "protocol": "strict"}],
                                      base_items, sampled={"n": 0})
    assert backend.sampled == [] and "sampled" not in write_summary(cfg, run)["stages"][0]["results"][0]


def test_a_benchmark_listed_twice_needs_labels_and_keeps_two_generations(tmp_path, monkeypatch):
    from ovlt.scoring.predictions import read_responses
    from ovlt.stages.evaluation import write_summary

    items = {"mathvista_testmini": [(mathvista_record(r), response) for r, response in MATHVISTA]}
    entries = [{"name": "mathvista_testmini", "protocol": "official"},
               {"name": "mathvista_testmini", "protocol": "strict", "prompt": "plain", "label": "mathvista-plain",
                "max_new_tokens": 7}]
    cfg, run, backend = evaluated_run(tmp_path, monkeypatch, entries, items)
    assert len(backend.prompts) == 2 * len(MATHVISTA)
    assert backend.prompts[0] != backend.prompts[len(MATHVISTA)]  # the paper's prompt, then the benchmark's own
    assert list(read_responses(run, "base", "mathvista-plain")[0]["verdicts"]) == ["strict"]
    assert json.loads(run.metrics_path("base", "mathvista-plain").read_text())["max_new_tokens"] == 7
    results = write_summary(cfg, run)["stages"][0]["results"]
    assert [(r["entry"], r["prompt"], r["protocol"]) for r in results] == [
        ("mathvista_testmini", "paper", "official"), ("mathvista-plain", "plain", "strict")]

    with pytest.raises(ConfigError, match="label"):
        write_test_config(tmp_path, evaluation={"benchmarks": [{"name": "mathvista_testmini"},
                                                               {"name": "mathvista_testmini", "prompt": "plain"}]})


@pytest.mark.parametrize("entry, message", [
    ({"name": "mathvista_testmini", "protocols": ["authors"]}, "cannot score responses to the 'paper' prompt"),
    ({"name": "mathvista_testmini", "prompt": "authors", "protocols": ["authors", "official"]},
     "'official' cannot score responses to the 'authors' prompt"),
    ({"name": "mathvista_testmini", "protocol": "strict", "protocols": ["official"]}, "not both"),
    ({"name": "mathvista_testmini", "protocols": ["strict", "strict"]}, "twice"),
    ({"name": "mathverse_testmini", "judge": True}, "evaluation.judge names no endpoint"),
])
def test_protocols_must_fit_the_prompt(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message):
        write_test_config(tmp_path, evaluation={"benchmarks": [entry]})


def test_authors_entry_is_a_valid_config(tmp_path):
    cfg = load_config(write_test_config(tmp_path, evaluation={"benchmarks": [
        {"name": "mathvista_testmini", "protocols": ["official", "strict"]},
        {"name": "mathvista_testmini", "prompt": "authors", "protocols": ["authors"], "label": "mathvista-authors",
         "max_new_tokens": 2048}]}))
    from ovlt.stages.evaluation import scored_by

    assert [(b.key, b.prompt, scored_by(b)) for b in cfg.evaluation.benchmarks] == [
        ("mathvista_testmini", "paper", ["official", "strict"]),
        ("mathvista-authors", "authors", ["authors"])]


def test_existing_entries_keep_one_protocol(repo):
    from ovlt.stages.evaluation import scored_by

    for name in ("tiny", "openvlthinker-7b", "rehearsal"):
        for ref in load_config(repo / "configs" / f"{name}.yaml").evaluation.benchmarks:
            assert scored_by(ref) == [ref.protocol] and ref.key == ref.name and ref.max_new_tokens is None


# --- the report ------------------------------------------------------------------------------------------------


def fabricated_run(tmp_path, results: dict[str, list[tuple[str, float]]]) -> Run:
    """A run folder holding only what the report's accuracy table reads: `base`'s metrics per entry (protocol,
    accuracy) and summary.json's baselines."""
    run = Run(tmp_path / "run")
    atomic_write_json(run.eval_dir("base") / "manifest.json", {"stage": "evaluate", "wall_seconds": 1.0})
    for entry, by_protocol in results.items():
        prompt = "authors" if entry.endswith("authors") else "paper"
        atomic_write_json(run.metrics_path("base", entry), {
            "benchmark": "mathvista_testmini", "entry": entry, "prompt": prompt, "max_new_tokens": 2048,
            "results": [{"protocol": p, "scorer": "mathvista" if p == "official" else p, "accuracy": a,
                         "ci95": [a - 0.02, a + 0.02], "n": 1000, "correct": int(1000 * a), "breakdowns": {}}
                        for p, a in by_protocol]})
    atomic_write_json(run.summary_path, {"baselines": {entry: 0.3 for entry in results}})
    return run


def test_report_sets_paper_values_only_beside_authors_numbers(tmp_path):
    from ovlt.stages import report

    run = fabricated_run(tmp_path, {"mathvista_testmini": [("official", 0.612), ("strict", 0.598)],
                                    "mathvista-authors": [("authors", 0.671)]})
    table = report.accuracy_table(run).reset_index()
    rows = {(r["benchmark"], r["protocol"], r["stage"]): r for r in table.to_dict("records")}
    assert rows["mathvista-authors", "authors", "base"][report.PAPER_COLUMN] == "68.5"
    assert rows["mathvista-authors", "authors", "base"]["prompt"] == "authors"
    assert rows["mathvista_testmini", "official (mathvista)", "base"][report.PAPER_COLUMN] == ""
    assert rows["mathvista_testmini", "strict", "base"][report.PAPER_COLUMN] == ""
    assert rows["mathvista_testmini", "-", "majority answer"]["accuracy (%)"] == "30.0"
    # without an authors number the paper's column is not shown at all
    plain = fabricated_run(tmp_path / "plain", {"mathvista_testmini": [("official", 0.612)]})
    assert report.PAPER_COLUMN not in report.accuracy_table(plain).columns
    assert report.paper_values("mathvista", "official") == {}
    assert report.paper_values("mathvista", "authors+judge")["base"] == 68.5


def test_reference_rows_carry_the_protocol_and_the_seed_note():
    from ovlt.stages import report

    table = report.reference_table()
    assert set(table["protocol"]) == {"authors"}
    assert table.loc[("mathvista_testmini", "grpo-3"), report.PAPER_COLUMN] == "70.2"
    note = report.reference_note().data
    for figure in ("50.2", "46.8 -&gt; 68.5", "25.3 -&gt; 30.4", "68.5 -&gt; 70.2", "GPT-4o"):
        assert figure in note


def test_authors_entry_asks_with_its_own_prompt_and_grades_the_boxed_answer(tmp_path, monkeypatch):
    from ovlt.scoring.predictions import read_predictions
    from ovlt.stages.evaluation import write_summary

    items = {"mathvista_testmini": [
        (mathvista_record(MATHVISTA[0][0]), "<think>It is taller.</think> The answer is \\boxed{A}."),
        (mathvista_record(MATHVISTA[1][0]), "<think>Red?</think> \\boxed{Yes}")]}
    entries = [{"name": "mathvista_testmini", "prompt": "authors", "protocols": ["authors"],
                "label": "mathvista-authors", "max_new_tokens": 2048}]
    cfg, run, backend = evaluated_run(tmp_path, monkeypatch, entries, items)
    assert all("\\boxed{}" in prompt for prompt in backend.prompts)  # the authors' suffix, not the paper's
    verdicts = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathvista-authors")}
    assert verdicts == {"1": True, "2": False}
    [result] = write_summary(cfg, run)["stages"][0]["results"]
    assert (result["entry"], result["prompt"], result["protocol"], result["accuracy"]) == (
        "mathvista-authors", "authors", "authors", 0.5)
