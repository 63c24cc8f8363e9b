"""The benchmark harness: registry, loaders of the authors' file formats, prompts, scoring with breakdowns,
statistics, and `ovlt score`'s handling of bad input."""

import json

import pytest

from ovlt.score_cli import score_main
from ovlt.scoring import benchmarks, statistics

MATHVISTA = {
    "1": {"pid": "1", "question": "Is it big?", "choices": ["Yes", "No"], "unit": None, "precision": None,
          "answer": "No", "question_type": "multi_choice", "answer_type": "text", "image": "images/1.jpg",
          "metadata": {"category": "vqa"}},
    "2": {"pid": "2", "question": "How many?", "choices": None, "unit": None, "precision": None, "answer": "4",
          "question_type": "free_form", "answer_type": "integer", "image": "images/2.jpg", "metadata": {}},
    "3": {"pid": "3", "question": "Length?", "choices": None, "unit": "cm", "precision": 1, "answer": "1.2",
          "question_type": "free_form", "answer_type": "float", "image": "images/3.jpg", "metadata": {}},
}
MATHVERSE = [
    {"sample_index": "10", "problem_index": "5", "problem_version": "Text Dominant", "question_type": "multi-choice",
     "question": "Find the angle.\nChoices:\nA:145°\nB:155°\nC:165°", "answer": "B", "image": "a.png",
     "query_cot": "Please first conduct reasoning, and then answer the question and provide the correct option letter, "
                  "e.g., A, B, C, D, at the end.\nQuestion: Find the angle.\nChoices:\nA:145°\nB:155°\nC:165°",
     "metadata": {"subject": "Plane Geometry"}},
    {"sample_index": "11", "problem_index": "5", "problem_version": "Vision Only", "question_type": "multi-choice",
     "question": "", "answer": "C", "image": "b.png", "query_cot": "According to the image...", "metadata": {}},
    {"sample_index": "12", "problem_index": "6", "problem_version": "Vision Only", "question_type": "free-form",
     "question": "", "answer": "\\frac{3}{2}", "image": "c.png", "query_cot": "According to the image...",
     "metadata": {}},
]
MATHVISION = [
    {"id": "7", "question": "Which colour?\n<image1>", "options": ["red", "blue"], "answer": "B", "solution": None,
     "level": 1, "subject": "logic", "image": "images/7.jpg"},
    {"id": "8", "question": "How many?", "options": [], "answer": "6", "solution": None, "level": 2,
     "subject": "counting", "image": "images/8.jpg"},
]


@pytest.fixture
def files(tmp_path):
    vista = tmp_path / "testmini.json"
    vista.write_text(json.dumps(MATHVISTA))
    verse = tmp_path / "mathverse_testmini.json"
    verse.write_text(json.dumps(MATHVERSE))
    vision = tmp_path / "test.jsonl"
    vision.write_text("".join(json.dumps(r) + "\n" for r in MATHVISION))
    return {"mathvista": vista, "mathverse": verse, "mathvision": vision}


def test_registry_and_unknown_names():
    assert set(benchmarks.BENCHMARKS) == {"mathvista_testmini", "mathverse_testmini", "mathvision_test",
                                          "mathvision_testmini", "synthetic", "mmmu_pro_standard4",
                                          "mmmu_pro_standard10", "mmmu_pro_vision", "emma_math", "emma_physics",
                                          "emma_chemistry", "emma_coding", "hallusionbench"}
    assert benchmarks.get_benchmark("mmmu_pro").protocol("strict") == "mmmu_pro_strict"
    assert benchmarks.get_benchmark("emma_coding").protocol("official") == "emma"
    with pytest.raises(KeyError, match="known: .*mathvista_testmini"):
        benchmarks.get_benchmark("mmmu")
    assert benchmarks.get_benchmark("mathvista").protocol("official") == "mathvista"
    assert benchmarks.get_benchmark("mathvision_testmini").protocol("official") == "mathvision"
    assert benchmarks.get_benchmark("mathverse").protocol("strict") == "strict"


def test_loaders_map_the_authors_fields(files, tmp_path):
    vista = {r["id"]: r for r in benchmarks.load_local("mathvista", files["mathvista"], tmp_path / "img")}
    assert vista["1"]["answer_type"] == "multiple_choice" and vista["1"]["choices"] == ["Yes", "No"]
    assert vista["1"]["prompt"].startswith("Hint: Please answer the question and provide the correct option letter")
    assert "(B) No" in vista["1"]["prompt"] and "(Unit: cm)" in vista["3"]["prompt"]
    assert vista["3"]["precision"] == 1 and vista["2"]["image"] == str(tmp_path / "img" / "images/2.jpg")
    verse = {r["id"]: r for r in benchmarks.load_local("mathverse", files["mathverse"])}
    assert verse["10"]["choices"] == ["145°", "155°", "165°"] and verse["10"]["answer"] == "155°"
    assert verse["11"]["answer"] == "C" and verse["11"]["choices"][:3] == ["A", "B", "C"]  # options only in image
    assert verse["12"]["answer_type"] == "latex" and verse["12"]["meta"]["problem_version"] == "Vision Only"
    vision = {r["id"]: r for r in benchmarks.load_local("mathvision_test", files["mathvision"])}
    assert vision["7"]["answer"] == "blue" and "(B) blue" in vision["7"]["prompt"]
    assert vision["8"]["meta"] == {"subject": "counting", "level": 2}


def test_prompts_plain_and_reasoning(files):
    record = benchmarks.load_local("mathvision_test", files["mathvision"])[0]
    assert benchmarks.build_prompt("mathvision_test", record, "plain") == record["prompt"]
    reasoning = benchmarks.build_prompt("mathvision_test", record, "paper")
    assert "(A) red" in reasoning and reasoning.endswith("<answer> </answer> tags.")
    with pytest.raises(ValueError, match="unknown prompt style"):
        benchmarks.build_prompt("mathvision_test", record, "fancy")


def test_authors_prompts_are_the_benchmarks_instruction_and_their_suffix(files):
    """eval_qwen.py: MathVista `query`, MathVerse `query_cot`, MathVision's question and options under their hint."""
    suffix = benchmarks.AUTHORS_INSTRUCTION
    assert suffix.startswith(" You FIRST think") and suffix.endswith("The final answer MUST BE put in \\boxed{}.")
    vista = {r["id"]: r for r in benchmarks.load_local("mathvista", files["mathvista"])}
    assert benchmarks.build_prompt("mathvista", vista["3"], "authors") == vista["3"]["prompt"] + suffix
    verse = {r["id"]: r for r in benchmarks.load_local("mathverse", files["mathverse"])}
    assert benchmarks.build_prompt("mathverse", verse["10"], "authors") == MATHVERSE[0]["query_cot"] + suffix
    vision = {r["id"]: r for r in benchmarks.load_local("mathvision_test", files["mathvision"])}
    assert benchmarks.build_prompt("mathvision_test", vision["7"], "authors") == (
        "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, E, at the end.\n"
        "Question: Which colour?\n<image1>\nChoices:\n(A) red\n(B) blue" + suffix)
    assert benchmarks.build_prompt("mathvision_test", vision["8"], "authors") == (
        "Hint: Please answer the question requiring an answer.\nQuestion: How many?" + suffix)


@pytest.mark.parametrize("style", benchmarks.PROMPT_STYLES)
def test_every_prompt_states_what_the_benchmarks_instruction_states(files, style):
    """No style drops the question, an option, MathVista's unit or the answer's form (its hint)."""
    for family in ("mathvista", "mathverse", "mathvision"):
        for record in benchmarks.load_local(family, files[family]):
            prompt = benchmarks.build_prompt(family, record, style)
            assert record["question"].strip() in prompt, (family, style, record["id"])
            if record["meta"].get("problem_version") != "Vision Only":  # whose options are in the image
                assert all(c in prompt for c in record["choices"]), (family, style, record["id"])
    vista = {r["id"]: benchmarks.build_prompt("mathvista", r, style)
             for r in benchmarks.load_local("mathvista", files["mathvista"])}
    assert "(Unit: cm)" in vista["3"] and "one decimal place" in vista["3"] and "integer" in vista["2"]
    verse = {r["id"]: benchmarks.build_prompt("mathverse", r, style)
             for r in benchmarks.load_local("mathverse", files["mathverse"])}
    assert "According to the image" in verse["11"]  # vision-only: the benchmark's instruction is all there is


def test_paper_prompts_end_with_the_think_answer_instruction(files):
    for family in ("mathvista", "mathverse", "mathvision"):
        for record in benchmarks.load_local(family, files[family]):
            assert benchmarks.build_prompt(family, record, "paper").endswith("<answer> </answer> tags.")


def test_wrong_benchmark_file_is_named(files):
    with pytest.raises(ValueError, match=r"test\.jsonl:1: missing field\(s\) pid"):
        benchmarks.load_local("mathvista", files["mathvision"])


def test_score_responses_breakdowns_missing_and_unknown(files):
    records = benchmarks.load_local("mathverse", files["mathverse"])
    responses = {"10": "The answer is B.", "12": "\\boxed{1.5}"}
    rows, summary = benchmarks.score_responses("mathverse", records, responses, "official")
    assert [r["correct"] for r in rows] == [True, False, True]
    assert summary["missing"] == ["11"] and rows[1]["rule"] == "missing"
    assert summary["breakdowns"]["problem_version"]["Vision Only"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    with pytest.raises(KeyError, match="not in mathverse_testmini: 99"):
        benchmarks.score_responses("mathverse", records, {"99": "x"})


def test_score_responses_of_given_extractions(files):
    """field="extraction": the protocol's normaliser alone, no extraction; the summary says what was scored."""
    records = benchmarks.load_local("mathverse", files["mathverse"])
    given = {"10": "B", "11": "N/A", "12": "x = 1.5"}
    rows, summary = benchmarks.score_responses("mathverse", records, given, "official", field="extraction")
    assert [r["correct"] for r in rows] == [True, False, True] and {r["rule"] for r in rows} == {"given"}
    assert summary["field"] == "extraction"
    raw, _ = benchmarks.score_responses("mathverse", records, given, "official")
    assert raw[0]["rule"] != "given"
    with pytest.raises(ValueError, match="unknown field 'answer'"):
        benchmarks.score_responses("mathverse", records, given, field="answer")


def test_synthetic_set_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rows = {"id": ["s1", "s2"], "image": [Image.new("RGB", (8, 8))] * 2, "question": ["Tallest?", "Count?"],
            "choices": [["A bar", "B bar"], []], "answer": ["B bar", "3"],
            "answer_type": ["multiple_choice", "integer"], "precision": [-1, -1], "source": ["synthetic/chart"] * 2,
            "split": ["test"] * 2, "difficulty": [1, 2], "scene": ["", ""]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "held_out"))
    records = benchmarks.load_local("synthetic", tmp_path / "held_out")
    rows_out, summary = benchmarks.score_responses("synthetic", records, {"s1": "<answer>B</answer>",
                                                                          "s2": "<answer>4</answer>"})
    assert [r["correct"] for r in rows_out] == [True, False]
    assert summary["breakdowns"]["difficulty"]["1"]["correct"] == 1


def test_statistics():
    ci = statistics.accuracy_ci([True] * 30 + [False] * 70, n_boot=500)
    assert ci["low"] < 0.3 < ci["high"] and ci["accuracy"] == 0.3
    a, b = [False] * 100, [True] * 40 + [False] * 60
    paired = statistics.paired_bootstrap(a, b, n_boot=2000)
    assert paired["diff"] == pytest.approx(0.4) and paired["ci95"][0] > 0.25 and paired["p_value"] < 0.01
    assert statistics.paired_bootstrap(a, a, n_boot=200)["p_value"] == 1.0
    assert statistics.mcnemar(a, b)["p_value"] < 1e-6 and statistics.mcnemar(b, b)["p_value"] == 1.0
    with pytest.raises(ValueError):
        statistics.mcnemar([True], [True, False])


# --- the CLI ---------------------------------------------------------------------------------------------------

def _responses(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_cli_scores_writes_verdicts_and_reports(files, tmp_path, capsys):
    responses = _responses(tmp_path / "r.jsonl", [{"id": "1", "response": "The answer is B."},
                                                  {"id": 2, "response": "There are 4 cubes."}])
    out = tmp_path / "verdicts.jsonl"
    assert score_main(["--benchmark", "mathvista", "--annotations", str(files["mathvista"]),
                       "--responses", str(responses), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[-1] == "accuracy: 2/3 = 66.67%"
    assert any("missing responses (counted wrong): 1: 3" in line for line in stdout)
    assert any(line.startswith("by question_type") for line in stdout)
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert verdicts[0] == {"id": "1", "extracted": "B", "rule": "answer_phrase", "correct": True}


@pytest.mark.parametrize("lines, message", [
    (['{"id": "1", "response": "B"', ], "r.jsonl:1: not valid JSON"),
    ([{"id": "1", "response": "B"}, {"response": "A"}], "r.jsonl:2: each line needs an object with 'id'"),
    ([{"id": "77", "response": "B"}], "r.jsonl:1: unknown id '77'"),
    ([{"id": "1", "response": "B"}, {"id": "1", "response": "A"}], "r.jsonl:2: id '1' appears twice"),
    ([{"id": "1", "response": 5}], "r.jsonl:1: 'response' must be a string"),
])
def test_cli_bad_input_names_the_line(files, tmp_path, capsys, lines, message):
    responses = _responses(tmp_path / "r.jsonl", lines)
    assert score_main(["--benchmark", "mathvista", "--annotations", str(files["mathvista"]),
                       "--responses", str(responses)]) == 2
    assert message in capsys.readouterr().err


def test_cli_scores_given_extractions(files, tmp_path, capsys):
    """--field extraction: a bare "N/A" to a yes/no question is MathVista's nearest option ("No"), not a "Yes" read
    from prose by the extraction rules; a line without 'extraction' is an error naming it."""
    given = _responses(tmp_path / "e.jsonl", [{"id": "1", "extraction": "N/A"}, {"id": "2", "extraction": "4"}])
    out = tmp_path / "verdicts.jsonl"
    assert score_main(["--benchmark", "mathvista", "--annotations", str(files["mathvista"]), "--responses",
                       str(given), "--field", "extraction", "--out", str(out)]) == 0
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert verdicts[:2] == [{"id": "1", "extracted": "N/A", "rule": "given", "correct": True},  # gold "No"
                            {"id": "2", "extracted": "4", "rule": "given", "correct": True}]
    assert "given extractions" in capsys.readouterr().out
    wrong = _responses(tmp_path / "w.jsonl", [{"id": "1", "response": "B"}])
    assert score_main(["--benchmark", "mathvista", "--annotations", str(files["mathvista"]), "--responses",
                       str(wrong), "--field", "extraction"]) == 2
    assert "w.jsonl:1: each line needs an object with 'id' and 'extraction'" in capsys.readouterr().err


def test_cli_wrong_benchmark_annotation_file(files, tmp_path, capsys):
    responses = _responses(tmp_path / "r.jsonl", [{"id": "1", "response": "B"}])
    assert score_main(["--benchmark", "mathvision", "--annotations", str(files["mathvista"]),
                       "--responses", str(responses)]) == 2
    assert "is this a mathvision_test annotation file?" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# the hub copy, read from a local folder laid out like the hub repository (data.hub_root)


def _mathvista_repo(root, drop: str = ""):
    """AI4Math/MathVista as on the hub (data/testmini-*.parquet, decoded_image beside the image path), from
    MATHVISTA's rows with a real `query`; `drop` leaves one column out."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rows = [{**row, "decoded_image": Image.new("RGB", (32, 24), "white"), "query": f"Hint: ...\nQuestion: {row['question']}"}
            for row in MATHVISTA.values()]
    data = datasets.Dataset.from_list([{k: v for k, v in row.items() if k != drop} for row in rows])
    data.to_parquet(root / "AI4Math/MathVista/data/testmini-00000-of-00001-725687bf7a18d64b.parquet")
    return root


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_load_hub_reads_a_local_copy_and_evaluation_passes_the_root(hub_cache):
    from ovlt.ground.artifacts import Run
    from ovlt.ground.config import BenchmarkRef
    from ovlt.stages.evaluation import benchmark_records

    root = _mathvista_repo(hub_cache / "hub")
    records = {r["id"]: r for r in benchmarks.load_hub("mathvista", hub_root=root)}
    assert records["1"]["choices"] == ["Yes", "No"] and records["1"]["answer"] == "No"
    assert records["3"]["precision"] == 1 and records["2"]["image"].size == (32, 24)  # decoded_image, not the path
    assert records["2"]["prompt"] == "Hint: ...\nQuestion: How many?"  # the hub row's own query
    ref = BenchmarkRef(name="mathvista_testmini", limit=2)
    assert [r["id"] for r in benchmark_records(ref, Run(hub_cache / "run"), str(root))] == ["1", "2"]


def test_load_hub_errors_name_the_folder_and_the_row(hub_cache):
    with pytest.raises(FileNotFoundError, match=r"'MathLLMs/MathVision': no folder .*MathLLMs/MathVision"):
        benchmarks.load_hub("mathvision_testmini", hub_root=hub_cache)
    root = _mathvista_repo(hub_cache / "hub", drop="answer_type")
    with pytest.raises(ValueError, match=r"AI4Math/MathVista \[testmini\] row 0: missing field\(s\) answer_type"):
        benchmarks.load_hub("mathvista", hub_root=root)
