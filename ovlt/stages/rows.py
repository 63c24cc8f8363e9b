"""What the generating stages share: problem rows whose images are decoded one at a time (a bad one is a counted
skip, not a crash), the manifest's counts shape (`Tally`), and work written in resumable shards."""

from __future__ import annotations

import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import datasets
from PIL import Image

from ovlt.ground.artifacts import Stage
from ovlt.ground.config import ModelSpec
from ovlt.ground.progress import tqdm

log = logging.getLogger(__name__)


# Problems per shard, in units of the generating model's batch size: a killed stage loses at most this much.
SHARD_BATCHES = 4


def problem_rows(problems: datasets.Dataset) -> Iterator[dict]:
    """Rows with the image left undecoded (`{"bytes", "path"}`); `open_image` decodes it."""
    yield from problems.cast_column("image", datasets.Image(decode=False))


def open_image(row: dict) -> Image.Image | None:
    """The row's image as RGB, or None (logged) when it cannot be read."""
    image = row.get("image") or {}
    try:
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        with Image.open(source) as opened:
            return opened.convert("RGB")
    except Exception as err:  # any decoder error is the same event: this problem has no usable image
        log.warning("problem %s: unreadable image (%s): skipped", row.get("id"), err)
        return None


def rows_to_dataset(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    """A data set of `features` from rows (extra keys ignored); an empty one keeps its columns."""
    return datasets.Dataset.from_dict({key: [row[key] for row in rows] for key in features}, features=features)


def has_gold(row: dict) -> bool:
    return isinstance(row.get("answer"), str) and bool(row["answer"].strip())


def usable_rows(batch: list[dict], **skip_fields) -> tuple[list[dict], list[Image.Image], list[dict]]:
    """(rows with a gold answer and a readable image, their images, a skip record per other row).

    Skip records are `{"id", "source", "status": reason, **skip_fields}`; each skip is logged with its id.
    """
    usable, images, skipped = [], [], []
    for row in batch:
        if not has_gold(row):
            log.warning("problem %s: no gold answer: skipped", row["id"])
            status = "no_gold_answer"
        else:
            image = open_image(row)
            if image is not None:
                usable.append(row)
                images.append(image)
                continue
            status = "unreadable_image"
        skipped.append({"id": row["id"], "source": row["source"], "status": status, **skip_fields})
    return usable, images, skipped


class Tally:
    """Counts in, out and dropped-by-reason per source; `as_dict()` is the manifest's counts shape."""

    def __init__(self):
        self.rows: dict[str, Counter] = defaultdict(Counter)

    def add(self, source: str, outcome: str) -> None:
        """outcome: "out" or the reason the problem was dropped."""
        self.rows[source]["in"] += 1
        self.rows[source][outcome] += 1

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            self.add(row["source"], row["status"])

    @staticmethod
    def _one(counter: Counter) -> dict:
        dropped = {k: v for k, v in sorted(counter.items()) if k not in ("in", "out")}
        return {"in": counter["in"], "out": counter["out"], "dropped": dropped}

    def as_dict(self, **extra_by_source: dict) -> dict:
        """The counts, with each extra count ({source: n}, or {source: {cause: n}}) per source and summed."""
        total = sum(self.rows.values(), Counter())
        nested = {key for key, values in extra_by_source.items() if any(isinstance(v, dict) for v in values.values())}
        by_source = {}
        for source in sorted(self.rows):
            by_source[source] = self._one(self.rows[source])
            for key, values in extra_by_source.items():
                by_source[source][key] = values.get(source, {} if key in nested else 0)
        out = self._one(total)
        for key, values in extra_by_source.items():
            out[key] = dict(sorted(sum(map(Counter, values.values()), Counter()).items())) if key in nested \
                else sum(values.values())
        return {**out, "by_source": by_source}


def run_sharded(st: Stage, rows: list[dict], size: int, work: Callable[[list[dict]], list[dict]],
                desc: str, enough: Callable[[list[dict]], bool] | None = None) -> list[dict]:
    """Apply `work` to the rows not yet in a complete shard, `size` rows a shard; return all shard rows.

    `work` maps a list of input rows to one output row per input (with "id", "source" and "status"). With
    `enough`, rows are drawn in order only until `enough(all shard rows so far)` holds: the rest are not drawn
    (the caller counts them), and a resumed stage that already has enough draws nothing.
    """
    store = st.shards()
    done = store.done_keys()
    todo = [row for row in rows if row["id"] not in done]
    if done:
        log.info("%s: resuming, %d of %d problems already in shards", st.label, len(rows) - len(todo), len(rows))
    written = store.rows()
    for start in tqdm(range(0, len(todo), size), desc=desc, unit="shard"):
        if enough is not None and enough(written):
            log.info("%s: target met after %d of %d problems; the rest are not drawn", st.label, len(written),
                     len(rows))
            break
        shard = work(todo[start:start + size])
        store.write(shard)
        written += shard
    return store.rows()  # as written: what a resumed stage would read


def shard_size(spec: ModelSpec, backend=None) -> int:
    """Problems per shard for a model: a killed stage loses at most this much work.

    Every engine gets SHARD_BATCHES of its batches per shard: the engines wait for each other at the end of a shard
    (for its longest sequence), so a shard must hold many batches' worth of work for each of them.
    """
    return spec.batch_size * SHARD_BATCHES * (backend.engines if backend is not None else 1)

