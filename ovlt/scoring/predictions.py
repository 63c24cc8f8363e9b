"""The scored predictions a checkpoint's evaluation wrote (`eval/<checkpoint>/<entry>/predictions.jsonl`), read back,
and what GRPO changed in them against its SFT model (`grpo_effect_counts`, which summary.json stores). No torch: the report
and `write_summary` read them without loading a model."""

from __future__ import annotations

from ovlt.ground.artifacts import Run
from ovlt.scoring.benchmarks import read_jsonl


def read_responses(run: Run, checkpoint: str, entry: str) -> list[dict]:
    """The rows `evaluate` wrote for a checkpoint on a benchmark entry: id, response, num_tokens and `verdicts`, a
    {protocol: {extracted, rule, correct}} in the entry's order of protocols; when sampled, `sampled_right`, a
    {protocol: how many of the item's samples are right}."""
    return [row for _, row in read_jsonl(run.predictions_path(checkpoint, entry))]


def read_predictions(run: Run, checkpoint: str, entry: str, protocol: str | None = None) -> list[dict]:
    """The responses of a checkpoint on a benchmark entry, each with one protocol's verdict (id, response,
    num_tokens, protocol, extracted, rule, correct); `protocol` None: the entry's headline (first) protocol."""
    rows = []
    for row in read_responses(run, checkpoint, entry):
        verdicts = row["verdicts"]
        chosen = protocol or next(iter(verdicts))
        if chosen not in verdicts:
            raise KeyError(f"{run.predictions_path(checkpoint, entry)} has no verdicts under protocol {chosen!r}; "
                           f"it has {', '.join(verdicts)}")
        rows.append({"id": row["id"], "response": row["response"], "num_tokens": row["num_tokens"],
                     "protocol": chosen, **verdicts[chosen]})
    return rows


def grpo_effect_counts(sft_rows: list[dict], grpo_rows: list[dict], protocol: str, k: int) -> dict:
    """What a GRPO model changed against its SFT model on the same items (rows as `read_responses` gives them, both
    sampled `k` times per item), under one protocol: `items`; `sft_right` and `sft_wrong`, the items the SFT model
    answered right and wrong greedily; `wrong_to_right` and `right_to_wrong`, the greedy verdicts that flipped each
    way; `share_change_on_right` and `share_change_on_wrong`, the mean change of the share of an item's `k` samples
    that are right over those two groups (None where a group is empty); and `k`."""
    before = {r["id"]: r for r in sft_rows}
    after = {r["id"]: r for r in grpo_rows}
    right = [i for i in before if before[i]["verdicts"][protocol]["correct"]]
    wrong = [i for i in before if not before[i]["verdicts"][protocol]["correct"]]

    def share_change(ids: list[str]) -> float | None:
        if not ids:
            return None
        return sum(after[i]["sampled_right"][protocol] - before[i]["sampled_right"][protocol] for i in ids) / (k * len(ids))

    return {"items": len(before), "sft_right": len(right), "sft_wrong": len(wrong),
            "wrong_to_right": sum(bool(after[i]["verdicts"][protocol]["correct"]) for i in wrong),
            "right_to_wrong": sum(not after[i]["verdicts"][protocol]["correct"] for i in right),
            "share_change_on_right": share_change(right), "share_change_on_wrong": share_change(wrong), "k": k}
