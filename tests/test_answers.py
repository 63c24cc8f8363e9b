"""The answer scorer: one test per extraction rule and answer type, the protocols, the time limit of the sympy-backed
checkers (math-verify, mathruler), TRL rewards (ours and the authors' r1v), and a fuzz test. The `authors` protocol's
verdicts are checked against mathruler itself in tests/test_authors_protocol.py."""

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovlt.scoring import chains, extraction, matching, mathvision, rewards
from ovlt.scoring.extraction import extract
from ovlt.scoring.matching import match, score

YES_NO = ["Yes", "No"]


# --- extraction rules, in order -----------------------------------------------------------------------------------

@pytest.mark.parametrize("response, choices, text, rule", [
    ("<think>so 3</think><answer>42</answer>", (), "42", "answer_tag"),
    ("<answer>1</answer> then <answer> \\boxed{7} </answer>", (), "7", "answer_tag"),
    ("so \\boxed{\\frac{1}{2}} done", (), "\\frac{1}{2}", "boxed"),
    ("\\boxed{1} and later \\boxed{\\frac{3}{{4}}}", (), "\\frac{3}{{4}}", "boxed"),
    ("first \\boxed{5} then a broken \\boxed{6", (), "5", "boxed"),
    ("Thus, the answer is 12.", (), "12", "answer_phrase"),
    ("The answer is 3. Later the final answer is 4. Bye", (), "4", "answer_phrase"),
    ("Answer: 2.5\n", (), "2.5", "answer_phrase"),
    ("Thus, the answer is B (No).", YES_NO, "B", "answer_phrase"),
    ("the correct answer is (A) Yes.", YES_NO, "A", "answer_phrase"),
    ("Thus, the answer cannot be determined from the given information.", YES_NO, "Cannot be determined", "refusal"),
    ("The question does not provide enough information. Please provide more details.", (), "N/A", "refusal"),
    ("So x = 31. However, 31 is not one of the choices.", ["7", "32"], "N/A", "refusal"),
    ("Based on the image, the bar is not taller than the line.", YES_NO, "No", "yes_no"),
    ("Based on the image, Sky Blue is less than Web Maroon.", YES_NO, "Yes", "yes_no"),
    ("Periwinkle is not the maximum. The maximum is the colour blue.", ["yes", "no"], "no", "yes_no"),
    ("Blue is not the tallest bar. Therefore, red is the maximum.", YES_NO, "Yes", "yes_no"),
    ("It has no gaps.\nYes, the function is continuous.", YES_NO, "Yes", "yes_no"),
    ("There are three cubes left after removing 7 balls.", (), "3", "count_phrase"),
    ("There are 3 red cubes and no spheres.", YES_NO, "3", "count_phrase"),  # a count is no yes/no verdict
    ("I looked carefully.\n(B)", YES_NO, "B", "option_letter"),
    ("I looked carefully.\nB.", YES_NO, "B", "option_letter"),
    ("I looked carefully.\nB (No)", YES_NO, "B", "option_letter"),
    ("So the market has a surplus.", ["shortage", "surplus"], "surplus", "option_text"),
    ("If the eggs were eaten, the adult spider population would decrease.",
     ["Adult spider population would double", "Adults spider population would decrease"],
     "Adults spider population would decrease", "option_words"),
    ("The frog population would shrink and so would the snakes.", ["snakes decrease", "frogs decrease"], "",
     "none"),  # neither option's words are all there
    ("5 + 8 = 13, so 13 in total", (), "13", "last_number"),
    ("values 1,234 and -5.5 appear", (), "-5.5", "last_number"),
    ("no idea at all", (), "", "none"),
    ("", YES_NO, "", "none"),
])
def test_extraction_rules(response, choices, text, rule):
    assert extract(response, choices) == extraction.Extraction(text, rule)


def test_option_words_needs_exactly_one_covered_option():
    both = ["plants increase", "plants and birds increase"]
    assert extract("Then plants and birds increase.", both).rule != "option_words"


def test_refusal_reads_only_the_end_of_the_response():
    early = "It is impossible to see the axis at first. " + "We measure again. " * 30 + "So x = 12"
    assert extract(early) == extraction.Extraction("12", "last_number")
    assert extract("We cannot be sure of the scale, but the answer is 7.").rule == "answer_phrase"


RUN_ON = "Counting gives 3 cubes.\nThe answer is A (Yes).\n\nQuestion: How many toys are there?\nThere are 5 toys."


def test_run_on_response_is_cut_to_one_turn():
    assert extract(RUN_ON, YES_NO) == extraction.Extraction("A", "answer_phrase")  # the answer to the question asked
    assert extract(RUN_ON, YES_NO, turns="last") == extraction.Extraction("5", "count_phrase")
    assert extract("\nQuestion: is it?\nYes.", YES_NO).text == "Yes"  # nothing before the turn: keep it all
    # MathVista's official verdicts graded the last turn ("5" is nearest "No"); strict grades the first.
    assert score(RUN_ON, "Yes", "multiple_choice", YES_NO, protocol="official").correct is False
    assert score(RUN_ON, "Yes", "multiple_choice", YES_NO, protocol="strict").correct is True
    with pytest.raises(ValueError, match="unknown turns"):
        extract(RUN_ON, YES_NO, turns="middle")


def test_refusal_maps_to_the_nearest_option_only_under_mathvista():
    refusal = "The question does not provide enough information to answer."
    assert score(refusal, "No", "multiple_choice", YES_NO, protocol="official").correct is True  # N/A ~ No
    assert score(refusal, "No", "multiple_choice", YES_NO, protocol="strict").correct is False
    assert score(refusal, "3", "integer", protocol="official").correct is False


def test_letter_rule_needs_a_letter_in_range_and_not_prose():
    assert extract("I looked carefully.\nE.", YES_NO).rule != "option_letter"  # only A and B exist
    nine = [str(i) for i in range(10, 19)]  # letters A..I exist
    assert extract("I think so", nine).rule == "none"  # the pronoun "I" is prose, not option I


# --- answer types (strict) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("response, answer, answer_type, choices, precision, correct", [
    ("The answer is B.", "No", "multiple_choice", YES_NO, -1, True),
    ("The answer is no.", "No", "multiple_choice", YES_NO, -1, True),
    ("The answer is A.", "No", "multiple_choice", YES_NO, -1, False),
    ("Answer: 12 cm", "12", "integer", (), -1, True),
    ("Answer: 1,000", "1000", "integer", (), -1, True),
    ("so x = 12", "12", "integer", (), -1, True),
    ("Answer: 13", "12", "integer", (), -1, False),
    ("Answer: 1.26", "1.3", "float", (), 1, True),
    ("Answer: 1.34", "1.3", "float", (), 1, True),
    ("Answer: 1.36", "1.3", "float", (), 1, False),
    ("\\boxed{[1, 2, 3]}", "[1,2,3]", "list", (), -1, True),
    ("\\boxed{[1, 2]}", "[1,2,3]", "list", (), -1, False),
    ("\\boxed{\\text{Paris}}", "paris", "text", (), -1, True),
    ("The answer is 60°.", "60", "integer", (), -1, True),
    ("\\boxed{60^{\\circ}}", "60", "latex", (), -1, True),
    ("\\boxed{\\frac{1}{2}}", "0.5", "float", (), -1, True),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", "latex", (), -1, True),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{12}", "latex", (), -1, False),
])
def test_strict_answer_types(response, answer, answer_type, choices, precision, correct):
    assert score(response, answer, answer_type, choices, precision, "strict").correct is correct


def test_strict_never_guesses_but_mathvista_takes_the_nearest_option():
    choices = ["5.8", "6.5", "14.2"]
    # "N/A" is neither a letter nor an option: MathVista maps it to the nearest option by edit distance.
    assert match("N/A", "5.8", "multiple_choice", choices, protocol="mathvista") is True
    assert match("N/A", "5.8", "multiple_choice", choices, protocol="strict") is False


@pytest.mark.parametrize("extracted, answer, answer_type, choices, precision, correct", [
    ("(B) No", "No", "multiple_choice", YES_NO, -1, True),
    ("B", "No", "multiple_choice", YES_NO, -1, True),
    ("12.0", "12", "integer", (), -1, True),
    ("12 cm", "12", "integer", (), -1, False),  # official float() fails on units: the GPT extractor strips them
    ("1.26", "1.3", "float", (), 1, True),
    ("[1, 2]", "[1, 2]", "list", (), -1, True),
    ("[1,2]", "[1, 2]", "list", (), -1, False),
])
def test_mathvista_official_rules(extracted, answer, answer_type, choices, precision, correct):
    assert match(extracted, answer, answer_type, choices, precision, "official") is correct


@pytest.mark.parametrize("response, answer, choices, correct", [
    ("so the final result is \\boxed{5}", "5", (), True),
    ("Therefore the answer is 7.", "7", (), True),
    ("I choose C", "red", ["blue", "green", "red"], False),  # MATH-V only reads " C." / " (C)." endings
    ("We conclude (C).", "red", ["blue", "green", "red"], True),
    ("\\boxed{C}", "red", ["blue", "green", "red"], True),
    ("\\boxed{\\frac{1}{3}}", "0.33", (), True),  # two-decimal numeric equivalence
])
def test_mathvision_official_rules(response, answer, choices, correct):
    answer_type = "multiple_choice" if choices else "latex"
    assert score(response, answer, answer_type, choices, protocol="mathvision").correct is correct


@pytest.mark.parametrize("response, model_answer", [
    ("So the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{3} first, then \\boxed{x = 12}.", "12"),  # the last box, the value after "="
    ("\\boxed{4} is wrong}", "4"),  # oxed{(.*)} is greedy: to the last "}", then cut at the first unmatched "}"
    ("Thus the answer is 7. Done", "7"),  # "... is <number>" ends the response
    ("The answer is (C). Then more", "c"),
    ("I pick B.\nBecause", "ipickb.because"),  # no rule fires: the whole response, cleaned
    ("We conclude (C).", "c"),
    ("x = 3/4", "\\frac{3}{4}"),
    ("the final answer is 45^\\circ\nso", "45"),
])
def test_mathvision_extraction_is_evaluate_py(response, model_answer):
    assert score(response, "0", "latex", protocol="mathvision").extracted == model_answer


@pytest.mark.parametrize("first, second, equal", [
    ("(1,2.001)", "(1,2.004)", True),  # eval_tuple: each element at two decimals...
    ("(1,2)", "(1.0,2)", False),  # ... written back as str(round(x, 2)): "1.0" is not "1"
    ("[1,2]", "(1,2)", False),
    ("\\frac{1}{3}", "0.333", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("4:1", "4", True),  # latex2sympy reads a ratio as a quotient
    ("40^{\\circ}", "40", False),  # \\circ is a symbol eval cannot name
    ("a", "b", False),
    ("", "", False),
])
def test_mathvision_is_equal_is_utils_py(first, second, equal):
    assert mathvision.is_equal(first, second, matching.mathvision_value) is equal


@pytest.mark.parametrize("text", ["60", "-3.5", "\\frac{3}{4}", "2\\sqrt{3}", "6\\pi", "3\\cdot2^{5}", "$\\frac{1}{3}$",
                                  "\\frac{\\sqrt{6}-2}{4}", "4(3-2\\sqrt{2})", "362,880", "2:3", "0.75π", "5-\\sqrt{2}/2",
                                  "2^{-1}", "\\sqrt{\\frac{1}{4}}", "12 \\div 4", "7 \\times 3", "-(2+3)"])
def test_mathvision_pure_values_are_latex2sympys(text):
    """The pure-Python values (no worker) are those latex2sympy gives, so the fast path changes no verdict."""
    fast = mathvision.plain_value(text)
    assert fast is not mathvision.UNDECIDED and fast is not None
    assert fast == pytest.approx(mathvision.sympy_value(text), rel=1e-12)


def test_mathvision_values_refuse_prose_and_defer_the_rest():
    assert mathvision.plain_value("theansweris") is None  # a symbol product: eval raises
    assert mathvision.plain_value("13\\%") is None and mathvision.plain_value("(6,2,1)") is None
    assert mathvision.plain_value("\\arcsin(\\frac{1}{2})") is mathvision.UNDECIDED
    assert matching.mathvision_value("\\arcsin(\\frac{1}{2})") == pytest.approx(0.5236, abs=1e-4)  # the worker


def test_power_towers_are_refused_without_reaching_sympy():
    before_timeouts, before_refused = matching.SYMPY_WORKER.timeouts, matching.SYMPY_WORKER.refused
    for protocol in ("strict", "mathvision", "authors"):
        for response in ("\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{9**9**9**9}", "\\boxed{123456!}", "\\boxed{2^{100000}}"):
            assert score(response, "3^{3^{3}}", "latex", protocol=protocol).correct is False
    assert matching.SYMPY_WORKER.timeouts == before_timeouts and matching.SYMPY_WORKER.refused > before_refused
    assert not matching.beyond_sympy("x^2+y^2") and not matching.beyond_sympy("\\frac{3^{1008}-1}{3^{1009}}")
    assert matching.SYMPY_WORKER.equal("1", "+".join(["1"] * 400)) is False  # too long to be an answer


@given(st.text(alphabet="abN/ AYesNo", max_size=40), st.text(alphabet="abN/ AYesNo", max_size=40))
def test_edit_distance_is_levenshtein(a, b):
    table = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(table[j] + 1, row[j - 1] + 1, table[j - 1] + (ca != cb)))
        table = row
    assert matching._edit_distance(a, b) == table[-1]


@pytest.mark.parametrize("protocol, extraction, correct", [
    ("official", "N/A", True),  # calculate_score.py: the nearest option ("No")
    ("official", "(B) No", True),
    ("official", "Yes", False),
    ("strict", "N/A", False),  # ours never guesses
    ("strict", "B", True),
    ("authors", "B", True),
])
def test_given_extractions_are_normalised_not_extracted(protocol, extraction, correct):
    verdict = matching.score_extraction(extraction, "No", "multiple_choice", YES_NO, protocol=protocol)
    assert verdict.correct is correct and verdict.rule == "given"


def test_given_numeric_extractions_follow_calculate_score():
    assert matching.score_extraction(" 12 ", "12", "integer", protocol="official").correct  # int(float(" 12 "))
    assert not matching.score_extraction("12 cm", "12", "integer", protocol="official").correct
    assert matching.score_extraction("12 cm", "12", "integer", protocol="strict").correct
    assert matching.score_extraction("1.25", "1.2", "float", precision=1, protocol="official").correct


@pytest.mark.parametrize("response", ["N/A", "I cannot tell.", "Let me look at the image.", "Is the bar taller?", ""])
def test_non_answers_are_not_mapped_to_yes(response):
    found = extract(response, YES_NO)
    assert found.rule in ("refusal", "none") and found.text in ("N/A", "")
    assert not score(response, "Yes", "multiple_choice", YES_NO, protocol="strict").correct


def test_unknown_protocol_and_answer_type_are_errors():
    with pytest.raises(ValueError, match="unknown protocol"):
        score("1", "1", "integer", protocol="lenient")
    with pytest.raises(ValueError, match="unknown answer_type"):
        score("1", "1", "number")


# --- the sympy-backed checkers under a hard time limit -------------------------------------------------------------

def test_math_verify_timeout_counts_wrong_and_does_not_hang(monkeypatch, caplog):
    monkeypatch.setattr(matching, "MATH_VERIFY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(matching, "beyond_sympy", lambda text: False)  # the time limit itself, behind the quick reject
    matching.SYMPY_WORKER.equal("1", "1")  # worker started outside the measured time
    before = matching.SYMPY_WORKER.timeouts
    start = time.perf_counter()
    verdict = score("\\boxed{9^{9^{9^{9^{9}}}}}", "3^{3^{3^{3}}}", "latex")
    assert verdict.correct is False
    assert time.perf_counter() - start < 5
    assert matching.SYMPY_WORKER.timeouts == before + 1
    assert "timed out" in caplog.text
    assert score("\\boxed{\\sqrt{12}}", "2\\sqrt{3}", "latex").correct  # a fresh worker took over


def test_math_verify_works_outside_the_main_thread():
    out = []
    worker = threading.Thread(target=lambda: out.append(score("\\boxed{x^2+2x+1}", "(x+1)^2", "latex")))
    worker.start()
    worker.join(timeout=30)
    assert out and out[0].correct


# --- the think/answer format --------------------------------------------------------------------------------------

def test_chain_parts_are_read_as_the_scorer_reads_them():
    chain = chains.chain_text("Red is 6. So red.", "B")
    assert chain == "<think>Red is 6. So red.</think>\n<answer>B</answer>" and chains.well_formed(chain)
    assert chains.think_text(chain) == "Red is 6. So red." and chains.answer_text(chain) == "B"
    assert extraction.sentences(chains.think_text(chain)) == ["Red is 6.", "So red."]
    # the last complete answer tag, as `extract` reads it, also when the reasoning mentions a tag
    stray = "<think>I put it in <answer> tags</think>\n<answer> 7 </answer>"
    assert chains.answer_text(stray) == "7" == extract(stray).text
    assert chains.answer_text("<think>x</think>") is None and chains.think_text("so 3 <answer>3</answer>") == "so 3"


def test_split_reasoning_reads_r1_and_tagged_responses():
    assert chains.split_reasoning("a\n</think>\n\n\\boxed{2}") == ("a\n", "\n\n\\boxed{2}")  # began inside <think>
    assert chains.split_reasoning("<think>a</think>b</think>c") == ("a</think>b", "c")  # the last </think>
    assert chains.split_reasoning("<think>a <answer>2</answer>") == ("a ", "<answer>2</answer>")
    assert chains.split_reasoning("<think>a, so 2") == ("a, so 2", "<think>a, so 2")


# --- TRL reward functions -----------------------------------------------------------------------------------------

def test_format_reward_and_well_formed():
    good = "<think>count the bars</think>\n<answer>B</answer>\n<|im_end|>"
    assert rewards.format_reward([good, [{"role": "assistant", "content": good}]]) == [1.0, 1.0]
    assert not chains.well_formed("<think>a</think><answer>B</answer>B</answer>")  # text after </answer>
    assert not chains.well_formed("<answer>B</answer>")
    assert not chains.well_formed("<think>a</think><answer>B")


def test_accuracy_reward_takes_strings_and_conversations():
    completions = ["<think>x</think><answer>B</answer>", [{"role": "assistant", "content": "<answer>7</answer>"}],
                   "<answer>8</answer>"]
    given = rewards.accuracy_reward(completions, answer=["No", "7", "7"],
                                    answer_type=["multiple_choice", "integer", "integer"],
                                    choices=[YES_NO, [], []], precision=[-1, -1, -1], prompts=None)
    assert given == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("completion, answer, answer_type, choices, reward", [
    ("<think>B is taller.</think> So B. <answer>B</answer>", "No", "multiple_choice", YES_NO, 1.0),
    ("<think>B is taller.</think>\n<answer>B</answer>", "No", "multiple_choice", YES_NO, 0.5),  # nothing between
    ("<think>x</think>\n<answer>A</answer>", "No", "multiple_choice", YES_NO, 0.0),  # wrong: no penalty to take
    ("<think>x</think> so <answer>No</answer>", "No", "multiple_choice", YES_NO, 0.0),  # the gold is the letter
    ("<think>x</think> so <answer>b</answer>", "No", "multiple_choice", YES_NO, 1.0),  # case ignored
    ("<think>x</think> so <answer>\\frac{1}{2}</answer>", "0.5", "float", [], 1.0),  # mathruler's grade_answer
    ("<think>x</think> so <answer>12 cm</answer>", "12", "integer", [], 1.0),
    ("<think>x</think> so <answer>2/4</answer>", "1/2", "latex", [], 0.0),  # unreduced fractions differ
    ("<think>x</think> so <answer>\n7\n</answer>", "7", "integer", [], 0.0),  # an answer over lines is not read
    ("<think>x</think> so <answer>3</answer> or <answer>7</answer>", "7", "integer", [], 0.0),  # the first tag
    ("7", "7", "integer", [], 1.0),  # no tags: the whole completion
    ("<answer>7</answer>", "7", "integer", [], 1.0),  # no </think>: no penalty
    ("<think>a</think>b</think>\n<answer>7</answer>", "7", "integer", [], 0.5),  # the last </think>
    ("<think>x <answer>7</answer></think>", "7", "integer", [], 0.5),  # nothing after </think> at all
])
def test_r1v_reward_is_the_authors_accuracy(completion, answer, answer_type, choices, reward):
    assert rewards.r1v_reward([completion, [{"role": "assistant", "content": completion}]], answer=[answer] * 2,
                              answer_type=[answer_type] * 2, choices=[choices] * 2, precision=[-1] * 2,
                              prompts=None) == [reward] * 2


def test_r1v_reward_of_hostile_input_is_zero_in_bounded_time(monkeypatch):
    monkeypatch.setattr(matching, "MATH_VERIFY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(matching, "beyond_sympy", lambda text: False)
    matching.SYMPY_WORKER.grade_answer("1", "1")
    start = time.perf_counter()
    assert rewards.r1v_reward(["<think>x</think> so <answer>9**9**9**9</answer>"], answer=["\\frac{1}{3}"],
                              answer_type=["latex"], choices=[[]]) == [0.0]
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("completion, reward", [
    ("<think>a\nb</think>\n\n<answer>B</answer>", 1.0),
    ("<think>a</think><answer>B</answer>", 1.0),
    (" <think>a</think><answer>B</answer>", 0.0),  # nothing before <think>
    ("<think>a</think><answer>B</answer><|im_end|>", 0.0),  # nothing after </answer>
    ("<think>a</think> so <answer>B</answer>", 0.0),  # only whitespace between
    ("<answer>B</answer>", 0.0),
])
def test_r1v_format_reward_is_the_authors_format_score(completion, reward):
    assert rewards.r1v_format_reward([completion], prompts=None) == [reward]


# --- fuzz ---------------------------------------------------------------------------------------------------------

pieces = st.sampled_from(["\\boxed{", "{", "}", "<answer>", "</answer>", "The answer is ", "(B)", " B.", "9" * 400,
                          "-", ".", ",", "\\frac{", "^{", "°", "√", "π", "\n", "答案", "∞", "1e999", "Answer:"])
fuzz_text = st.lists(st.one_of(pieces, st.text(max_size=30)), max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response=fuzz_text, answer_type=st.sampled_from(["multiple_choice", "integer", "float", "text", "list"]),
       protocol=st.sampled_from(matching.PROTOCOLS))
def test_fuzz_never_raises_and_is_bounded(response, answer_type, protocol):
    choices = ["3", "\\frac{1}{2}", "Yes"] if answer_type == "multiple_choice" else ()
    start = time.perf_counter()
    verdict = score(response, "3", answer_type, choices, 1 if answer_type == "float" else -1, protocol)
    assert isinstance(verdict.correct, bool) and verdict.rule
    # `authors` asks mathruler twice (the boxed answer, then the whole response)
    assert time.perf_counter() - start < 2 * matching.MATH_VERIFY_TIMEOUT_S + 2
