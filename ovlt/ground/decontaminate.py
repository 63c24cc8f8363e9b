"""Drop training problems that overlap an evaluation benchmark: same picture or (nearly) the same question.

Three rules, each with an index so a training set is checked in one pass:
- scene:    both problems are procedural (non-empty `scene`) and their canonical scene hashes are equal.
            Procedural pairs use only this rule: their question texts are templates shared by design, and
            their plain drawings are too alike for perceptual hashes (measured: 2.7% of pairs of distinct
            geometry pictures lie within phash distance 4), while scene hashes are exact.
- image:    perceptual hash (imagehash.phash, 64 bits) within `phash_distance` bits. Hashes are split into
            phash_distance + 1 bands; two hashes that close agree exactly on at least one band
            (pigeonhole), so only benchmark images sharing a band are compared.
- question: word n-grams of the rendered question (options included) shared with one benchmark
            question, as a fraction of the training question's n-grams, at or above `threshold`. n-grams
            found in many benchmark questions are phrasing ("what is the value of"), not content, and are
            left out of the index. Questions shorter than `ngram` words are not compared.
"""

import logging
import re
from collections import Counter, defaultdict
from itertools import pairwise

import datasets
import imagehash

from ovlt.ground.procedural import scene_key
from ovlt.ground.progress import tqdm
from ovlt.ground.schema import format_question

log = logging.getLogger(__name__)

HASH_BITS = 64


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i: i + n]) for i in range(len(words) - n + 1)}


def _bands(bits: int, count: int) -> list[tuple[int, int]]:
    """(band index, band value) pairs: the 64 hash bits cut into `count` contiguous bands."""
    edges = [round(i * HASH_BITS / count) for i in range(count + 1)]
    return [(i, (bits >> lo) & ((1 << (hi - lo)) - 1)) for i, (lo, hi) in enumerate(pairwise(edges))]


def _phash_bits(image) -> int:
    return int(str(imagehash.phash(image)), 16)


class _BenchmarkIndex:
    """All benchmark problems, indexed by scene key, phash band and question n-gram."""

    def __init__(self, benchmarks: dict[str, datasets.Dataset], phash_distance: int, ngram: int, threshold: float):
        self.items, self.scenes = [], {}
        self.bands, self.grams = defaultdict(list), defaultdict(set)
        self.phash_distance, self.ngram, self.threshold = phash_distance, ngram, threshold
        for name, dataset in benchmarks.items():
            for problem in tqdm(dataset, desc=f"indexing benchmark {name}", disable=len(dataset) < 1000):
                item = len(self.items)
                if problem["scene"]:
                    self.scenes.setdefault(scene_key(problem["scene"]), item)
                    bits = None
                else:
                    bits = _phash_bits(problem["image"])
                    for band in _bands(bits, phash_distance + 1):
                        self.bands[band].append(item)
                    for gram in word_ngrams(format_question(problem), ngram):
                        self.grams[gram].add(item)
                self.items.append({"benchmark": name, "benchmark_id": problem["id"], "bits": bits})
        # phrasing shared by many benchmark questions says nothing about one question being copied
        too_common = max(10, len(self.items) // 100)
        self.grams = {gram: items for gram, items in self.grams.items() if len(items) <= too_common}

    def match(self, problem: dict) -> tuple[int, str] | None:
        """(benchmark item, reason) for the first rule a training problem breaks, else None."""
        if problem["scene"]:
            item = self.scenes.get(scene_key(problem["scene"]))
            return (item, "same procedural scene") if item is not None else None
        bits = _phash_bits(problem["image"])
        for band in _bands(bits, self.phash_distance + 1):
            for item in self.bands.get(band, ()):
                distance = (bits ^ self.items[item]["bits"]).bit_count()
                if distance <= self.phash_distance:
                    return item, f"image phash distance {distance}"
        grams = word_ngrams(format_question(problem), self.ngram)
        shared = Counter(item for gram in grams for item in self.grams.get(gram, ()))
        if shared:
            item, count = shared.most_common(1)[0]
            if count / len(grams) >= self.threshold:
                return item, f"question {self.ngram}-gram overlap {count / len(grams):.2f}"
        return None


def decontaminate(train: datasets.Dataset, benchmarks: dict[str, datasets.Dataset], phash_distance: int = 4,
                  ngram: int = 5, threshold: float = 0.5) -> tuple[datasets.Dataset, list[dict]]:
    """(training problems that overlap no benchmark, one record per dropped problem).

    A drop record is {id, source, benchmark, benchmark_id, reason}.
    """
    if not 0 <= phash_distance < HASH_BITS:
        raise ValueError(f"phash_distance must be in [0, {HASH_BITS}), got {phash_distance}")
    if ngram < 1 or not 0 < threshold <= 1:
        raise ValueError(f"need ngram >= 1 and 0 < threshold <= 1, got ngram={ngram}, threshold={threshold}")
    index = _BenchmarkIndex(benchmarks, phash_distance, ngram, threshold)
    kept, drops = [], []
    for i, problem in enumerate(tqdm(train, desc="decontaminating", disable=len(train) < 1000)):
        found = index.match(problem)
        if found is None:
            kept.append(i)
            continue
        item, reason = found
        drops.append({"id": problem["id"], "source": problem["source"], "benchmark": index.items[item]["benchmark"],
                      "benchmark_id": index.items[item]["benchmark_id"], "reason": reason})
    log.info("decontamination: kept %d of %d training problems, dropped %d (%s)", len(kept), len(train),
             len(drops), dict(Counter(d["reason"].split(" ")[0] for d in drops)))
    return train.select(kept), drops
