"""Curation: verify and select chains, filter reflections, the data funnel, and difficulty selection for GRPO.

- `select` scores every chain with the one scorer (`ovlt.scoring.matching.score`) and keeps one chain per problem by
  `cfg.select.rule` (the paper's: the shortest correct one, by words). It records pass@1 and pass@k per
  source. A kept chain is well formed in every iteration; self-generated chains (iteration 2 on) must also be
  consistent with their own answer (a weak model guesses right often), and no source may exceed its cap on the
  kept set's share (`cfg.self_generate.max_share`; docs/ARCHITECTURE.md). The filter checks the form again after
  its cut, so no malformed chain reaches an SFT set.
- `filter_reflections` applies `cfg.filter.rule`: cut each chain at its first reflection marker and keep the
  final answer (the paper's), or drop chains over `max_words` words; under the cut, `max_words` (when set) drops
  cut chains still longer than that. It writes the SFT set in TRL's vision
  prompt/completion format and the funnel (problems -> captioned -> with chains -> with a correct chain ->
  selected -> kept) per source.
- `select_hard` estimates each GRPO candidate's pass rate under the SFT checkpoint and keeps the problems
  whose rate (optionally corrected for guessing among the options) lies in one of `cfg.select_hard.bands`.

Counts in every manifest have the shape of `ovlt.stages.rows.Tally`: in = out + sum(dropped).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter, defaultdict

import datasets

from ovlt.engines.generation import sampling_from, study_backend
from ovlt.engines.scripted import stated_facts_right
from ovlt.ground.artifacts import Run, Stage, atomic_write_text, load_dataset_dir, save_dataset
from ovlt.ground.config import StudyConfig
from ovlt.ground.layout import checkpoint_path, iteration_problems
from ovlt.ground.schema import OPTION_LETTER, option_letters
from ovlt.scoring.chains import answer_text, chain_text, think_text, well_formed
from ovlt.scoring.extraction import extract, sentences
from ovlt.scoring.matching import match, score
from ovlt.scoring.prompts import assistant_turn, student_chat, student_text
from ovlt.scoring.statistics import pass_at_k
from ovlt.stages.registry import Outcome, chains_stage, output, stage
from ovlt.stages.rows import (
    Tally,
    open_image,
    problem_rows,
    rows_to_dataset,
    run_sharded,
    shard_size,
    usable_rows,
)

log = logging.getLogger(__name__)

_OPTION_MARK = re.compile(rf"\s*\({OPTION_LETTER}\)$")  # a trailing option letter, as in "red (B)"


# --------------------------------------------------------------------------------------------------------
# chains: parts, conclusion, consistency


def words(text: str) -> int:
    return len(text.split())


def _as_option(span: str, choices: list[str], letter_first: bool) -> str:
    """A span as an option text when it names one (an option letter or text), else the span itself."""
    letters = list(option_letters(len(choices)))
    by_text = next((c for c in choices if c.lower() == span.lower()), None)
    by_letter = choices[letters.index(span)] if span in letters else None
    first, second = (by_letter, by_text) if letter_first else (by_text, by_letter)
    return first or second or span


def concluded_answer(chain: str, choices=()) -> str:
    """What the last sentence of the reasoning concludes: the value after its last " is " ("The tallest bar
    is red." -> "red", "..., so the answer is No." -> "No"), else what `ovlt.scoring.extraction.extract` finds in it."""
    said = sentences(think_text(chain))
    if not said:
        return ""
    last = said[-1].strip()
    value = last.rsplit(" is ", 1)[1] if " is " in last else extract(last, choices).text
    value = _OPTION_MARK.sub("", value.strip().rstrip(".!").strip())  # "red (B)": the red bar, marked as option B
    return value[4:] if value.lower().startswith("the ") else value


def is_consistent(chain: str, problem: dict) -> bool:
    """Whether the reasoning's concluding value equals the chain's own <answer> (not the gold answer).

    Option letters in <answer> are read as the scorer reads them (letter first); a conclusion names the
    option's text first ("The tallest bar is B." names a bar called B, not option B).
    """
    choices = list(problem.get("choices") or [])
    given, concluded = answer_text(chain), concluded_answer(chain, choices)
    if not given or not concluded:
        return False
    if choices:
        given = _as_option(extract(f"<answer>{given}</answer>", choices).text, choices, letter_first=True)
        concluded = _as_option(concluded, choices, letter_first=False)
        return given.lower() == concluded.lower()
    precision = problem.get("precision", -1)
    return match(concluded, given, problem["answer_type"], (), -1 if precision is None else precision)


# --------------------------------------------------------------------------------------------------------
# selection


def choose(chains: list[str], ok: list[bool], rule: str, rng: random.Random) -> int | None:
    """Index of the chain `rule` keeps among those marked ok (None if none): shortest/longest by words
    (first on ties), the second longest (the authors' released rule: the longest dropped, a lone chain kept; on
    ties the later chain counts as the longer), first, or random."""
    candidates = [i for i, good in enumerate(ok) if good]
    if not candidates:
        return None
    if rule == "shortest_correct":
        return min(candidates, key=lambda i: (words(chains[i]), i))
    if rule == "second_longest_correct":
        by_length = sorted(candidates, key=lambda i: (words(chains[i]), i))
        return by_length[-2] if len(by_length) > 1 else by_length[0]
    if rule == "longest_correct":
        return max(candidates, key=lambda i: (words(chains[i]), -i))
    if rule == "first_correct":
        return candidates[0]
    if rule == "random_correct":
        return rng.choice(candidates)
    raise ValueError(f"unknown selection rule {rule!r}")


def cap_shares(ids_by_source: dict[str, list[str]], max_share: dict[str, float], seed: int) -> dict[str, list[str]]:
    """The largest subset in which no source named in `max_share` exceeds its share of the whole.

    Sources not named are uncapped and kept whole, as is any source below its cap: a rare source never cuts the
    others down to its size. When the sources that have chains are all capped and their caps add up to less than
    one, no set meets them; they are scaled to add up to one (and a warning says so). Which ids a capped source keeps is a seeded draw, returned in input order.
    """
    sizes = {s: len(ids) for s, ids in ids_by_source.items() if ids}
    caps = {s: share for s, share in max_share.items() if s in sizes}
    if sizes and len(caps) == len(sizes) and sum(caps.values()) < 1:  # no set can meet them: keep their proportions
        log.warning("cap_shares: the caps of the sources with chains (%s) add up to %.2f < 1; scaled to add up to one",
                    ", ".join(sorted(caps)), sum(caps.values()))
        caps = {s: share / sum(caps.values()) for s, share in caps.items()}

    def kept(total: int) -> dict[str, int]:
        return {s: min(n, int(caps[s] * total + 1e-9)) if s in caps else n for s, n in sizes.items()}

    # The largest total whose capped counts add up to at least that total: searched from the top down.
    total = next((t for t in range(sum(sizes.values()), 0, -1) if sum(kept(t).values()) >= t), 0)
    takes = kept(total)
    if sum(takes.values()) < 0.75 * sum(sizes.values()):
        log.warning("cap_shares: the caps keep %d of %d chains (%s); the sources without caps are too few to fill "
                    "the rest", sum(takes.values()), sum(sizes.values()),
                    ", ".join(f"{s} {takes[s]}/{n}" for s, n in sorted(sizes.items())))
    out = {}
    for source, take in takes.items():
        ids = ids_by_source[source]
        if take < len(ids):
            chosen = set(random.Random(f"balance-{seed}-{source}").sample(ids, take))
            ids = [i for i in ids if i in chosen]
        if ids:
            out[source] = ids
    return out


SELECTED_FEATURES = datasets.Features({
    "id": datasets.Value("string"), "source": datasets.Value("string"), "chain": datasets.Value("string"),
    "n_chains": datasets.Value("int32"), "n_correct": datasets.Value("int32")})


def judge_chains(cfg: StudyConfig, iteration: int, item: dict, problem: dict) -> dict:
    """One problem's chains scored and one kept by cfg.select.rule: a select row with its status ("out",
    "no_correct_chain", "not_well_formed", "not_verified") and its chain counts. A kept chain is correct and well
    formed in every iteration (an SFT set teaches the format); self-generated ones (iteration 2 on) must also be
    consistent with their own answer."""
    chains = item["chains"]
    correct = [score(c, problem["answer"], problem["answer_type"], problem["choices"], problem["precision"]).correct
               for c in chains]
    formed = [good and well_formed(c) for c, good in zip(chains, correct, strict=True)]
    ok = [good and is_consistent(c, problem) for c, good in zip(chains, formed, strict=True)] if iteration > 1 \
        else formed
    index = choose(chains, ok, cfg.select.rule, random.Random(f"select-{cfg.seed}-{item['id']}"))
    status = "out" if index is not None else "no_correct_chain" if not any(correct) else \
        "not_well_formed" if not any(formed) else "not_verified"
    chain = chains[index] if index is not None else ""
    return {"id": item["id"], "source": item["source"], "chain": chain, "status": status,
            "n_chains": len(correct), "n_correct": sum(correct), "verified": sum(ok),
            "facts_right": stated_facts_right(chain, problem["scene"]) if chain else None}


def balance(cfg: StudyConfig, iteration: int, rows: list[dict]) -> None:
    """Self-generated sets (iteration 2 on): mark "balance" the kept rows over their source's share cap."""
    if iteration == 1:
        return
    kept = defaultdict(list)
    for row in rows:
        if row["status"] == "out":
            kept[row["source"]].append(row["id"])
    balanced = {i for ids in cap_shares(kept, cfg.self_generate.max_share, cfg.seed).values() for i in ids}
    for row in rows:
        if row["status"] == "out" and row["id"] not in balanced:
            row["status"] = "balance"


def sft_target_met(cfg: StudyConfig, iteration: int, problems: dict[str, dict]):
    """For a generating stage's `run_sharded`: whether the chains so far already give the iteration's
    `sft_examples` after selection, balance and the reflection filter (None when no target is set). Each
    problem's chains are judged once."""
    target = cfg.schedule[iteration - 1].sft_examples
    if target is None:
        return None
    judged: dict[str, dict | None] = {}

    def enough(done: list[dict]) -> bool:
        for row in done:
            if row["id"] not in judged:
                judged[row["id"]] = judge_chains(cfg, iteration, row, problems[row["id"]]) \
                    if row["status"] == "out" else None
        rows = [dict(r) for r in judged.values() if r is not None]
        balance(cfg, iteration, rows)
        return sum(r["status"] == "out" and filter_chain(r["chain"], cfg)[2] == "out" for r in rows) >= target

    return enough


@stage("select")
def select(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Score all chains; keep one per problem by cfg.select.rule. Writes `<stage dir>/selected`."""
    chains = load_dataset_dir(output(run, chains_stage(iteration), "chains", iteration))
    problems = {r["id"]: r for r in iteration_problems(cfg, run, iteration, "sft").remove_columns("image")}
    k = getattr(cfg, chains_stage(iteration)).sampling.n  # samples per problem of the stage that wrote the chains
    rows, n_correct = [], defaultdict(list)
    stats = defaultdict(Counter)
    for item in chains:
        row = judge_chains(cfg, iteration, item, problems[item["id"]])
        n_correct[row["source"]].append(row["n_correct"])
        stats[row["source"]].update(chains=row["n_chains"], correct_chains=row["n_correct"],
                                    with_correct=row["n_correct"] > 0, verified_chains=row["verified"])
        rows.append(row)
    balance(cfg, iteration, rows)
    tally = Tally()
    tally.extend(rows)
    selected = [r for r in rows if r["status"] == "out"]
    for r in selected:
        stats[r["source"]]["facts_right"] += bool(r["facts_right"])
    save_dataset(rows_to_dataset(selected, SELECTED_FEATURES), st.dir / "selected")
    extra = {key: {s: c[key] for s, c in stats.items()} for key in
             ("chains", "correct_chains", "with_correct", "verified_chains", "facts_right")}
    passes = {s: pass_at_k(v, k) for s, v in sorted(n_correct.items())}
    passes["all"] = pass_at_k([c for v in n_correct.values() for c in v], k)
    for source, p in passes.items():
        log.info("%s pass@1 %.3f, pass@%d %.3f over %d problems (%s)", source, p["pass@1"], k, p["pass@k"],
                 p["problems"], chains_stage(iteration))
    return Outcome(tally.as_dict(**extra), {"pass_at_k": passes, "rule": cfg.select.rule, "verified": iteration > 1})


# --------------------------------------------------------------------------------------------------------
# the reflection filter


def count_markers(text: str, markers) -> int:
    """Occurrences of the reflection markers (case-sensitive, as written in the config)."""
    return sum(text.count(m) for m in markers)


def cut_reflections(chain: str, markers) -> tuple[str | None, str]:
    """(chain cut at the first marker in its reasoning with its final answer kept, the text cut away).

    The chain comes back unchanged when it has no marker; None when nothing is left before the marker.
    """
    think, answer = think_text(chain), answer_text(chain)
    hits = [think.find(m) for m in markers if m in think]
    if not hits:
        return chain, ""
    at = min(hits)
    kept, removed = think[:at].rstrip(), think[at:]
    if not kept or answer is None:
        return None, removed
    return chain_text(kept, answer), removed


CHAT_FEATURE = [{"role": datasets.Value("string"),
                 "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}]
SFT_FEATURES = datasets.Features({
    "prompt": CHAT_FEATURE,
    "completion": CHAT_FEATURE,
    "images": datasets.List(datasets.Image()),
    "id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "words": datasets.Value("int32"),
    "tokens": datasets.Value("int32"),
    "reflections_before": datasets.Value("int32"),
    "reflections_after": datasets.Value("int32"),
})


def funnel(steps: list[tuple[str, dict, str | None]]) -> dict:
    """The data funnel from stage counts: `steps` is [(step name, stage counts, which count)], where "which"
    is "in", "out" or an extra count (e.g. "with_correct"). Each step records its count and the drops
    between it and the step before (the stage's dropped reasons, split where one stage makes two steps)."""
    sources = sorted({s for _, counts, _ in steps for s in counts["by_source"]})

    def one(counts_of) -> list[dict]:
        out, attributed = [], defaultdict(set)  # per stage: drop reasons already shown at an earlier step
        for name, counts, which in steps:
            c = counts_of(counts)
            if which == "in":
                dropped = {}
            elif which == "with_correct":
                dropped = {"no_correct_chain": c.get("dropped", {}).get("no_correct_chain", 0)}
            else:
                dropped = {k: v for k, v in c.get("dropped", {}).items() if k not in attributed[id(counts)]}
            attributed[id(counts)] |= set(dropped)
            out.append({"step": name, "count": c.get(which, 0), "dropped": dropped})
        return out

    return {"total": one(lambda counts: counts),
            "by_source": {s: one(lambda counts, s=s: counts["by_source"].get(s, {})) for s in sources}}


def funnel_errors(table: dict) -> list[str]:
    """Where a funnel does not add up: each step's count must equal the step before minus its drops."""
    errors = []
    for where, steps in [("total", table["total"]), *table["by_source"].items()]:
        for before, step in zip(steps, steps[1:], strict=False):
            lost = sum(step["dropped"].values())
            if before["count"] - lost != step["count"]:
                errors.append(f"{where}: {before['step']} {before['count']} - dropped {lost} != "
                              f"{step['step']} {step['count']}")
    return errors


def _funnel_steps(run: Run, iteration: int, own: dict) -> list[tuple[str, dict, str]]:
    select_counts = run.manifest("select", iteration)["counts"]
    if chains_stage(iteration) == "distill":
        caption_counts = run.manifest("caption", iteration)["counts"]
        head = [("problems", caption_counts, "in"), ("captioned", caption_counts, "out"),
                ("with_chains", run.manifest("distill", iteration)["counts"], "out")]
    else:
        generated = run.manifest("self_generate", iteration)["counts"]
        head = [("problems", generated, "in"), ("with_chains", generated, "out")]
    return head + [("with_correct", select_counts, "with_correct"), ("selected", select_counts, "out"),
                   ("kept", own, "out")]


def _student_tokenizer(cfg: StudyConfig, run: Run):
    from ovlt.engines.models import load_processing_class

    processor = load_processing_class(checkpoint_path(cfg, run, "base"), cfg.models.student.trust_remote_code)
    return getattr(processor, "tokenizer", processor)


def filter_chain(chain: str, cfg: StudyConfig) -> tuple[str | None, str, str]:
    """(the chain cfg.filter keeps, or None; the text cut away; status "out", "empty_after_cut", "over_max_words" or
    "not_well_formed"). Under `cut_reflections`, `max_words` (when set) applies to the cut chain."""
    kept, removed, status = chain, "", "out"
    if cfg.filter.rule == "cut_reflections":
        kept, removed = cut_reflections(chain, cfg.filter.markers)
        status = "out" if kept else "empty_after_cut"
    if kept and cfg.filter.rule != "none" and cfg.filter.max_words is not None and words(kept) > cfg.filter.max_words:
        kept, status = None, "over_max_words"
    if kept and not well_formed(kept):  # an SFT set teaches the format: no chain reaches it malformed
        kept, status = None, "not_well_formed"
    return kept, removed, status


@stage("filter")
def filter_reflections(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Apply cfg.filter.rule to the selected chains and write the SFT set at `<stage dir>/sft`.

    Columns: prompt, completion (TRL conversational prompt/completion), images, id, source, words, tokens
    (student tokenizer), reflections_before, reflections_after. What was cut goes to `cut.jsonl`; the
    funnel goes into the manifest.
    """
    rule, markers = cfg.filter.rule, cfg.filter.markers
    target = cfg.schedule[iteration - 1].sft_examples
    selected = load_dataset_dir(output(run, "select", "selected", iteration))
    chains = {r["id"]: r for r in selected}
    problems = iteration_problems(cfg, run, iteration, "sft")
    tokenizer = _student_tokenizer(cfg, run)
    tally, records, cut, inconsistent = Tally(), [], [], Counter()
    before_words, before_markers = Counter(), Counter()
    for row in problem_rows(problems):
        if row["id"] not in chains:
            continue
        chain, source = chains[row["id"]]["chain"], row["source"]
        before_words[source] += words(chain)
        before_markers[source] += count_markers(chain, markers)
        kept, removed, status = filter_chain(chain, cfg)
        if kept and target is not None and len(records) >= target:
            kept, status = None, "over_target"
        image = open_image(row) if kept else None
        if kept and image is None:
            status = "unreadable_image"
        tally.add(source, status)
        if removed:
            cut.append({"id": row["id"], "source": source, "kept": kept, "removed": removed})
        if status != "out":
            continue
        inconsistent[source] += not is_consistent(kept, row)
        records.append({"prompt": student_chat(student_text(row)), "completion": assistant_turn(kept),
                        "images": [image], "id": row["id"], "source": source, "words": words(kept),
                        "tokens": len(tokenizer(kept).input_ids),
                        "reflections_before": count_markers(chain, markers),
                        "reflections_after": count_markers(kept, markers)})
    save_dataset(rows_to_dataset(records, SFT_FEATURES), st.dir / "sft")
    atomic_write_text(st.dir / "cut.jsonl", "".join(json.dumps(c) + "\n" for c in cut))
    after_words, after_markers = Counter(), Counter()
    for r in records:
        after_words[r["source"]] += r["words"]
        after_markers[r["source"]] += r["reflections_after"]
    counts = tally.as_dict(words_before=dict(before_words), words_after=dict(after_words),
                           reflections_before=dict(before_markers), reflections_after=dict(after_markers),
                           inconsistent_after=dict(inconsistent), cut=dict(Counter(c["source"] for c in cut)))
    table = funnel(_funnel_steps(run, iteration, counts))
    problems_left = funnel_errors(table)
    if problems_left:
        raise AssertionError("the data funnel does not add up:\n" + "\n".join(problems_left))
    log.info("filter (%s): %d of %d kept; words %d -> %d, reflection markers %d -> %d", rule, counts["out"],
             counts["in"], counts["words_before"], counts["words_after"], counts["reflections_before"],
             counts["reflections_after"])
    extra = {"funnel": table, "rule": rule}
    if target is not None:
        extra["target"] = sft_shortfall(cfg, run, iteration, len(records))
    return Outcome(counts, extra)


def sft_shortfall(cfg: StudyConfig, run: Run, iteration: int, kept: int) -> dict:
    """The iteration's SFT target against what was kept, and why any shortfall: the problems ran out, or
    chains were lost after drawing stopped (the balance cap or an unreadable image). Logged as a WARNING."""
    plan = cfg.schedule[iteration - 1]
    not_drawn = run.manifest(chains_stage(iteration), iteration)["counts"]["dropped"].get("not_drawn", 0)
    short = max(0, plan.sft_examples - kept)
    out = {"examples": plan.sft_examples, "kept": kept, "shortfall": short, "problems": plan.sft_problems,
           "not_drawn": not_drawn}
    if short:
        out["reason"] = (f"the iteration's {plan.sft_problems} problems (schedule.sft_problems) ran out"
                         if not not_drawn else "chains were lost after drawing stopped (balance cap or unreadable "
                         "images)")
        log.warning("filter: iteration %d keeps %d of the %d SFT examples wanted: %d short; %s", iteration, kept,
                    plan.sft_examples, short, out["reason"])
    return out


# --------------------------------------------------------------------------------------------------------
# difficulty selection for GRPO


def pass_rate(completions: list[str], problem: dict, protocol: str = "strict") -> float:
    """Share of completions the scorer marks correct for `problem`."""
    if not completions:
        raise ValueError(f"problem {problem.get('id')}: no completions to estimate a pass rate from")
    hits = sum(score(c, problem["answer"], problem["answer_type"], problem.get("choices") or (),
                     problem.get("precision", -1), protocol).correct for c in completions)
    return hits / len(completions)


def above_chance(rate: float, problem: dict) -> float:
    """A pass rate corrected for guessing: 0 at the rate of picking one of the options at random (or below it),
    1 at always right. Free-form answers have no guess rate; their pass rate is returned as is."""
    options = len(problem.get("choices") or ()) if problem["answer_type"] == "multiple_choice" else 0
    guess = 1 / options if options > 1 else 0.0
    return max(0.0, (rate - guess) / (1 - guess))


def select_by_band(pass_rates: dict[str, float], bands, target: int, seed: int,
                   include_never_solved: bool = False, draw: str = "") -> list[str]:
    """Ids whose pass rate lies in one of `bands` ([low, high], inclusive), at most `target` of them.

    A rate of 0 is kept only with `include_never_solved` (it carries no GRPO signal). When more qualify, a
    seeded draw picks `target` (`draw` names the set, so that each named set draws on its own); ids come back in
    input order.
    """
    eligible = [i for i, rate in pass_rates.items()
                if any(low <= rate <= high for low, high in bands) and (rate > 0 or include_never_solved)]
    if len(eligible) > target:
        chosen = set(random.Random(f"select-hard-{seed}" + (f"-{draw}" if draw else "")).sample(eligible, target))
        eligible = [i for i in eligible if i in chosen]
    return eligible


GRPO_FEATURES = datasets.Features({
    "prompt": CHAT_FEATURE,
    "image": datasets.Image(),
    "answer": datasets.Value("string"),
    "answer_type": datasets.Value("string"),
    "choices": datasets.List(datasets.Value("string")),
    "precision": datasets.Value("int32"),
    "id": datasets.Value("string"),
    "source": datasets.Value("string"),
})

@stage("select_hard")
def select_hard(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Keep GRPO candidates the SFT-i model solves sometimes; writes the GRPO set at `<stage dir>/grpo`."""
    spec, sh = cfg.models.student, cfg.select_hard
    plan = cfg.schedule[iteration - 1]
    problems = iteration_problems(cfg, run, iteration, "grpo")
    params = sampling_from(sh.sampling, cfg.seed + 1000 * iteration)
    # closed however the block ends: its engines hold the GPUs the next stage trains on
    with study_backend(cfg, spec, checkpoint_path(cfg, run, f"sft-{iteration}")) as backend:

        def work(batch: list[dict]) -> list[dict]:
            usable, images, out = usable_rows(batch, pass_rate=None, above_chance=None)
            if usable:
                generated = backend.generate([student_chat(student_text(r)) for r in usable],
                                             [[image] for image in images], params)
                for r, cs in zip(usable, generated, strict=True):
                    rate = pass_rate([c.text for c in cs], r)
                    out.append({"id": r["id"], "source": r["source"], "status": "out", "pass_rate": rate,
                                "above_chance": above_chance(rate, r)})
            return out

        done = run_sharded(st, list(problem_rows(problems)), shard_size(spec, backend), work, "select_hard")
    band_on = "above_chance" if sh.correct_for_guessing else "pass_rate"
    rates = {r["id"]: r[band_on] for r in done if r["status"] == "out"}
    chosen = set(select_by_band(rates, sh.bands, plan.grpo_problems, cfg.seed, sh.include_never_solved))
    tally = Tally()
    for r in done:
        tally.add(r["source"], r["status"] if r["status"] != "out" else "out" if r["id"] in chosen else "out_of_band")
    histogram = defaultdict(Counter)  # of the rate the bands apply to
    for r in done:
        if r["pass_rate"] is not None:
            histogram[r["source"]][f"{r[band_on]:.3f}"] += 1
            histogram["all"][f"{r[band_on]:.3f}"] += 1
    atomic_write_text(st.dir / "pass_rates.jsonl", "".join(json.dumps(r) + "\n" for r in done))
    in_sets = named_sets(rates, sh, plan.grpo_problems, cfg.seed)
    wanted = chosen.union(*in_sets.values())
    grpo_rows = [{**row, "prompt": student_chat(student_text(row)), "image": open_image(row)}
                 for row in problem_rows(problems) if row["id"] in wanted]
    save_dataset(rows_to_dataset([r for r in grpo_rows if r["id"] in chosen], GRPO_FEATURES), st.dir / "grpo")
    sets = {}
    for name, ids in in_sets.items():
        save_dataset(rows_to_dataset([r for r in grpo_rows if r["id"] in ids], GRPO_FEATURES), st.dir / "sets" / name)
        sets[name] = {"problems": len(ids), "by_source": dict(Counter(r["source"] for r in grpo_rows if r["id"] in ids))}
        log.info("select_hard: set %s, %d problems", name, len(ids))
    counts = tally.as_dict()
    log.info("select_hard: %d of %d candidates in bands %s (target %d)", counts["out"], counts["in"], sh.bands,
             plan.grpo_problems)
    if counts["out"] < plan.grpo_problems:
        log.warning("select_hard: only %d problems in band, fewer than the %d planned", counts["out"],
                    plan.grpo_problems)
    return Outcome(counts, {"histogram": {s: dict(sorted(h.items())) for s, h in sorted(histogram.items())},
                            "banded_on": band_on, "model": f"sft-{iteration}", "k": sh.sampling.n,
                            "target": {"problems": plan.grpo_problems, "kept": counts["out"],
                                       "shortfall": max(0, plan.grpo_problems - counts["out"])},
                            **({"sets": sets} if sets else {})})


def named_sets(rates: dict[str, float], sh, default_target: int, seed: int) -> dict[str, set[str]]:
    """The ids of each of `select_hard.sets`, drawn in order, each from the candidates the sets before it left."""
    out, taken = {}, set()
    for hard_set in sh.sets:
        left = {i: rate for i, rate in rates.items() if i not in taken}
        ids = select_by_band(left, hard_set.bands, hard_set.problems or default_target, seed, sh.include_never_solved,
                             draw=hard_set.name)
        out[hard_set.name] = set(ids)
        taken.update(ids)
    return out
