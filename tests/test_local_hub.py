"""The local stand-in of the hub data sets (ovlt.rehearsal.local_hub), read by the real loaders through
datasets.load_dataset exactly as a mirror of the hub would be (data.hub_root)."""

import ast
import re
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from helpers import write_test_config

from ovlt.ground import hub
from ovlt.ground.artifacts import Run
from ovlt.ground.config import load_config
from ovlt.ground.layout import pool_size
from ovlt.ground.schema import validate_problem
from ovlt.rehearsal import local_hub
from ovlt.scoring import benchmarks, hallusionbench
from ovlt.stages.data import DECONTAMINATION_MARGIN, benchmark_items, build_data
from ovlt.stages.evaluation import record_images

# our source or benchmark name -> (repository, config, split) in the stand-in's counts
SOURCES = {
    "figureqa": ("HuggingFaceM4/the_cauldron", "figureqa", "train"),
    "tabmwp": ("HuggingFaceM4/the_cauldron", "tabmwp", "train"),
    "ai2d": ("HuggingFaceM4/the_cauldron", "ai2d", "train"),
    "geometry3k": ("hiyouga/geometry3k", "default", "train"),
    "vizwiz": ("lmms-lab/VizWiz-VQA", "default", "val"),
    "geos": ("lmms-lab/LLaVA-OneVision-Data", "GEOS(MathV360K)", "train"),
}
BENCHMARKS = {
    "mathvista_testmini": ("AI4Math/MathVista", "default", "testmini"),
    "mathverse_testmini": ("AI4Math/MathVerse", "testmini", "testmini"),
    "mathvision_test": ("MathLLMs/MathVision", "default", "test"),
    "mathvision_testmini": ("MathLLMs/MathVision", "default", "testmini"),
}
# the authors' further benchmarks, each spec of them
FURTHER_BENCHMARKS = {
    "mmmu_pro_standard4": ("MMMU/MMMU_Pro", "standard (4 options)", "test"),
    "mmmu_pro_standard10": ("MMMU/MMMU_Pro", "standard (10 options)", "test"),
    "mmmu_pro_vision": ("MMMU/MMMU_Pro", "vision", "test"),
    **{f"emma_{subject.lower()}": ("luckychao/EMMA", subject, "test") for subject in local_hub.EMMA_SUBJECTS},
    "hallusionbench": ("lmms-lab/HallusionBench", "default", "image"),
}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """(root, counts) of one stand-in, read with datasets' cache inside the test's folder."""
    folder = tmp_path_factory.mktemp("local-hub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", folder / "hf-cache")
        yield folder / "hub", local_hub.write_hub(folder / "hub", seed=0)


@pytest.mark.parametrize("name", SOURCES)
def test_every_training_source_loads_through_its_real_loader(stand_in, name):
    root, counts = stand_in
    repo, config, split = SOURCES[name]
    written = counts[repo][config][split]
    problems = hub.load_source(name, hub_root=root)
    assert len(problems) == written["questions"]  # every question written is a valid problem
    for i, problem in enumerate(problems):
        validate_problem(problem, f"{name} problem {i}")
    assert set(problems["source"]) == {name} and len(set(problems["id"])) == len(problems)
    if repo == "HuggingFaceM4/the_cauldron":  # rows hold several questions, each its own problem
        assert written["questions"] > written["rows"] and len({i.rsplit("-", 1)[0] for i in problems["id"]}) == written["rows"]


def test_a_limit_takes_the_first_problems_exactly(stand_in):
    root, _ = stand_in
    every = hub.load_source("figureqa", hub_root=root)["id"]
    assert hub.load_source("figureqa", limit=25, hub_root=root)["id"] == every[:25]


def _bar_heights(image) -> dict[str, int]:
    pixels = np.asarray(image.convert("RGB"))
    heights = {label: int((pixels == rgb).all(axis=2).any(axis=1).sum()) for label, rgb in local_hub.COLORS.items()}
    return {label: height for label, height in heights.items() if height}


def test_figureqa_answers_follow_from_the_drawn_bars(stand_in):
    root, _ = stand_in
    checked = 0
    for problem in hub.load_source("figureqa", limit=60, hub_root=root):
        heights = _bar_heights(problem["image"])
        top, bottom = max(heights, key=heights.get), min(heights, key=heights.get)
        q = problem["question"]
        if m := re.fullmatch(r"Is (\w+) the maximum\?|Does (\w+) have the highest value\?", q):
            truth = (m.group(1) or m.group(2)) == top
        elif m := re.fullmatch(r"Is (\w+) the minimum\?", q):
            truth = m.group(1) == bottom
        else:
            a, relation, b = re.fullmatch(r"Is (\w+) (greater|less) than (\w+)\?", q).groups()
            truth = heights[a] > heights[b] if relation == "greater" else heights[a] < heights[b]
        assert problem["answer"] == ("Yes" if truth else "No"), (problem["id"], q, heights)
        checked += 1
    assert checked == 60


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_loads_through_load_hub(stand_in, name):
    root, counts = stand_in
    repo, config, split = BENCHMARKS[name]
    records = benchmarks.load_hub(name, hub_root=root)
    assert len(records) == counts[repo][config][split]["rows"] and len({r["id"] for r in records}) == len(records)
    kinds = {r["answer_type"] for r in records}
    assert "multiple_choice" in kinds and kinds - {"multiple_choice"}  # both kinds of item
    for r in records:
        assert r["image"].size[0] >= 64 and r["prompt"] and r["answer"]
        assert r["answer_type"] != "multiple_choice" or r["answer"] in r["choices"]
        benchmarks.build_prompt(name, r, "paper")


def test_mathverse_versions_share_one_consistent_answer(stand_in):
    root, _ = stand_in
    records = benchmarks.load_hub("mathverse_testmini", hub_root=root)
    for r in records:
        if m := re.match(r"As shown in the figure, in triangle ABC, angle A = (\d+)° and angle B = (\d+)°", r["question"]):
            x = 180 - int(m.group(1)) - int(m.group(2))
            assert r["answer"] in (str(x), f"{x}°")
    versions = {r["meta"]["problem_version"] for r in records}
    assert versions == set(local_hub.MATHVERSE_VERSIONS)
    assert all(r["question"] == "" for r in records if r["meta"]["problem_version"] == "Vision Only")


def test_vizwiz_holds_a_few_multi_megapixel_jpeg_photos(stand_in):
    root, _ = stand_in
    images = hub.load_source("vizwiz", hub_root=root)["image"]
    big = [image for image in images if image.width * image.height >= 10_000_000]
    assert len(big) == local_hub.BIG_PHOTOS and {image.format for image in big} == {"JPEG"}
    assert sorted(image.width * image.height for image in images)[-len(big) - 1] <= 200 * 200  # the rest are small


def test_writing_is_deterministic_and_never_over_an_existing_stand_in(stand_in, tmp_path):
    root, counts = stand_in
    assert local_hub.write_hub(tmp_path / "again", seed=0) == counts
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((root / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
    with pytest.raises(FileExistsError, match=f"{re.escape(str(root))} already holds HuggingFaceM4/the_cauldron"):
        local_hub.write_hub(root)


def test_another_seed_writes_other_data_that_the_shared_cache_does_not_mix_up(stand_in, tmp_path):
    """datasets caches a README-configured local repository by its README, not by its files: the split sizes
    in each README keep two stand-ins apart in one cache."""
    root, _ = stand_in
    other = tmp_path / "seed-1"
    local_hub.write_hub(other, seed=1)
    for name in ("geos", "figureqa"):
        ours, theirs = hub.load_source(name, hub_root=root), hub.load_source(name, hub_root=other)
        assert ours["question"] != theirs["question"] or ours["answer"] != theirs["answer"], name


def test_the_layout_is_the_hubs(stand_in):
    root, _ = stand_in
    assert (root / "AI4Math/MathVerse/testmini.parquet").is_file()
    assert len(list((root / "HuggingFaceM4/the_cauldron/figureqa").glob("train-0000?-of-00004-*.parquet"))) == 4
    assert (root / "lmms-lab/LLaVA-OneVision-Data/GEOS(MathV360K)/train-00000-of-00001.parquet").is_file()
    assert "configs:" not in (root / "lmms-lab/VizWiz-VQA/README.md").read_text()  # splits from file names
    card = (root / "lmms-lab/LLaVA-OneVision-Data/README.md").read_text()
    assert "configs:\n- config_name: GEOS(MathV360K)\n  data_files:\n  - split: train\n    path: GEOS(MathV360K)/train-*" in card
    assert "num_examples: 5\n" in card


def _config(folder: Path, **data):
    """The test study's config with `data` set; self_generate.max_share is dropped, as it may name sources
    that `data` leaves out."""
    path = write_test_config(folder)
    raw = yaml.safe_load(path.read_text())
    raw["data"].update(data)
    raw.get("self_generate", {}).pop("max_share", None)
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_a_rehearsal_pool_over_the_six_sources_tops_up_geos(stand_in, tmp_path, caplog):
    """Equal weights over the six training sources: GEOS (5 problems) falls short, the others fill the pool;
    decontamination reads the benchmarks from the same root."""
    root, _ = stand_in
    cfg = _config(tmp_path, hub_root=str(root), sources=[{"name": name} for name in SOURCES])
    run = Run(tmp_path / "run")
    with caplog.at_level("WARNING", logger="ovlt.stages.data"):
        counts = build_data(cfg, run)["counts"]
    wanted = int(pool_size(cfg) * (1 + DECONTAMINATION_MARGIN)) + 1
    assert counts["train"] == wanted and counts["by_source"]["geos"]["final"] == 5
    assert counts["shortfall_by_source"] == {"geos": counts["by_source"]["geos"]["asked"] - 5}
    assert "source 'geos' supplied 5 of the" in caplog.text
    assert len(benchmark_items(cfg, run, "mathvista_testmini")) == 24


def _hub_rows(root: Path, name: str, split: str | None = None) -> datasets.Dataset:
    """A benchmark's rows in the stand-in as datasets reads them, before ovlt's record builder."""
    spec = benchmarks.get_benchmark(name)
    return datasets.load_dataset(str(root / spec.hub_id), spec.hub_config, split=split or spec.hub_split)


def _pixels(image) -> tuple:
    return image.size, image.convert("RGB").tobytes()


@pytest.mark.parametrize("name", FURTHER_BENCHMARKS)
def test_every_further_benchmark_loads_through_load_hub_and_prompts_in_every_style(stand_in, name):
    root, counts = stand_in
    repo, config, split = FURTHER_BENCHMARKS[name]
    records = benchmarks.load_hub(name, hub_root=root)
    assert len(records) == counts[repo][config][split]["rows"] >= 4  # the rehearsal evaluates 4 of one config each
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        images = record_images(r)
        assert images and all(image.convert("RGB").width >= 64 for image in images), r["id"]
        assert r["answer_type"] != "multiple_choice" or r["answer"] in r["choices"]
        assert all(benchmarks.build_prompt(name, r, style) for style in benchmarks.PROMPT_STYLES)


def test_the_further_benchmarks_are_laid_out_as_on_the_hub(stand_in):
    root, _ = stand_in
    assert sorted(p.name for p in (root / "MMMU/MMMU_Pro/standard (10 options)").iterdir()) == [
        "test-00000-of-00002.parquet", "test-00001-of-00002.parquet"]
    assert len(list((root / "MMMU/MMMU_Pro/vision").glob("test-0000?-of-00004.parquet"))) == 4
    assert sorted(p.name for p in (root / "luckychao/EMMA").iterdir()) == [
        "Chemistry", "Coding", "Math", "Physics", "README.md"]
    assert (root / "luckychao/EMMA/Coding/test-00000-of-00001.parquet").is_file()
    assert sorted(p.name for p in (root / "lmms-lab/HallusionBench/data").iterdir()) == [
        "image-00000-of-00001.parquet", "non_image-00000-of-00001.parquet"]
    card = (root / "MMMU/MMMU_Pro/README.md").read_text()
    assert "- config_name: standard (4 options)\n  data_files:\n  - split: test\n    path: standard (4 options)/test-*" in card


def test_mmmu_pro_options_are_stored_as_the_text_of_a_python_list(stand_in):
    root, _ = stand_in
    golds = {}
    for name, n_options in (("mmmu_pro_standard4", 4), ("mmmu_pro_standard10", 10), ("mmmu_pro_vision", 10)):
        rows = _hub_rows(root, name)
        assert rows.features["options"] == datasets.Value("string")
        records = benchmarks.load_hub(name, hub_root=root)
        for row, record in zip(rows, records, strict=True):
            assert isinstance(row["options"], str) and ast.literal_eval(row["options"]) == record["choices"]
            assert len(record["choices"]) == n_options
        golds[name] = {r["id"]: r["answer"] for r in records}
    # the three configs hold the same items, each with its gold answer among its options
    assert golds["mmmu_pro_standard4"] == golds["mmmu_pro_standard10"] == golds["mmmu_pro_vision"]


@pytest.mark.parametrize("name", ["mmmu_pro_standard4", "mmmu_pro_standard10"])
def test_mmmu_pro_standard_items_carry_their_images_in_the_order_the_question_names_them(stand_in, name):
    root, _ = stand_in
    rows = _hub_rows(root, name)
    named_in_reverse = 0
    for row, record in zip(rows, benchmarks.load_hub(name, hub_root=root), strict=True):
        named = [int(n) for n in re.findall(r"<image (\d+)>", row["question"])]
        assert [_pixels(image) for image in record_images(record)] == [_pixels(row[f"image_{n}"]) for n in named]
        assert all(row[f"image_{k}"] is None for k in range(max(named) + 1, 8))  # the unused image columns are empty
        named_in_reverse += named == [2, 1]
    assert named_in_reverse >= 2


def test_emma_has_open_ended_and_multi_image_items_and_feeds_math_its_first_image_alone(stand_in):
    root, _ = stand_in
    for subject in local_hub.EMMA_SUBJECTS:
        name = f"emma_{subject.lower()}"
        rows = _hub_rows(root, name)
        assert {row["type"] for row in rows} == {"Multiple Choice", "Open-ended"}, subject
        assert all((row["options"] is None) == (row["type"] == "Open-ended") for row in rows)
        most = 0
        for row, record in zip(rows, benchmarks.load_hub(name, hub_root=root), strict=True):
            carried = [row[f"image_{k}"] for k in range(1, 6) if row[f"image_{k}"] is not None]
            shown = carried[:1] if subject == "Math" else carried  # EMMA's harness shows a Math item image_1 only
            assert [_pixels(image) for image in record_images(record)] == [_pixels(image) for image in shown]
            most = max(most, len(carried))
        assert most >= 2, subject


def test_hallusionbench_asks_yes_no_pairs_over_original_and_edited_figures(stand_in):
    root, _ = stand_in
    assert all(feature == datasets.Value("string") for column, feature in _hub_rows(root, "hallusionbench").features.items()
               if column != "image")  # ids and codes are strings, as on the hub
    records = benchmarks.load_hub("hallusionbench", hub_root=root)
    assert {r["answer"] for r in records} == {hallusionbench.YES, hallusionbench.NO}
    answers = defaultdict(dict)  # question pair -> visual_input -> answer
    for r in records:
        meta = r["meta"]
        answers[meta["category"], meta["subcategory"], meta["set_id"], meta["question_id"]][meta["visual_input"]] = r["answer"]
    assert all(set(by_figure) == {"1", "2"} for by_figure in answers.values())
    assert sum(by_figure["1"] != by_figure["2"] for by_figure in answers.values()) >= len(answers) / 2  # edits flip
    metrics = hallusionbench.aggregate([{**r["meta"], "correct": r["answer"] == hallusionbench.YES} for r in records])
    assert metrics.pairs == len(answers) and metrics.hard_pairs == len(answers) and 0 < metrics.question_pair_accuracy < 1
    without = _hub_rows(root, "hallusionbench", split="non_image")
    assert len(without) >= 2 and set(without["image"]) == {None} and set(without["visual_input"]) == {"0"}
    assert {(row["category"], row["subcategory"], row["set_id"], row["question_id"]) for row in without} <= set(answers)


def test_hallusionbench_chart_answers_follow_from_the_drawn_bars(stand_in):
    root, _ = stand_in
    checked = 0
    for r in benchmarks.load_hub("hallusionbench", hub_root=root):
        heights = _bar_heights(r["image"])
        if m := re.search(r"Is the (\w+) bar the tallest in the chart\?", r["question"]):
            truth = max(heights, key=heights.get) == m.group(1)
        elif m := re.search(r"is the (\w+) bar taller than the (\w+) bar\?", r["question"], re.IGNORECASE):
            truth = heights[m.group(1)] > heights[m.group(2)]
        else:
            continue
        assert r["answer"] == ("Yes" if truth else "No"), (r["id"], r["question"], heights)
        checked += 1
    assert checked >= 6
