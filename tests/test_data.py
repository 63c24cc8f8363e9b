"""The problem schema, the procedural generator, the hub mappings and loaders, and the pool's mix (no network:
hub rows are built here, and hub repositories are local folders written here)."""

import hashlib
import json
from collections import Counter

import datasets
import numpy as np
import pytest
from helpers import write_test_config
from PIL import Image
from scipy import ndimage

from ovlt.ground import hub
from ovlt.ground.artifacts import Run
from ovlt.ground.config import load_config
from ovlt.ground.layout import pool_size
from ovlt.ground.preview import show_problems
from ovlt.ground.procedural import (
    COLORS,
    FAMILIES,
    QUESTION_KINDS,
    generate,
    majority_baseline,
    scene_key,
    solve,
    split_of,
)
from ovlt.ground.schema import PROBLEM_FEATURES, format_question, option_letter, validate_problem
from ovlt.stages.data import DECONTAMINATION_MARGIN, build_data


def fingerprint(dataset: datasets.Dataset) -> str:
    """sha256 over every record, the image as its stored PNG bytes."""
    digest = hashlib.sha256()
    for record in dataset.cast_column("image", datasets.Image(decode=False)):
        record = dict(record, image=hashlib.sha256(record["image"]["bytes"]).hexdigest())
        digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def pool():
    """~200 training problems per family."""
    return generate(800, seed=11, split="train")


# ---------------------------------------------------------------------------------------------------------
# determinism and splits


def test_same_seed_gives_identical_bytes_and_another_seed_does_not():
    first, second = generate(24, seed=3, split="train"), generate(24, seed=3, split="train")
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(generate(24, seed=4, split="train")) != fingerprint(first)
    assert first.features == PROBLEM_FEATURES


def test_train_and_test_never_share_a_scene():
    train = generate(600, seed=0, split="train", difficulty=1)
    test = generate(600, seed=0, split="test", difficulty=1)  # easiest level: the smallest scene space
    train_keys, test_keys = {scene_key(s) for s in train["scene"]}, {scene_key(s) for s in test["scene"]}
    assert train_keys.isdisjoint(test_keys)
    assert all(split_of(k) == "train" for k in train_keys) and all(split_of(k) == "test" for k in test_keys)
    assert set(train["split"]) == {"train"} and set(test["split"]) == {"test"}


def test_exclude_keeps_given_scenes_out():
    first = generate(80, seed=0, split="test", families=["chart"], difficulty=1)
    second = generate(80, seed=0, split="test", families=["chart"], difficulty=1,
                      exclude={scene_key(s) for s in first["scene"]})
    assert {scene_key(s) for s in first["scene"]}.isdisjoint(scene_key(s) for s in second["scene"])


def test_scene_key_ignores_question_and_style():
    scene = {"family": "chart", "bars": [{"label": "A", "value": 3}], "query": {"kind": "tallest"},
             "style": {"color": "red"}}
    same_picture = dict(scene, query={"kind": "value", "label": "A"}, style={"color": "blue"})
    other_picture = dict(scene, bars=[{"label": "A", "value": 4}])
    assert scene_key(scene) == scene_key(same_picture) == scene_key(json.dumps(same_picture))
    assert scene_key(scene) != scene_key(other_picture)


# ---------------------------------------------------------------------------------------------------------
# every family: valid records, answers that the independent solver confirms, pictures that show the facts


def test_every_family_kind_and_answer_type_occurs(pool):
    kinds = Counter((p["source"], json.loads(p["scene"])["query"]["kind"]) for p in pool)
    for family in FAMILIES:
        for kind in QUESTION_KINDS[family]:
            assert kinds[f"synthetic/{family}", kind] > 0, (family, kind)
    assert set(pool["answer_type"]) == {"multiple_choice", "integer", "float", "text"}
    assert Counter(pool["source"]) == {f"synthetic/{family}": 200 for family in FAMILIES}


def test_stored_answers_match_the_independent_solver(pool):
    for i, problem in enumerate(pool):
        validate_problem(problem, f"pool row {i}")
        assert problem["answer"] == solve(problem["scene"]), problem["id"]
        assert problem["id"] == f"synthetic-{problem['source'].split('/')[1]}-train-{i:06d}"
        assert problem["difficulty"] in (1, 2, 3)


def test_images_are_rgb_and_not_blank(pool):
    for problem in pool.select(range(0, 800, 7)):
        image = problem["image"]
        assert image.mode == "RGB" and image.size == (112, 112)
        drawn = np.any(np.asarray(image) != 255, axis=-1).mean()  # share of pixels that are not background
        assert 0.02 < drawn < 0.9, (problem["id"], drawn)


def _bars(image: Image.Image) -> list[tuple[str, int]]:
    """(colour name, height in pixels) of each bar, left to right, measured from the picture alone."""
    pixels, bars = np.asarray(image), []
    for name, rgb in COLORS.items():
        mask = np.all(pixels == rgb, axis=-1)
        columns = np.flatnonzero(mask.any(axis=0))
        if len(columns):
            bars.append((columns[0], name, int(mask[:, columns[len(columns) // 2]].sum())))
    return [(name, height) for _, name, height in sorted(bars)]


def test_chart_bars_are_named_by_colour_and_their_heights_follow_the_values(pool):
    charts = pool.filter(lambda p: p["source"] == "synthetic/chart").select(range(60))
    for problem in charts:
        scene = json.loads(problem["scene"])
        bars = _bars(problem["image"])
        assert [name for name, _ in bars] == [bar["label"] for bar in scene["bars"]], problem["id"]
        heights, values = [h for _, h in bars], [bar["value"] for bar in scene["bars"]]
        per_unit = [h / v for h, v in zip(heights, values, strict=True)]
        assert max(per_unit) - min(per_unit) < 1.5, (problem["id"], heights, values)


def test_counting_pictures_hold_the_objects_of_the_scene(pool):
    counting = pool.filter(lambda p: p["source"] == "synthetic/counting").select(range(60))
    for problem in counting:
        scene = json.loads(problem["scene"])
        pixels = np.asarray(problem["image"])
        for name, rgb in COLORS.items():
            blobs, count = ndimage.label(np.all(pixels == rgb, axis=-1))
            assert count == sum(o["color"] == name for o in scene["objects"]), (problem["id"], name)
        if scene["query"]["kind"] == "largest":  # the biggest blob has the answer's colour
            areas = {name: np.all(pixels == rgb, axis=-1) for name, rgb in COLORS.items()}
            biggest = max(areas, key=lambda n: max(np.bincount(ndimage.label(areas[n])[0].ravel())[1:], default=0))
            assert problem["answer"].split()[0] == biggest, problem["id"]


def test_solve_answers_questions_other_than_the_stored_one():
    scene = {"family": "table", "rows": [{"item": "pens", "value": 4}, {"item": "cups", "value": 9}],
             "query": {"kind": "total"}}
    assert solve(scene) == "13"
    assert solve(scene, "difference", a="cups", b="pens") == "5"
    assert solve(scene, "fewest") == "pens"
    with pytest.raises(ValueError, match="no question kind 'area'"):
        solve(scene, "area")


def test_difficulty_knob_is_recorded_and_checked():
    easy = generate(20, seed=1, split="train", difficulty={"chart": 1, "counting": 3}, families=["chart", "counting"])
    levels = {(p["source"], p["difficulty"]) for p in easy.select_columns(["source", "difficulty"])}
    assert levels == {("synthetic/chart", 1), ("synthetic/counting", 3)}
    assert all(len(json.loads(s)["bars"]) == 3 for s, src in zip(easy["scene"], easy["source"], strict=True)
               if src == "synthetic/chart")
    with pytest.raises(ValueError, match="difficulty 9 for family 'chart'"):
        generate(4, seed=1, split="train", difficulty=9)
    with pytest.raises(ValueError, match="unknown families"):
        generate(4, seed=1, split="train", families=["maze"])
    with pytest.raises(ValueError, match="unknown split"):
        generate(4, seed=1, split="validation")


# ---------------------------------------------------------------------------------------------------------
# schema


def _problem(**changes) -> dict:
    record = {"id": "p-1", "image": Image.new("RGB", (8, 8)), "question": "Which?", "choices": ["x", "y"],
              "answer": "y", "answer_type": "multiple_choice", "precision": -1, "source": "s", "split": "train",
              "difficulty": -1, "scene": ""}
    record.update(changes)
    return record


@pytest.mark.parametrize(("changes", "key"), [
    ({"answer": ""}, "answer"),
    ({"answer": None}, "answer"),
    ({"answer_type": "essay"}, "answer_type"),
    ({"answer": "z"}, "answer"),
    ({"id": "a/b"}, "id"),
    ({"id": "a..b"}, "id"),
    ({"id": "a b"}, "id"),
    ({"id": ""}, "id"),
    ({"answer_type": "float", "answer": "1.5", "choices": [], "precision": -1}, "precision"),
    ({"answer_type": "integer", "answer": "3"}, "choices"),
    ({"split": "dev"}, "split"),
])
def test_validate_problem_names_the_row_and_the_key(changes, key):
    with pytest.raises(ValueError, match=rf"^data\.jsonl row 7: key '{key}'"):
        validate_problem(_problem(**changes), "data.jsonl row 7")


def test_validate_problem_accepts_good_records_and_reports_missing_keys():
    validate_problem(_problem(), "row 0")
    validate_problem(_problem(answer_type="float", answer="1.5", choices=[], precision=1), "row 1")
    record = _problem()
    del record["scene"]
    with pytest.raises(ValueError, match="row 2: key 'scene': missing"):
        validate_problem(record, "row 2")


def test_format_question_letters_the_options():
    assert format_question({"question": "Which is tallest? ", "choices": ["B", "K"]}) == "Which is tallest?\n(A) B\n(B) K"
    assert format_question({"question": "How many?", "choices": []}) == "How many?"
    assert [option_letter(i) for i in (0, 1, 25)] == ["A", "B", "Z"]
    with pytest.raises(ValueError):
        option_letter(26)


# ---------------------------------------------------------------------------------------------------------
# majority baseline


def test_majority_baseline_on_a_hand_built_dataset():
    def row(source, answer, answer_type="integer", choices=(), kind=None):
        scene = json.dumps({"query": {"kind": kind}}) if kind else ""
        return _problem(source=source, answer=answer, answer_type=answer_type, choices=list(choices), scene=scene)

    rows = [
        row("a", "3"), row("a", "3"), row("a", "4"),  # integer: "3" wins 2 of 3
        row("a", "x", "multiple_choice", ["x", "y"]), row("a", "q", "multiple_choice", ["q", "r"]),  # (A) twice
        row("a", "y", "multiple_choice", ["x", "y"]),  # multiple choice: position (A) wins 2 of 3
        row("b", "7", kind="value"), row("b", "8", kind="value"), row("b", "2", kind="total"),  # per kind: 1 + 1
        row("b", "2", kind="total"),
    ]
    dataset = datasets.Dataset.from_list(rows, features=PROBLEM_FEATURES)
    baseline = majority_baseline(dataset)
    assert baseline["a"] == pytest.approx(4 / 6)
    assert baseline["b"] == pytest.approx(3 / 4)
    by_kind = majority_baseline(dataset, by_kind=True)
    assert by_kind["b/value"] == pytest.approx(1 / 2) and by_kind["b/total"] == 1.0
    assert by_kind["a/integer"] == pytest.approx(2 / 3) and by_kind["a/multiple_choice"] == pytest.approx(2 / 3)
    assert by_kind["overall"] == baseline["overall"]
    assert baseline["overall"] == pytest.approx(7 / 10)


def test_majority_baseline_of_generated_data_is_below_one(pool):
    baseline = majority_baseline(pool)
    assert set(baseline) == {f"synthetic/{f}" for f in FAMILIES} | {"overall"}
    assert all(0 < value < 0.6 for value in baseline.values()), baseline


# ---------------------------------------------------------------------------------------------------------
# hub mappings on hand-built rows


IMAGE = Image.new("RGB", (16, 16), (200, 10, 10))


def test_parse_choices_reads_the_common_layouts():
    assert hub.parse_choices("<image>Find x.\nChoices:\nA. 8\nB. 10\nC. 12") == ("Find x.", ["8", "10", "12"])
    assert hub.parse_choices("Find x. Choices: A. 8 B. 10 C. 12") == ("Find x.", ["8", "10", "12"])
    assert hub.parse_choices("Which one?\n(A) cat\n(B) dog\nAnswer with the letter.") == ("Which one?", ["cat", "dog"])
    assert hub.parse_choices("What is 3 + 4?") == ("What is 3 + 4?", [])
    assert hub.parse_choices("Choices: B. 1 C. 2") == ("Choices: B. 1 C. 2", [])  # not lettered from A


def test_answer_type_inference_and_final_answer():
    assert hub.infer_answer_type("42") == ("integer", -1)
    assert hub.infer_answer_type("-3.25") == ("float", 2)
    assert hub.infer_answer_type("\\frac{1}{2}") == ("latex", -1)
    assert hub.infer_answer_type("[1, 2]") == ("list", -1)
    assert hub.infer_answer_type("red") == ("text", -1)
    assert hub.final_answer("Some steps.\nAnswer: 12.") == "12"
    assert hub.final_answer("The answer is B") == "B"


def test_map_sft_seed_resolves_a_letter_to_the_option_text():
    record = {"problem": "<image>Find y.\nChoices:\nA. 3\nB. 4", "answer": "B", "decoded_image": IMAGE,
              "image": "images/1.png", "source": "Geometry3K"}
    (problem,) = hub.map_sft_seed(record, 5)
    assert problem["id"] == "sft_seed-geometry3k-0000005" and problem["source"] == "geometry3k"
    assert (problem["question"], problem["choices"], problem["answer"]) == ("Find y.", ["3", "4"], "4")
    assert problem["answer_type"] == "multiple_choice" and problem["image"] is IMAGE
    validate_problem(problem, "sft_seed row 5")


def test_map_grpo_set_and_free_form_answers():
    (problem,) = hub.map_grpo_set({"problem": "<image>What is the area?", "answer": "12.5", "images": [IMAGE]},
                                  0, name="grpo_hard")
    assert (problem["id"], problem["answer_type"], problem["precision"]) == ("grpo_hard-0000000", "float", 1)
    assert problem["question"] == "What is the area?"


def test_map_geometry3k_uses_the_choices_column():
    record = {"images": [IMAGE], "problem": "<image>Find x.", "answer": "B", "id": 17, "choices": ["2", "4"],
              "ground_truth": "B"}
    (problem,) = hub.map_geometry3k(record, 0, split="test")
    assert (problem["id"], problem["choices"], problem["answer"], problem["split"]) == ("geometry3k-17", ["2", "4"],
                                                                                        "4", "test")


def test_map_vizwiz_takes_the_most_common_crowd_answer():
    record = {"question_id": "VizWiz_val_00000001.jpg", "image": IMAGE, "question": "What color is this?",
              "answers": ["blue", "Blue ", "navy", "blue"], "category": "other"}
    (problem,) = hub.map_vizwiz(record, 0)
    assert problem["answer"] == "blue" and problem["answer_type"] == "text"
    assert problem["id"] == "vizwiz-vizwiz_val_00000001.jpg"


def test_map_cauldron_gives_one_problem_per_turn():
    record = {"images": [IMAGE], "texts": [
        {"user": "Is Red the maximum?\nChoices:\nA. no\nB. yes", "assistant": "Answer: B", "source": "figureqa"},
        {"user": "Is Blue the minimum?", "assistant": "No.", "source": "figureqa"}]}
    first, second = hub.map_cauldron_figureqa(record, 3)
    assert (first["answer"], first["answer_type"], first["choices"]) == ("yes", "multiple_choice", ["no", "yes"])
    assert (second["answer"], second["answer_type"], second["id"]) == ("No", "text", "figureqa-0000003-1")
    (tab,) = hub.map_cauldron_tabmwp({"images": [IMAGE], "texts": [{"user": "Total?", "assistant": "So 9.\nAnswer: 9"}]}, 0)
    assert (tab["source"], tab["answer"], tab["answer_type"]) == ("tabmwp", "9", "integer")


def test_map_mathv360k_reads_conversations():
    record = {"id": "x", "image": IMAGE, "data_source": "TabMWP", "conversations": [
        {"from": "human", "value": "<image>\nHow many?"}, {"from": "gpt", "value": "The answer is 7"}]}
    (problem,) = hub.map_mathv360k(record, 2, name="mathv360k_tabmwp")
    assert (problem["id"], problem["question"], problem["answer"]) == ("mathv360k_tabmwp-0000002-0", "How many?", "7")


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown source 'mathvista'; known sources: .*figureqa.*sft_seed"):
        hub.load_source("mathvista")


def test_show_problems_draws_one_panel_per_problem(pool):
    figure = show_problems(pool, n=6, cols=4)
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == 6
    assert "answer: " + pool[0]["answer"] in panels[0].get_title(loc="left")
    with pytest.raises(ValueError, match="non-empty"):
        show_problems(pool.select([]))


def test_map_cauldron_ai2d_drops_the_question_label_and_resolves_the_letter():
    record = {"images": [IMAGE], "texts": [
        {"user": "Question: Which stage follows the egg?\nChoices:\nA. adult\nB. larva\nC. pupa\nAnswer with the letter.",
         "assistant": "Answer: B", "source": "ai2d"},
        {"user": "What eats the grass?\nChoices:\nA. hawk\nB. rabbit", "assistant": "Answer: B", "source": "ai2d"}]}
    first, second = hub.map_cauldron_ai2d(record, 4)
    assert (first["id"], first["source"], first["question"]) == ("ai2d-0000004-0", "ai2d", "Which stage follows the egg?")
    assert (first["choices"], first["answer"], first["answer_type"]) == (["adult", "larva", "pupa"], "larva",
                                                                         "multiple_choice")
    assert (second["question"], second["answer"]) == ("What eats the grass?", "rabbit")
    validate_problem(first, "ai2d row 4")


# ---------------------------------------------------------------------------------------------------------
# loaders on local folders laid out like hub repositories (`data.hub_root`), read by datasets.load_dataset


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """datasets' cache inside the test's folder: every folder written here is read fresh and nothing is left."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def write_repo(root, repo: str, files: dict[str, list[dict]], configs: dict[str, dict[str, str]] | None = None):
    """A hub-layout repository: `files` maps paths inside it to rows (parquet), `configs` the README's
    `configs:` block ({config: {split: path pattern}}; None: splits come from the file names)."""
    for path, rows in files.items():
        (root / repo / path).parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows).to_parquet(root / repo / path)
    card = [{"config_name": name, "data_files": [{"split": split, "path": pattern} for split, pattern in splits.items()]}
            for name, splits in (configs or {}).items()]
    (root / repo / "README.md").write_text("---\n" + json.dumps({"pretty_name": repo, **({"configs": card} if card else {})})
                                           + "\n---\n")


def figureqa_rows(n: int, questions: int) -> list[dict]:
    return [{"images": [IMAGE], "texts": [{"user": f"Is bar {q} of chart {i} the maximum?", "assistant": "No.",
                                           "source": "figureqa"} for q in range(questions)]} for i in range(n)]


def test_loader_maps_valid_rows_and_skips_invalid_ones(hub_cache, caplog):
    write_repo(hub_cache, "ydeng9/medium_grpo_only", {"data/train-00000-of-00001.parquet": [
        {"problem": "<image>How many?", "answer": "3", "images": [IMAGE]},
        {"problem": "<image>How many?", "answer": "", "images": [IMAGE]},  # no answer: skipped
        {"problem": "<image>Pick.\nChoices:\nA. 1\nB. 2", "answer": "C", "images": [IMAGE]},  # no option C
    ]})
    with caplog.at_level("INFO", logger="ovlt.ground.hub"):
        problems = hub.load_source("grpo_medium", hub_root=hub_cache)
    assert problems["id"] == ["grpo_medium-0000000"] and problems.features == PROBLEM_FEATURES
    assert "1 problems kept from 3 of 3 rows, 2 skipped" in caplog.text and "grpo_medium-0000001" in caplog.text


def test_geos_and_ai2d_load_the_hub_configs_checked_in_the_cards(hub_cache):
    write_repo(hub_cache, "lmms-lab/LLaVA-OneVision-Data", {"GEOS(MathV360K)/train-00000-of-00001.parquet": [
        {"id": "geos_7", "image": IMAGE, "data_source": "GEOS", "conversations": [
            {"from": "human", "value": "<image>\nFind x.\nChoices:\nA: 30\nB: 45"}, {"from": "gpt", "value": "Answer: A"}]}],
        "CLEVR-Math(MathV360K)/train-00000-of-00001.parquet": [
        {"id": "clevr_1", "image": IMAGE, "data_source": "CLEVR-Math", "conversations": [
            {"from": "human", "value": "<image>\nHow many cubes?"}, {"from": "gpt", "value": "Answer: 9"}]}]},
        {"GEOS(MathV360K)": {"train": "GEOS(MathV360K)/train-*"},
         "CLEVR-Math(MathV360K)": {"train": "CLEVR-Math(MathV360K)/train-*"}})
    write_repo(hub_cache, "HuggingFaceM4/the_cauldron", {"ai2d/train-00000-of-00001.parquet": [
        {"images": [IMAGE], "texts": [{"user": "Question: Which is a producer?\nChoices:\nA. grass\nB. fox",
                                       "assistant": "Answer: A", "source": "ai2d"}]}],
        "figureqa/train-00000-of-00001.parquet": figureqa_rows(1, 1)},
        {"ai2d": {"train": "ai2d/train-*"}, "figureqa": {"train": "figureqa/train-*"}})
    geos, ai2d = hub.load_source("geos", hub_root=hub_cache), hub.load_source("ai2d", hub_root=str(hub_cache))
    assert (geos["id"], geos["source"], geos["answer"], geos["choices"]) == (["geos-0000000-0"], ["geos"], ["30"],
                                                                             [["30", "45"]])
    assert (ai2d["id"], ai2d["answer"], ai2d["question"]) == (["ai2d-0000000-0"], ["grass"], ["Which is a producer?"])


def test_a_missing_repository_names_the_folder_and_the_hub_id(hub_cache):
    with pytest.raises(FileNotFoundError, match=r"'hiyouga/geometry3k': no folder .*hiyouga/geometry3k "
                                                r"\(data.hub_root is"):
        hub.load_source("geometry3k", hub_root=hub_cache)


def test_limit_counts_problems_not_rows(hub_cache):
    """Ten rows of three questions: a limit of 7 gives the first 7 problems, not 7 rows (21 problems)."""
    write_repo(hub_cache, "HuggingFaceM4/the_cauldron", {"figureqa/train-00000-of-00001.parquet": figureqa_rows(10, 3)},
               {"figureqa": {"train": "figureqa/train-*"}})
    problems = hub.load_source("figureqa", limit=7, hub_root=hub_cache)
    assert problems["id"] == [f"figureqa-{row:07d}-{turn}" for row in range(3) for turn in range(3)][:7]
    assert len(hub.load_source("figureqa", limit=100, hub_root=hub_cache)) == 30  # all there is


def test_limit_is_reached_past_invalid_rows_without_mapping_the_whole_source():
    rows = datasets.Dataset.from_list([{"problem": "<image>How many?", "answer": "" if i % 3 == 0 else str(i),
                                        "images": [IMAGE]} for i in range(1000)])
    mapped = []

    def mapper(row, idx, split):
        mapped.append(idx)
        return hub.map_grpo_set(row, idx, split)

    problems, skipped = hub.convert(rows, mapper, "train", "test rows", limit=50)
    assert problems["id"] == [f"grpo-{i:07d}" for i in range(1000) if i % 3][:50]  # one row in three is invalid
    assert len(mapped) == len(set(mapped)) and len(mapped) < 200, len(mapped)  # 75 rows hold 50 valid problems
    assert skipped == [f"grpo-{i:07d}" for i in sorted(mapped) if i % 3 == 0]


def test_the_pool_tops_up_a_source_that_runs_short_and_says_so(hub_cache, caplog):
    """GEOS holds 5 problems but is asked for 3/8 of the pool: a WARNING names it, the other sources take its
    shortfall in proportion to their weights (2:2:1), the pool has the size wanted and the manifest says so."""
    write_repo(hub_cache, "HuggingFaceM4/the_cauldron", {"figureqa/train-00000-of-00001.parquet": figureqa_rows(40, 2)},
               {"figureqa": {"train": "figureqa/train-*"}})
    write_repo(hub_cache, "lmms-lab/LLaVA-OneVision-Data", {"GEOS(MathV360K)/train-00000-of-00001.parquet": [
        {"id": f"geos_{i}", "image": IMAGE, "data_source": "GEOS", "conversations": [
            {"from": "human", "value": f"<image>\nFind x{i}."}, {"from": "gpt", "value": f"Answer: {i}"}]} for i in range(5)]},
        {"GEOS(MathV360K)": {"train": "GEOS(MathV360K)/train-*"}})
    cfg = load_config(write_test_config(hub_cache, data={"hub_root": str(hub_cache), "sources": [
        {"name": "synthetic/chart", "weight": 2}, {"name": "synthetic/counting", "weight": 2},
        {"name": "figureqa", "weight": 1}, {"name": "geos", "weight": 3}]}))
    wanted = int(pool_size(cfg) * (1 + DECONTAMINATION_MARGIN)) + 1
    with caplog.at_level("WARNING", logger="ovlt.stages.data"):
        counts = build_data(cfg, Run(hub_cache / "run"))["counts"]
    by_source = counts["by_source"]
    asked = by_source["geos"]["asked"]
    assert asked > 5 and by_source["geos"] == {"asked": asked, "supplied": 5, "final": 5}
    assert f"source 'geos' supplied 5 of the {asked} problems it was asked for; the shortfall goes to " \
           "synthetic/chart, synthetic/counting, figureqa in proportion to their weights" in caplog.text
    assert counts["train"] == wanted == sum(c["final"] for c in by_source.values())
    assert counts["shortfall_by_source"] == {"geos": asked - 5}
    extra = {name: c["final"] - c["asked"] for name, c in by_source.items() if name != "geos"}
    assert sum(extra.values()) == asked - 5
    assert all(abs(extra[name] - 2 * extra["figureqa"]) <= 1 for name in ("synthetic/chart", "synthetic/counting"))
    assert counts["train_by_source"]["geos"] == 5 and by_source["figureqa"]["supplied"] == by_source["figureqa"]["asked"]
