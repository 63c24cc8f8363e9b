"""The local stand-in of the hub data sets (ovlt.rehearsal.local_hub), read by the real loaders through
datasets.load_dataset exactly as a mirror of the hub would be (data.hub_root)."""

import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from conftest import write_test_config

from ovlt.ground import hub
from ovlt.ground.artifacts import Run
from ovlt.ground.config import load_config
from ovlt.ground.layout import pool_size
from ovlt.ground.schema import validate_problem
from ovlt.rehearsal import local_hub
from ovlt.scoring import benchmarks
from ovlt.stages.data import DECONTAMINATION_MARGIN, benchmark_items, build_data

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
