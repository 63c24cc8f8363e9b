"""R1's chains as R1 writes them: DeepSeek-R1-Distill's responses read into the student's think/answer format
(`ovlt.scoring.reasoners.reasoner_chain`), its real chat template in both revisions, and only well-formed chains in an
SFT set, in every iteration.

The corpus is written in the shapes R1-Distill's responses take: the reply starts inside the reasoning when the
template opened `<think>` (its later revision) or opens it itself (its first); the final answer follows `</think>` as
`\\boxed{}` (letters, numbers, LaTeX, several boxes), "**Final Answer**" or an "Answer:" line; asked for the student's
tags it restates them; it names or drafts tags while reasoning; it skips the reasoning; it never closes it; it mixes
languages.
"""

from pathlib import Path

import pytest
from helpers import teachers_config as tiny_config
from helpers import teachers_run as make_run

from ovlt.engines import models
from ovlt.engines.generation import Backend, Completion, render_prompt
from ovlt.ground.artifacts import load_dataset_dir
from ovlt.ground.config import R1_DISTILL_PROMPT
from ovlt.ground.schema import format_question
from ovlt.scoring.chains import well_formed
from ovlt.scoring.reasoners import REASONER_DROPS, REASONER_REPAIRS, reasoner_chain
from ovlt.stages import curation, teachers

REASONING = ("Okay, so I need to find which bar is the tallest. From the description, the red bar is 3 and the blue "
             "bar is 5. Since 5 is greater than 3, the blue bar is the tallest.")
SUMMARY = "The blue bar is the tallest."

# (shape, response as generated, choices, the chain it becomes or the cause it is dropped for)
CORPUS = [
    ("later template: the reply starts inside <think>, a boxed number",
     f"{REASONING}\n</think>\n\nThe blue bar is 5, so the answer is 5.\n\n\\boxed{{5}}", (),
     f"<think>{REASONING}</think>\n<answer>5</answer>"),
    ("first template: the reply opens <think> itself, **Final Answer**",
     f"<think>\n{REASONING}\n</think>\n\n**Final Answer**\nThe tallest bar is \\boxed{{B}}.", ("red", "blue"),
     f"<think>{REASONING}</think>\n<answer>B</answer>"),
    ("a boxed option letter after a sentence naming it",
     f"{REASONING}\n</think>\n\nThe correct option is B.\n\n\\boxed{{B}}", ("red", "blue"),
     f"<think>{REASONING}</think>\n<answer>B</answer>"),
    ("a boxed LaTeX expression",
     "The triangle is equilateral, so the height over the side is sin 60.\n</think>\n\n"
     "\\boxed{\\frac{\\sqrt{3}}{2}}", (),
     "<think>The triangle is equilateral, so the height over the side is sin 60.</think>\n"
     "<answer>\\frac{\\sqrt{3}}{2}</answer>"),
    ("several boxes: the last one answers",
     "The legs are 3 and 4.\n</think>\n\nThe legs are \\boxed{3} and \\boxed{4}, so the hypotenuse is \\boxed{5}.",
     (), "<think>The legs are 3 and 4.</think>\n<answer>5</answer>"),
    ("an Answer: line",
     "Option C names a circle, which matches the description.\n</think>\n\nAnswer: C", ("square", "line", "circle"),
     "<think>Option C names a circle, which matches the description.</think>\n<answer>C</answer>"),
    ("The answer is ... in prose",
     "Twelve apples in all.\n</think>\n\nThe answer is 12.", (), "<think>Twelve apples in all.</think>\n<answer>12</answer>"),
    ("reasoning mixing languages is kept as written",
     "好的，我需要比较两个柱子。The red bar is 3 and the blue bar is 5, 所以蓝色的最高。\n</think>\n\n\\boxed{5}", (),
     "<think>好的，我需要比较两个柱子。The red bar is 3 and the blue bar is 5, 所以蓝色的最高。</think>\n<answer>5</answer>"),
    ("asked for the student's tags, R1 restates a think block after its reasoning",
     f"{REASONING}\n</think>\n\n<think>\n{SUMMARY}\n</think>\n<answer>5</answer>", (), "restated_think"),
    ("a restated block with text around it, the answer after it",
     f"<think>\n{REASONING}\n</think>\n\nIn the requested format:\n<think>{SUMMARY}</think>\n\n"
     "**Final Answer**\n\\boxed{5}", (), "restated_think"),
    ("the reasoning names the tags", "The user wants the reasoning inside <think> </think> tags and the answer inside "
     f"<answer> </answer> tags. {REASONING}\n</think>\n\n<answer>5</answer>", (), "tags_in_reasoning"),
    ("the reasoning names a closing tag alone",
     f"I must close my reasoning with </think> before answering. {REASONING}\n</think>\n\n\\boxed{{5}}", (),
     "tags_in_reasoning"),
    ("the reasoning drafts an answer tag",
     f"{REASONING} So <answer>5</answer>. Let me double-check: 5 > 3, yes.\n</think>\n\n\\boxed{{5}}", (),
     "tags_in_reasoning"),
    ("an empty think: the reasoning skipped", "<think>\n\n</think>\n\nThe answer is \\boxed{5}.", (), "empty_reasoning"),
    ("a think that never closes", f"<think>\n{REASONING} So the answer is 5.", (), "unclosed_think"),
    ("a think that never closes, under the template that opened it", f"{REASONING} So the answer is \\boxed{{5}}.", (),
     "unclosed_think"),
    ("nothing after the reasoning", f"{REASONING}\n</think>\n\n", (), "no_answer"),
    ("a final answer that declines", f"{REASONING}\n</think>\n\nI cannot determine the answer from the description.",
     (), "refusal"),
    ("already in the student's format (the embedded default's scripted reasoner)",
     "<think>red 3, blue 5</think>\n<answer>5</answer>", (), "<think>red 3, blue 5</think>\n<answer>5</answer>"),
]


@pytest.mark.parametrize(("response", "choices", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_each_r1_shape_becomes_the_stated_chain_or_is_dropped_for_the_stated_cause(response, choices, expected):
    read = reasoner_chain(response, choices)
    if expected in REASONER_DROPS:
        assert (read.chain, read.cause) == (None, expected)
    elif expected in REASONER_REPAIRS:
        # The reasoning kept is R1's own, not the restatement; the answer is read from what follows it.
        assert (read.chain, read.cause) == (f"<think>{REASONING}</think>\n<answer>5</answer>", expected)
    else:
        assert (read.chain, read.cause) == (expected, "kept")
    assert read.chain is None or well_formed(read.chain)


def test_the_corpus_holds_every_cause():
    assert len(CORPUS) >= 12
    causes = {c[3] for c in CORPUS}
    assert set(REASONER_DROPS) - {"empty_response"} <= causes and set(REASONER_REPAIRS) <= causes


# --- R1-Distill's chat template, both revisions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def reasoners(tmp_path_factory):
    root = tmp_path_factory.mktemp("reasoners")
    return {revision: models.build_tiny_reasoner(root, revision=revision) for revision in models.R1_DISTILL_REVISIONS}


PROBLEM = {"question": "Which bar is the tallest?", "choices": ["red", "blue"], "answer": "blue"}


@pytest.mark.parametrize("revision", list(models.R1_DISTILL_REVISIONS))
def test_the_distill_prompt_under_each_revision_of_r1s_template(reasoners, revision):
    tokenizer = models.load_processing_class(reasoners[revision])
    chat = teachers.distill_prompt(R1_DISTILL_PROMPT, PROBLEM, "A bar chart: red 3, blue 5.")
    text = chat[0]["content"][0]["text"]
    # DeepSeek's usage notes: no system prompt, the boxed-answer instruction; the caption and the question reach it.
    assert [m["role"] for m in chat] == ["user"] and text.endswith("put your final answer within \\boxed{}.")
    assert "A bar chart: red 3, blue 5." in text and format_question(PROBLEM) in text and "<think>" not in text
    rendered = render_prompt(tokenizer, chat)
    opens = {"opens_think": "<think>\n", "first": ""}[revision]
    assert rendered == f"{models.REASONER_USER}{text}{models.REASONER_ASSISTANT}{opens}" or \
        rendered == f"{models.REASONER_BOS}{models.REASONER_USER}{text}{models.REASONER_ASSISTANT}{opens}"
    ids = tokenizer(rendered).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1  # one BOS, either way
    # R1's own template: a system message goes before the first user turn; an assistant turn keeps only what follows
    # its last </think>.
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nA"},
             {"role": "system", "content": "S"}]
    assert tokenizer.apply_chat_template(turns, tokenize=False) == \
        f"{models.REASONER_BOS}S{models.REASONER_USER}Q{models.REASONER_ASSISTANT}\n\nA{models.REASONER_EOS}"


def test_the_current_revision_is_the_one_trl_stores_as_r1_distills_original():
    """TRL keeps each model's original template to recognise it; R1-Distill's (trl/chat_templates) is the current
    revision, byte for byte; the first revision differs only in its generation prompt."""
    import trl

    stored = Path(trl.__file__).parent / "chat_templates" / "deepseek_r1_distill.jinja"
    if not stored.exists():
        pytest.skip(f"this TRL ({trl.__version__}) stores no deepseek_r1_distill.jinja")
    current, first = (models.R1_DISTILL_REVISIONS[r][0] for r in ("opens_think", "first"))
    assert current == stored.read_text()
    assert first == current.replace("{{'<｜Assistant｜><think>\\n'}}{% endif %}", "{{'<｜Assistant｜>'}}{% endif %}")


def test_an_unknown_revision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown R1-Distill template revision 'v3'; known: first, opens_think"):
        models.build_tiny_reasoner(tmp_path, revision="v3")


# --- defects 1 and 2 through the stages: what reaches the SFT set ------------------------------------------------


class R1Backend(Backend):
    """Answers each distill prompt (found by its caption and question) with R1-shaped responses around the problem's
    gold answer."""

    engines = 1

    def __init__(self, gold_by_question: dict[str, str], shapes):
        self.gold_by_question, self.shapes = gold_by_question, shapes

    def generate(self, prompts, images, params):
        out = []
        for chat in prompts:
            text = chat[0]["content"][0]["text"]
            gold = next(a for q, a in self.gold_by_question.items() if q in text)
            out.append([Completion(shape(gold), 100, truncated=False) for shape in self.shapes])
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory):
    return models.build_tiny(tmp_path_factory.mktemp("tiny"))


def _sft_set(tmp_path, repo, student_checkpoint, monkeypatch, shapes):
    cfg = tiny_config(repo, n_sft=8, models={"captioner": {"batch_size": 2}, "student": {"batch_size": 4},
                                             "reasoner": {"name": "some/reasoner", "backend": "transformers",
                                                          "batch_size": 4}},
                      distill={"sampling": {"n": len(shapes)}})
    run = make_run(tmp_path / "run", cfg, student_checkpoint)
    teachers.caption(cfg, run, 1)
    captions = {r["id"]: r["caption"] for r in load_dataset_dir(run.stage_dir("caption", 1) / "captions")}
    pool = load_dataset_dir(run.stage_dir("decontaminate") / "train")
    gold = {f"{captions[r['id']]}\n\n{format_question(r)}": r["answer"] for r in pool if r["id"] in captions}
    monkeypatch.setattr(teachers, "study_backend", lambda cfg, spec, model_path=None: R1Backend(gold, shapes))
    distilled = teachers.distill(cfg, run, 1)
    curation.select(cfg, run, 1)
    curation.filter_reflections(cfg, run, 1)
    sft = load_dataset_dir(run.stage_dir("filter", 1) / "sft")
    return distilled["counts"], [row["completion"][0]["content"][0]["text"] for row in sft]


def test_defect_1_a_restated_summary_never_replaces_the_reasoning(tmp_path, repo, student_checkpoint, monkeypatch):
    restated = lambda gold: (f"{REASONING}\n</think>\n\n<think>\n{SUMMARY}\n</think>\n"  # noqa: E731
                             f"<answer>{gold}</answer>")
    counts, completions = _sft_set(tmp_path, repo, student_checkpoint, monkeypatch, [restated])
    assert len(completions) == 8 and all(c.startswith(f"<think>{REASONING}</think>") for c in completions)
    assert counts["repaired_responses"] == {"restated_think": 8} and counts["dropped_responses"] == {}
    assert sum(s["repaired_responses"].get("restated_think", 0) for s in counts["by_source"].values()) == 8


def test_defect_2_tags_in_the_reasoning_never_reach_the_sft_set(tmp_path, repo, student_checkpoint, monkeypatch):
    # The tagged chain is the shorter correct one, which the paper's rule would keep.
    named = lambda gold: f"Put it in <think> </think> tags. Blue is {gold}.\n</think>\n\n<answer>{gold}</answer>"  # noqa: E731
    drafted = lambda gold: f"So <answer>{gold}</answer>.\n</think>\n\n\\boxed{{{gold}}}"  # noqa: E731
    clean = lambda gold: f"{REASONING} Here: {gold}.\n</think>\n\nThe answer is \\boxed{{{gold}}}."  # noqa: E731
    counts, completions = _sft_set(tmp_path, repo, student_checkpoint, monkeypatch, [named, drafted, clean])
    assert len(completions) == 8 and all(well_formed(c) and c.startswith(f"<think>{REASONING}") for c in completions)
    assert counts["dropped_responses"] == {"tags_in_reasoning": 16} and counts["chains"] == 8


def test_a_malformed_chain_is_not_selected_in_iteration_1(repo):
    cfg = tiny_config(repo)
    problem = {"answer": "5", "answer_type": "integer", "choices": [], "precision": None, "scene": "{}"}
    malformed = "<think></think> tags. So 5</think>\n<answer>5</answer>"
    row = curation.judge_chains(cfg, 1, {"id": "p", "source": "s", "chains": [malformed]}, problem)
    assert row["status"] == "not_well_formed" and row["n_correct"] == 1
    assert curation.filter_chain(malformed, cfg)[2] == "not_well_formed"


# --- Qwen3 with thinking on: a reasoner of today -----------------------------------------------------------------


def test_qwen3s_thinking_switch_reaches_its_template_and_its_reply_reads_as_a_chain(tmp_path):
    from ovlt.engines.tiny_students import build_tiny_qwen3_reasoner

    tokenizer = models.load_processing_class(build_tiny_qwen3_reasoner(tmp_path))
    chat = teachers.distill_prompt(R1_DISTILL_PROMPT, PROBLEM, "A bar chart: red 3, blue 5.")
    text = chat[0]["content"][0]["text"]
    thinking = render_prompt(tokenizer, chat, template_kwargs={"enable_thinking": True})
    assert thinking == f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"  # the reply opens <think>
    assert render_prompt(tokenizer, chat, template_kwargs={"enable_thinking": False}) == \
        thinking + "<think>\n\n</think>\n\n"
    reply = "<think>\nRed is 3, blue is 5, so blue is taller.\n</think>\n\nThe tallest bar is blue: \\boxed{B}."
    read = reasoner_chain(reply, PROBLEM["choices"])
    assert (read.chain, read.cause) == ("<think>Red is 3, blue is 5, so blue is taller.</think>\n<answer>B</answer>", "kept")
    # With thinking off there is no reasoning to distill: the reply is dropped for a named cause.
    assert reasoner_chain("The tallest bar is blue: \\boxed{B}.", PROBLEM["choices"]).cause in REASONER_DROPS
