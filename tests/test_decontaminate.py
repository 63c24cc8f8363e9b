"""Decontamination: planted benchmark items are dropped, clean items are kept."""

import io
import json
import random

import datasets
import numpy as np
import pytest
from PIL import Image

from ovlt.ground.decontaminate import decontaminate, word_ngrams
from ovlt.ground.procedural import generate
from ovlt.ground.schema import PROBLEM_FEATURES

WORDS = ("apple river stone cloud seven purple circle market window garden silver train bottle ladder mirror "
         "forest candle rocket pepper island basket violin marble tunnel feather orange button saddle harbor "
         "lantern meadow pillow spider tomato wallet zipper anchor blanket cactus dragon engine falcon").split()


def smooth_image(seed: int) -> Image.Image:
    """A photo-like picture: random colours on a coarse grid, smoothly upscaled."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return coarse.resize((128, 128), Image.BICUBIC)


def sentence(seed: int, words: int = 16) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "?"


def problem(id: str, image: Image.Image, question: str, source: str = "hub", scene: str = "") -> dict:
    return {"id": id, "image": image, "question": question, "choices": [], "answer": "1", "answer_type": "integer",
            "precision": -1, "source": source, "split": "train", "difficulty": -1, "scene": scene}


def reencoded(image: Image.Image) -> Image.Image:
    """The same picture resized and saved as JPEG, as a copy found elsewhere would be."""
    buffer = io.BytesIO()
    image.resize((200, 200), Image.BILINEAR).save(buffer, format="JPEG", quality=80)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def to_dataset(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=PROBLEM_FEATURES)


@pytest.fixture(scope="module")
def benchmark():
    return to_dataset([problem(f"bench-{i}", smooth_image(1000 + i), sentence(1000 + i)) for i in range(30)])


def test_planted_items_are_dropped_and_clean_items_kept(benchmark):
    clean = [problem(f"clean-{i}", smooth_image(i), sentence(i)) for i in range(40)]
    planted_image = problem("planted-image", reencoded(benchmark[3]["image"]), sentence(777))
    words = benchmark[8]["question"].split()
    words[9] = "zebra"  # one word changed
    planted_question = problem("planted-question", smooth_image(555), " ".join(words))
    train = to_dataset(clean[:20] + [planted_image] + clean[20:] + [planted_question])

    kept, drops = decontaminate(train, {"toy": benchmark})

    assert set(kept["id"]) == {p["id"] for p in clean}
    by_id = {d["id"]: d for d in drops}
    assert set(by_id) == {"planted-image", "planted-question"}
    assert by_id["planted-image"]["benchmark_id"] == "bench-3"
    assert by_id["planted-image"]["reason"].startswith("image phash distance")
    assert by_id["planted-question"]["benchmark_id"] == "bench-8"
    assert by_id["planted-question"]["reason"].startswith("question 5-gram overlap")
    assert all(d["benchmark"] == "toy" and d["source"] == "hub" for d in drops)


def test_threshold_decides_how_much_overlap_is_contamination(benchmark):
    half = benchmark[0]["question"].split()[:8] + sentence(4242, 8).split()  # first half copied
    train = to_dataset([problem("half", smooth_image(9), " ".join(half))])
    assert len(decontaminate(train, {"toy": benchmark}, threshold=0.3)[1]) == 1
    assert len(decontaminate(train, {"toy": benchmark}, threshold=0.8)[1]) == 0


def test_phash_distance_zero_still_catches_an_identical_image(benchmark):
    train = to_dataset([problem("copy", benchmark[5]["image"], sentence(31337))])
    (drop,) = decontaminate(train, {"toy": benchmark}, phash_distance=0)[1]
    assert drop["reason"] == "image phash distance 0" and drop["benchmark_id"] == "bench-5"


def test_procedural_items_are_compared_by_scene_not_by_template_text_or_drawing():
    bench = generate(40, seed=0, split="test")
    train = generate(120, seed=0, split="train")  # disjoint scenes, same question templates
    planted = dict(bench[7], id="planted-scene", split="train")
    scene = json.loads(planted["scene"])
    scene["query"] = {"kind": "other question about the same picture"}
    planted["scene"] = json.dumps(scene)
    kept, drops = decontaminate(datasets.concatenate_datasets([train, to_dataset([planted])]), {"synthetic": bench})
    assert len(kept) == len(train)
    assert drops == [{"id": "planted-scene", "source": planted["source"], "benchmark": "synthetic",
                      "benchmark_id": bench[7]["id"], "reason": "same procedural scene"}]


def test_word_ngrams_and_argument_checks(benchmark):
    assert word_ngrams("How many RED cubes?", 2) == {("how", "many"), ("many", "red"), ("red", "cubes")}
    assert word_ngrams("too short", 5) == set()
    with pytest.raises(ValueError, match="phash_distance"):
        decontaminate(benchmark, {"toy": benchmark}, phash_distance=64)
    with pytest.raises(ValueError, match="threshold"):
        decontaminate(benchmark, {"toy": benchmark}, threshold=0)
