"""Teacher stages: caption, distill (iteration 1) and self-generate (iteration 2 onward).

OpenVLThinker describes these stages but never released them. Iteration 1: a captioner describes each image,
and a text-only reasoner that never sees the image reads caption + question and samples k chains. Iteration
i > 1: the previous iteration's GRPO model answers fresh problems from the image itself. `ovlt.stages.curation`
then verifies, selects and filters the chains into an SFT set.

Each stage reads and writes `datasets` folders through the run artifacts, writes its generations in shards
(a killed stage resumes after the last complete shard) and records counts in its manifest in one shape:
`{"in", "out", "dropped": {reason: n}, "by_source": {source: {...same...}}}` with in = out + sum(dropped).
An unreadable image, an empty response or a problem without a gold answer is counted, logged with its id and
skipped. Distill and self-generate also count, in total and per source, the chains kept, the finished responses
dropped and repaired by cause (`dropped_responses`, `repaired_responses`: `ovlt.scoring.reasoners.reasoner_chain` names
the causes) and those cut at max_new_tokens (`truncated`): an unfinished chain is dropped unread, since an answer
taken from it would come from the middle of its reasoning.

Backends: `transformers` and `vllm` go through `ovlt.engines.generation`; `scripted` teachers work on the procedural
data only (they read the problem's `scene`). They are imperfect the way the paper's are: the captioner
omits, rounds ("about 6") or misreads a share of the facts (models.captioner.fidelity, omit_rate), and the
reasoner sees only the caption and the question. It writes DENSE chains, as the tiny student learns best
from (docs/findings.md, "Learning on CPU"): first the values it relies on, then a short computation, then a
concluding sentence, then the answer, with optional restatements (verbosity) and self-reflections
("Wait, let me check ...", reflection_rate) that the filter later cuts.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from contextlib import nullcontext

import datasets

from ovlt.engines.generation import Completion, sampling_from, study_backend
from ovlt.engines.scripted import ScriptedCaptioner, ScriptedReasoner
from ovlt.ground.artifacts import Run, Stage, load_dataset_dir, save_dataset
from ovlt.ground.config import ModelSpec, StudyConfig
from ovlt.ground.layout import checkpoint_path, iteration_problems
from ovlt.ground.schema import format_question
from ovlt.scoring.prompts import student_chat, student_text
from ovlt.scoring.reasoners import ReasonerChain, reasoner_chain
from ovlt.stages.curation import sft_target_met
from ovlt.stages.registry import Outcome, output, stage
from ovlt.stages.rows import Tally, problem_rows, rows_to_dataset, run_sharded, shard_size, usable_rows

log = logging.getLogger(__name__)

CHAINS_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "chains": datasets.List(datasets.Value("string")),
})
CAPTIONS_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "caption": datasets.Value("string"),
})


# --------------------------------------------------------------------------------------------------------
# stages


def _scripted_note(spec: ModelSpec, role: str) -> dict:
    knobs = {"captioner": ("fidelity", "omit_rate"), "reasoner": ("fidelity", "reflection_rate", "verbosity")}[role]
    return {"backend": spec.backend, "name": spec.name,
            **({k: getattr(spec, k) for k in knobs} if spec.backend == "scripted" else {})}


def _backend(cfg: StudyConfig, spec: ModelSpec, model_path: str | None = None):
    """The model's generation backend, closed when the `with` block ends however it ends (its engines hold the GPUs
    the next stage needs); None for a scripted teacher."""
    return nullcontext() if spec.backend == "scripted" else study_backend(cfg, spec, model_path)


@stage("caption")
def caption(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """Describe each SFT problem's image with the captioner (prompt: cfg.caption.prompt, the paper's).

    Writes `<stage dir>/captions` (id, source, caption); problems without a usable image, without a gold
    answer, or with an empty caption are counted and skipped.
    """
    spec = cfg.models.captioner
    rows = list(problem_rows(iteration_problems(cfg, run, iteration, "sft")))
    with _backend(cfg, spec) as backend:
        if backend is None:
            captioner = ScriptedCaptioner(spec.fidelity, spec.omit_rate, seed=cfg.seed)
            describe = lambda batch, images: [captioner.describe(row) for row in batch]  # noqa: E731
        else:
            params = sampling_from(cfg.caption.sampling, cfg.seed)
            chat = student_chat(cfg.caption.prompt)
            describe = lambda batch, images: [c[0].text for c in backend.generate(  # noqa: E731
                [chat] * len(batch), [[image] for image in images], params)]

        def work(batch: list[dict]) -> list[dict]:
            usable, images, out = usable_rows(batch, caption="")
            for row, text in zip(usable, describe(usable, images) if usable else [], strict=True):
                text = (text or "").strip()
                if not text:
                    log.warning("problem %s: empty caption: skipped", row["id"])
                out.append({"id": row["id"], "source": row["source"], "status": "out" if text else "empty_response",
                            "caption": text})
            return out

        done = run_sharded(st, rows, shard_size(spec, backend), work, "caption")
    tally = Tally()
    tally.extend(done)
    kept = [r for r in done if r["status"] == "out"]
    save_dataset(rows_to_dataset(kept, CAPTIONS_FEATURES), st.dir / "captions")
    skipped = [{"id": r["id"], "reason": r["status"]} for r in done if r["status"] != "out"]
    return Outcome(tally.as_dict(), {"teacher": _scripted_note(spec, "captioner"), "skipped": skipped})


def distill_prompt(template: str, problem: dict, caption_text: str) -> list[dict]:
    """The text-only reasoner's chat: `template` (cfg.distill.prompt) with the caption and the question filled in."""
    text = template.replace("{caption}", caption_text).replace("{question}", format_question(problem))
    return student_chat(text, with_image=False)


def _read_response(text: str, choices, convert: bool) -> ReasonerChain:
    if convert:
        return reasoner_chain(text, choices)
    text = (text or "").strip()
    return ReasonerChain(text or None, "kept" if text else "empty_response")


def _chains_rows(batch: list[dict], responses: list[list[str]], convert: bool, truncated: list[int]) -> list[dict]:
    """One row per problem from its finished responses and its count of responses cut at max_new_tokens (dropped
    unread: an answer taken from an unfinished chain comes from the middle of its reasoning). With `convert`, a
    reasoner's response becomes a chain by `reasoner_chain`; otherwise (the student's own) it is kept as written.
    "drops" and "repairs" count the finished responses by cause."""
    out = []
    for row, texts, cut in zip(batch, responses, truncated, strict=True):
        read = [_read_response(t, row["choices"], convert) for t in texts]
        chains = [r.chain for r in read if r.chain]
        drops = Counter(r.cause for r in read if not r.chain)
        repairs = Counter(r.cause for r in read if r.chain and r.cause != "kept")
        if not chains:
            log.warning("problem %s: no usable response (%d of %d cut at max_new_tokens; the rest: %s): skipped",
                        row["id"], cut, cut + len(texts), dict(drops) or "none")
        status = "out" if chains else "truncated" if cut and not texts else "empty_response"
        out.append({"id": row["id"], "source": row["source"], "chains": chains, "status": status,
                    "drops": dict(drops), "repairs": dict(repairs), "truncated": cut})
    return out


def _generated_rows(batch: list[dict], generated: list[list[Completion]], convert: bool) -> list[dict]:
    """`_chains_rows` of a backend's completions: the finished ones are read, the truncated ones counted."""
    return _chains_rows(batch, [[c.text for c in cs if not c.truncated] for cs in generated], convert,
                        [sum(c.truncated for c in cs) for cs in generated])


def _draw_chains(cfg: StudyConfig, st: Stage, iteration: int, rows: list[dict], size: int, work) -> list[dict]:
    """Chains for the iteration's problems in pool order, drawn until its `sft_examples` are met (when set); a
    problem left undrawn is a row with status "not_drawn"."""
    done = run_sharded(st, rows, size, work, st.name, sft_target_met(cfg, iteration, {r["id"]: r for r in rows}))
    drawn = {r["id"] for r in done}
    return done + [{"id": r["id"], "source": r["source"], "chains": [], "status": "not_drawn", "drops": {},
                    "repairs": {}, "truncated": 0} for r in rows if r["id"] not in drawn]


def _chains_outcome(st: Stage, done: list[dict], extra: dict) -> Outcome:
    tally = Tally()
    tally.extend(done)
    kept = [r for r in done if r["status"] == "out"]
    save_dataset(rows_to_dataset(kept, CHAINS_FEATURES), st.dir / "chains")
    chains, truncated = Counter(), Counter()
    drops, repairs = defaultdict(Counter), defaultdict(Counter)
    for r in done:
        chains[r["source"]] += len(r["chains"])
        truncated[r["source"]] += r["truncated"]
        drops[r["source"]].update(r["drops"])
        repairs[r["source"]].update(r["repairs"])
    skipped = [{"id": r["id"], "reason": r["status"]} for r in done if r["status"] != "out"]
    counts = tally.as_dict(chains=dict(chains), truncated=dict(truncated),
                           dropped_responses={s: dict(c) for s, c in drops.items()},
                           repaired_responses={s: dict(c) for s, c in repairs.items()})
    responses = counts["chains"] + sum(counts["dropped_responses"].values()) + counts["truncated"]
    if counts["truncated"]:
        log.warning("%s: %d of %d responses cut at max_new_tokens (%d) and dropped; by source: %s", st.label,
                    counts["truncated"], responses, extra["max_new_tokens"], dict(sorted(truncated.items())))
    for what, by_cause in (("dropped", counts["dropped_responses"]), ("repaired", counts["repaired_responses"])):
        if by_cause:
            log.info("%s: %s %d of %d responses: %s", st.label, what, sum(by_cause.values()), responses,
                     dict(sorted(by_cause.items())))
    return Outcome(counts, {**extra, "skipped": skipped})


@stage("distill")
def distill(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """k chains per captioned problem from the text-only reasoner; writes `<stage dir>/chains`."""
    spec, sampling = cfg.models.reasoner, cfg.distill.sampling
    captions = {r["id"]: r["caption"] for r in load_dataset_dir(output(run, "caption", "captions", iteration))}
    problems = iteration_problems(cfg, run, iteration, "sft").remove_columns("image")
    rows = [{**row, "caption": captions[row["id"]]} for row in problems if row["id"] in captions]
    with _backend(cfg, spec) as backend:
        if backend is None:
            reasoner = ScriptedReasoner(spec.fidelity, spec.reflection_rate, spec.verbosity, seed=cfg.seed,
                                        stepwise=spec.stepwise, answer_with=spec.answer_with)
            work = lambda batch: _chains_rows(  # noqa: E731
                batch, [reasoner.chains(r, r["caption"], sampling.n) for r in batch], True, [0] * len(batch))
        else:
            params = sampling_from(sampling, cfg.seed)
            work = lambda batch: _generated_rows(batch, backend.generate(  # noqa: E731
                [distill_prompt(cfg.distill.prompt, r, r["caption"]) for r in batch], None, params), convert=True)
        done = _draw_chains(cfg, st, iteration, rows, shard_size(spec, backend), work)
    return _chains_outcome(st, done, {"teacher": _scripted_note(spec, "reasoner"), "k": sampling.n,
                                      "max_new_tokens": sampling.max_new_tokens,
                                      **({} if spec.backend == "scripted" else {"prompt": cfg.distill.prompt})})


@stage("self_generate")
def self_generate(cfg: StudyConfig, run: Run, st: Stage, iteration: int) -> Outcome:
    """The previous iteration's GRPO model answers this iteration's fresh problems from the image, k samples
    each; writes `<stage dir>/chains` for `curation.select`."""
    spec, sampling = cfg.models.student, cfg.self_generate.sampling
    model = f"grpo-{iteration - 1}"
    rows = list(problem_rows(iteration_problems(cfg, run, iteration, "sft")))
    params = sampling_from(sampling, cfg.seed + iteration)
    with _backend(cfg, spec, checkpoint_path(cfg, run, model)) as backend:

        def work(batch: list[dict]) -> list[dict]:
            usable, images, out = usable_rows(batch, chains=[], empty=0, truncated=0)
            if usable:
                generated = backend.generate([student_chat(student_text(r)) for r in usable],
                                             [[image] for image in images], params)
                out += _generated_rows(usable, generated, convert=False)
            return out

        done = _draw_chains(cfg, st, iteration, rows, shard_size(spec, backend), work)
    return _chains_outcome(st, done, {"model": model, "k": sampling.n, "max_new_tokens": sampling.max_new_tokens})
