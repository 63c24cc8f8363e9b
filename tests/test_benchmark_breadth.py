"""The authors' benchmark breadth as evaluation entries: MMMU-Pro (three settings), EMMA (four subjects) and
HallusionBench, read from their hub layouts (`ovlt.scoring.benchmarks`), prompted as each benchmark and the authors'
harness prompt them, and scored by each benchmark's own rules through the one scoring loop. The ported rules
themselves are proven in tests/test_mmmu_pro.py, tests/test_emma.py and tests/test_hallusionbench.py."""

import json
import os
from pathlib import Path

import pytest
from helpers import fixtures_dir
from PIL import Image

from ovlt.scoring import benchmarks
from ovlt.scoring.chains import REASONING_INSTRUCTION
from ovlt.stages.evaluation import record_images

FIXTURES = fixtures_dir()
MMMU_PRO = FIXTURES / "mmmu_pro" if FIXTURES else None
needs_mmmu_pro = pytest.mark.skipif(MMMU_PRO is None or not MMMU_PRO.is_dir(),
                                    reason="../shared/fixtures/mmmu_pro (MMMU-Pro's published outputs) is absent")
PICTURES = {n: Image.new("RGB", (8, 8), (40 * n, 0, 0)) for n in range(1, 8)}


@needs_mmmu_pro
@pytest.mark.parametrize(("setting", "guesses"), [("standard10", 0), ("vision", 3)])
def test_mmmu_pros_published_outputs_score_as_published_through_the_one_loop(setting, guesses):
    """`ovlt score --annotations` takes the published output lines themselves (each carries its id, options and gold
    answer): every verdict equals the official `if_right`, except on the items where the official parser guessed."""
    path = MMMU_PRO / f"gpt4o_{setting}_cot.jsonl"
    lines = {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}
    records = benchmarks.load_local(f"mmmu_pro_{setting}", path)
    responses = {i: row["response"] if isinstance(row["response"], str) else "" for i, row in lines.items()}
    rows, summary = benchmarks.score_responses(f"mmmu_pro_{setting}", records, responses)
    guessed = [r for r in rows if r["rule"] == "guess"]
    assert len(guessed) == guesses and summary["protocol"] == "mmmu_pro"
    assert all(r["correct"] == lines[r["id"]]["if_right"] for r in rows if r["rule"] != "guess")
    strict_rows, strict = benchmarks.score_responses(f"mmmu_pro_{setting}", records, responses, protocol="strict")
    assert strict["protocol"] == "mmmu_pro_strict" and not any(r["correct"] for r in strict_rows if r["rule"] == "guess")
    print(f"MMMU-Pro {setting}: official {summary['accuracy']:.4f}, strict {strict['accuracy']:.4f}, "
          f"{len(guessed)} guesses; published {sum(r['if_right'] for r in lines.values()) / len(lines):.4f}")


def test_an_mmmu_pro_standard_item_shows_its_images_in_the_order_its_question_names_them():
    row = {"id": "test_Art_1", "question": "Compare <image 2> with <image 1>.", "options": "['red', 'blue', 'green']",
           "answer": "B", "subject": "Art", "topic_difficulty": "Easy", "image_1": PICTURES[1], "image_2": PICTURES[2],
           "image_3": None}
    record = benchmarks.get_benchmark("mmmu_pro_standard4").to_record(row, None)
    assert record_images(record) == [PICTURES[2], PICTURES[1]]
    assert record["answer"] == "blue" and record["choices"] == ["red", "blue", "green"]
    assert record["prompt"] == ("Compare [image] with [image].\nA. red\nB. blue\nC. green\n"
                                + benchmarks.MMMU_PRO_INSTRUCTIONS["standard"])
    authors = benchmarks.build_prompt("mmmu_pro_standard4", record, "authors")
    assert authors.startswith(benchmarks.AUTHORS_HINTS["multi_choice"] + "\nQuestion: Compare <image 2> with")
    assert "Choices:\n(A) red\n(B) blue\n(C) green" in authors and authors.endswith(benchmarks.AUTHORS_INSTRUCTION)


def test_an_mmmu_pro_vision_item_is_its_screenshot_and_its_options():
    row = {"id": "test_Art_1", "image": PICTURES[3], "options": "['red', 'blue']", "answer": "A", "subject": "Art"}
    record = benchmarks.get_benchmark("mmmu_pro_vision").to_record(row, None)
    assert record_images(record) == [PICTURES[3]] and record["prompt"] == benchmarks.MMMU_PRO_INSTRUCTIONS["vision"]
    assert benchmarks.build_prompt("mmmu_pro_vision", record, "paper") == (
        f"Write out the multiple-choice question in the image and then solve it.\n{REASONING_INSTRUCTION}")
    assert benchmarks.build_prompt("mmmu_pro_vision", record, "authors").startswith(
        benchmarks.AUTHORS_HINTS["in_image"] + "\nChoices:\n(A) red\n(B) blue")


def emma_row(pid: str, kind: str, answer: str, options=None) -> dict:
    return {"pid": pid, "question": "How far does it go?", "options": options, "answer": answer, "type": kind,
            "context": "A ball rolls.", "category": "Kinematics", "task": "", "solution": "",
            **{f"image_{n}": PICTURES[n] if n <= 2 else None for n in range(1, 6)}}


def test_emma_items_take_emmas_prompt_its_images_as_the_authors_feed_them_and_its_rules():
    multiple = emma_row("phys_1", "Multiple Choice", "B", ["1 m", "2 m"])
    physics = benchmarks.get_benchmark("emma_physics").to_record(multiple, None)
    assert record_images(physics) == [PICTURES[1], PICTURES[2]]  # every image of the item
    assert record_images(benchmarks.get_benchmark("emma_math").to_record(multiple, None)) == [PICTURES[1]]  # image_1
    assert physics["answer"] == "2 m"
    # EMMA writes each option line with its newline, then its template adds one: a blank line, as EMMA prompts
    assert physics["prompt"].startswith("A ball rolls.\nHow far does it go?\nA: 1 m\nB: 2 m\n\nAnswer with the")
    assert benchmarks.build_prompt("emma_physics", physics, "paper").startswith("A ball rolls.\nHow far does it go?")
    opened = benchmarks.get_benchmark("emma_physics").to_record(emma_row("phys_2", "Open-ended", "12"), None)
    assert opened["answer_type"] == "text" and "single word or phrase" in opened["prompt"]
    records = [physics, opened]
    rows, summary = benchmarks.score_responses("emma_physics", records, {
        "phys_1": "So it travels \\boxed{B}.", "phys_2": "The distance is \\boxed{12.0}."})
    assert summary["protocol"] == "emma" and [r["correct"] for r in rows] == [True, True]
    rows, _ = benchmarks.score_responses("emma_physics", records, {"phys_1": "\\boxed{A}", "phys_2": "\\boxed{13}"})
    assert [r["correct"] for r in rows] == [False, False]


def hallusion_row(set_id: int, figure_id: int, question_id: int, gt: str, visual_input: str = "1") -> dict:
    return {"category": "VD", "subcategory": "chart", "set_id": set_id, "figure_id": figure_id,
            "question_id": question_id, "visual_input": visual_input, "question": f"Is bar {question_id} red?",
            "gt_answer": gt, "gt_answer_details": "", "sample_note": "", "filename": "", "image": PICTURES[1]}


def test_hallusionbench_is_scored_yes_no_with_its_pair_figure_and_question_accuracies():
    spec = benchmarks.get_benchmark("hallusionbench")
    rows = [hallusion_row(0, 0, 0, "1"), hallusion_row(0, 0, 1, "0"), hallusion_row(0, 1, 0, "0", "2"),
            hallusion_row(0, 1, 1, "1", "2")]
    records = [spec.to_record(row, None) for row in rows]
    assert [r["answer"] for r in records] == ["Yes", "No", "No", "Yes"]
    assert benchmarks.build_prompt(spec, records[0], "authors").startswith(
        "Hint: Please answer the question requiring an answer of yes or no.\nQuestion: Is bar 0 red?")
    responses = dict(zip([r["id"] for r in records], ["\\boxed{Yes}", "\\boxed{No}", "\\boxed{No}", "\\boxed{No}"],
                         strict=True))
    scored, summary = benchmarks.score_responses("hallusionbench", records, responses)
    assert [r["correct"] for r in scored] == [True, True, True, False] and summary["protocol"] == "hallusionbench"
    metrics = summary["benchmark_metrics"]
    # pairs: (set 0, question 0) right on both figures, (set 0, question 1) wrong on figure 1; figures: figure 0 all
    # right, figure 1 not
    assert metrics["all_question_accuracy"] == 0.75 and metrics["question_pair_accuracy"] == 0.5
    assert metrics["figure_accuracy"] == 0.5


EMMA_RESULTS = os.environ.get("OVLT_EMMA_RESULTS")


@pytest.mark.skipif(not EMMA_RESULTS, reason="OVLT_EMMA_RESULTS is not set: point it at a clone of hychaochao/EMMA "
                                             "(no licence, so its results are not shipped here)")
@pytest.mark.parametrize("subject", ["Math", "Physics"])
def test_ovlt_score_reads_emmas_published_results_and_agrees_with_their_verdicts(subject, capsys):
    """`ovlt score` takes EMMA's result file as annotations and responses at once (a JSON object of items keyed by
    pid, options as a string, a failed call's response null): its accuracy is the official true_false count."""
    from ovlt.score_cli import score_main

    found = list(Path(EMMA_RESULTS).rglob(f"*_{subject}_CoT.json"))
    assert found, f"no *_{subject}_CoT.json under {EMMA_RESULTS}"
    official = json.loads(found[0].read_text())
    assert score_main(["--benchmark", f"emma_{subject.lower()}", "--annotations", str(found[0]),
                       "--responses", str(found[0])]) == 0
    right = sum(str(item["true_false"]) == "True" for item in official.values())
    assert f"accuracy: {right}/{len(official)} = " in capsys.readouterr().out


def test_a_null_response_is_missing_and_counted_wrong(tmp_path):
    from ovlt.score_cli import read_responses

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"phy_1": {"pid": "phy_1", "response": None},
                                "phy_2": {"pid": "phy_2", "response": "\\boxed{B}"}}))
    assert read_responses(path, {"phy_1", "phy_2"}) == {"phy_2": "\\boxed{B}"}
