"""The bad-input catalogue and the security rules: each kind of bad input has its expected outcome (a clear
error naming the file, row or key, or the row skipped and counted); no remote code, no escaping paths."""

import io
import json
import time
from pathlib import Path

import pytest
from helpers import fixtures_dir
from PIL import Image

from ovlt.ground.artifacts import ArtifactError, Run, Stage
from ovlt.ground.config import ConfigError, load_config
from ovlt.ground.schema import check_unique_ids, validate_problem
from ovlt.scoring import benchmarks, matching, rewards
from ovlt.stages.rows import open_image, usable_rows

REPO = Path(__file__).resolve().parents[1]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _row(problem_id: str, image_bytes: bytes, answer: str = "3") -> dict:
    return {"id": problem_id, "source": "synthetic/chart", "answer": answer, "image": {"bytes": image_bytes, "path": None}}


GOOD = {"id": "p-1", "image": Image.new("RGB", (28, 28)), "question": "How many?", "choices": [], "answer": "3", "answer_type": "integer",
        "precision": -1, "source": "synthetic/counting", "split": "train", "difficulty": 1, "scene": ""}


# --- images ---------------------------------------------------------------------------------------------


def test_corrupt_and_truncated_images_are_skipped_and_counted():
    good = _png(Image.new("RGB", (56, 56), "red"))
    rows = [_row("ok", good), _row("corrupt", b"not an image at all"), _row("truncated", good[: len(good) // 2])]
    usable, images, skipped = usable_rows(rows)
    assert [r["id"] for r in usable] == ["ok"] and images[0].size == (56, 56)
    assert {(s["id"], s["status"]) for s in skipped} == {("corrupt", "unreadable_image"), ("truncated", "unreadable_image")}


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "I;16"])
def test_non_rgb_images_become_rgb(mode):
    image = Image.new(mode, (40, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    opened = open_image(_row("x", buffer.getvalue()))
    assert opened.mode == "RGB" and opened.size == (40, 30)


def test_huge_image_is_bounded_by_the_processor(tmp_path):
    from ovlt.engines.models import TINY_MAX_PIXELS, build_tiny, load_processor

    processor = load_processor(build_tiny(tmp_path, vocab_size=600, hidden_size=64, intermediate_size=128,
                                          mrope_section=[2, 3, 3]))
    huge = Image.new("RGB", (5000, 4000), "white")
    grid = processor.image_processor(images=[huge], return_tensors="pt")["image_grid_thw"][0]
    patches = int(grid.prod())
    assert patches * 14 * 14 <= TINY_MAX_PIXELS, "the image is resized to the processor's pixel budget"


# --- problems -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change,key", [
    ({"answer": ""}, "answer"),
    ({"answer": None}, "answer"),
    ({"answer_type": "multiple_choice", "choices": ["1", "2"], "answer": "3"}, "answer"),
    ({"answer_type": "fraction"}, "answer_type"),
    ({"id": "../../etc/passwd"}, "id"),
])
def test_bad_problems_name_the_row_and_key(change, key):
    with pytest.raises(ValueError) as info:
        validate_problem({**GOOD, **change}, "train.jsonl row 7")
    assert "train.jsonl row 7" in str(info.value) and key in str(info.value)


def test_problems_without_gold_answer_are_skipped_in_stages():
    good = _png(Image.new("RGB", (28, 28)))
    _, _, skipped = usable_rows([_row("blank", good, answer="  ")])
    assert skipped == [{"id": "blank", "source": "synthetic/chart", "status": "no_gold_answer"}]


def test_duplicate_ids_are_named():
    with pytest.raises(ValueError, match=r"pool: 1 duplicate id\(s\), e.g. \['b'\]"):
        check_unique_ids(["a", "b", "c", "b"], "pool")


def test_duplicate_ids_in_a_benchmark_file(tmp_path):
    line = {"id": "1", "question": "q", "options": [], "answer": "2", "subject": "s", "level": 1, "image": "1.png"}
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        benchmarks.load_local("mathvision_test", path)


# --- names and configs ---------------------------------------------------------------------------------


def test_unknown_benchmark_and_source_list_the_known_ones():
    from ovlt.ground.hub import load_source

    with pytest.raises(KeyError, match="mathvista_testmini"):
        benchmarks.get_benchmark("mathvistaa")
    with pytest.raises(ValueError, match="geometry3k"):
        load_source("geometry4k")


def test_config_typo_and_wrong_type(tmp_path):
    text = (REPO / "configs/tiny.yaml").read_text().replace("iterations: 2", "iterations: two").replace("seed: 0", "sed: 0")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "iterations" in str(info.value) and "sed: unknown key" in str(info.value) and str(path) in str(info.value)


def test_non_utf8_config_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((REPO / "configs/tiny.yaml").read_bytes() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml"):
        load_config(path)


def test_checkpoint_without_processor(tmp_path):
    from ovlt.engines.models import build_tiny, load

    folder = build_tiny(tmp_path, vocab_size=600, hidden_size=64, intermediate_size=128, mrope_section=[2, 3, 3])
    for name in ("preprocessor_config.json", "processor_config.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises((FileNotFoundError, TypeError)) as info:
        load(folder)
    assert str(folder) in str(info.value) and "processor" in str(info.value)


# --- responses ------------------------------------------------------------------------------------------


def _mathvision_annotations(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "q", "options": [], "answer": "2", "subject": "s", "level": 1,
                                "image": "1.png"}) + "\n")
    return path


def test_responses_with_unknown_ids_name_the_line(tmp_path, capsys):
    from ovlt.score_cli import score_main

    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"id": "1", "response": "2"}) + "\n" + json.dumps({"id": "99", "response": "2"}) + "\n")
    code = score_main(["--benchmark", "mathvision", "--annotations", str(_mathvision_annotations(tmp_path)),
                       "--responses", str(responses)])
    assert code == 2 and f"{responses}:2" in capsys.readouterr().err


def test_non_utf8_responses_name_the_line(tmp_path, capsys):
    from ovlt.score_cli import score_main

    responses = tmp_path / "responses.jsonl"
    responses.write_bytes(json.dumps({"id": "1", "response": "2"}).encode() + b"\n" + b'{"id": "1", "response": "\xff"}\n')
    code = score_main(["--benchmark", "mathvision", "--annotations", str(_mathvision_annotations(tmp_path)),
                       "--responses", str(responses)])
    assert code == 2 and f"{responses}:2: not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("response", ["", "   ", "\x00\x00", None])
def test_empty_model_output_is_wrong_not_a_crash(response):
    verdict = matching.score(response, "3", "integer")
    assert verdict.correct is False
    assert rewards.accuracy_reward([response or ""], answer=["3"], answer_type=["integer"], choices=[[]],
                                   precision=[-1]) == [0.0]


def test_pathological_latex_is_bounded():
    nested = "\\frac{" * 400 + "1" + "}{2}" * 400
    start = time.perf_counter()
    verdict = matching.score(f"<answer>{nested}</answer>", "\\frac{1}{2}", "latex")
    assert time.perf_counter() - start < matching.MATH_VERIFY_TIMEOUT_S + 5
    assert verdict.correct in (True, False)


def test_extremely_long_response_is_bounded():
    response = ("blah 7 " * 2_000_000) + "<answer>42</answer>"
    start = time.perf_counter()
    verdict = matching.score(response, "42", "integer")
    assert verdict.correct and time.perf_counter() - start < 2


# --- notebook parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,value", [("iteration", "1"), ("iteration", True), ("config", 3), ("checkpoint", None)])
def test_notebook_parameter_of_wrong_type(name, value):
    from ovlt.study import open_study

    params = {"config": str(REPO / "configs/tiny.yaml"), "run_dir": "/tmp/x", "iteration": 1, "checkpoint": ""}
    with pytest.raises(TypeError, match=f"notebook parameter '{name}'"):
        open_study(**{**params, name: value})


def test_notebook_parameter_error_surfaces_through_papermill(tmp_path):
    from ovlt.study.notebooks import NOTEBOOK_DIR, StudyError, execute

    output = tmp_path / "07.ipynb"
    with pytest.raises(StudyError) as info:
        execute(NOTEBOOK_DIR / "07_evaluate.ipynb", output,
                {"config": str(REPO / "configs/tiny.yaml"), "run_dir": str(tmp_path), "iteration": "one",
                 "checkpoint": "base"}, "evaluate base")
    assert "notebook parameter 'iteration' must be int" in str(info.value) and str(output) in str(info.value)


# --- security -------------------------------------------------------------------------------------------


def test_remote_code_only_when_the_config_says_so(monkeypatch):
    from ovlt.engines import generation
    from ovlt.ground.config import ModelSpec

    seen = []
    monkeypatch.setattr(generation.models, "load", lambda path, **kw: seen.append(kw) or (_raise()))
    for trusted in (False, True):
        with pytest.raises(_Stop):
            generation.backend_for(ModelSpec(name="some/model", backend="transformers", trust_remote_code=trusted))
    assert [kw["trust_remote_code"] for kw in seen] == [False, True]


class _Stop(Exception):
    pass


def _raise():
    raise _Stop


def test_loaders_default_to_no_remote_code():
    import inspect

    from ovlt.engines import models

    for function in (models.load, models.load_processor, models.load_processing_class):
        assert inspect.signature(function).parameters["trust_remote_code"].default is False


@pytest.mark.parametrize("bad", ["../outside", "a/../../b", "/abs"])
def test_paths_from_data_cannot_leave_the_run_folder(tmp_path, bad):
    run = Run(tmp_path / "run")
    with pytest.raises(ArtifactError, match="unsafe"):
        run.eval_dir(bad)
    with pytest.raises(ArtifactError, match="unsafe"):
        Stage(run, "evaluate", params={}).shards(bad)
    with pytest.raises(ArtifactError, match="unsafe"):
        Stage(run, bad, params={})
    assert not (tmp_path / "outside").exists()


def test_model_output_is_never_executed(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("model output reached eval/exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    for response in ["<answer>__import__('os').system('echo pwned')</answer>", "\\boxed{1+1}", "[1, 2, 3]"]:
        for answer_type, gold in (("integer", "2"), ("list", "[1, 2, 3]"), ("latex", "2")):
            matching.score(response, gold, answer_type, protocol="mathvision")
            matching.score(response, gold, answer_type, protocol="official")


# --- issue 23: a careless or hostile user (docs/bad-input.md lists every kind with its outcome) ----------------


def _vista_entry(pid: str = "1", **change) -> dict:
    return {"pid": pid, "question": "How many apples are on the table?", "choices": None, "answer": "2",
            "question_type": "free_form", "answer_type": "integer", "precision": None, "unit": None, "metadata": {},
            **change}


def _vista_annotations(tmp_path, entries=None) -> Path:
    path = tmp_path / "testmini.json"
    path.write_text(json.dumps(entries if entries is not None else {"1": _vista_entry()}))
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _score(tmp_path, capsys, *, annotations=None, responses=None, out=None, benchmark="mathvista"):
    """`ovlt score` on a one-item MathVista file by default; (exit status, stdout, stderr)."""
    from ovlt.score_cli import score_main

    annotations = annotations or _vista_annotations(tmp_path)
    responses = responses or _jsonl(tmp_path / "responses.jsonl", [{"id": "1", "response": "<answer>2</answer>"}])
    argv = ["--benchmark", benchmark, "--annotations", str(annotations), "--responses", str(responses)]
    code = score_main(argv + (["--out", str(out)] if out is not None else []))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(err: str, *names) -> str:
    """stderr holds exactly one error line, naming each of `names`, and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize("flag", ["--responses", "--annotations"])
def test_out_over_an_input_is_refused_and_the_input_kept(tmp_path, capsys, flag):
    """Item 1: `--out X` with X an input overwrote it with verdicts and exited 0."""
    responses = _jsonl(tmp_path / "responses.jsonl", [{"id": "1", "response": "<answer>2</answer>"}])
    annotations = _vista_annotations(tmp_path)
    target = responses if flag == "--responses" else annotations
    before = target.read_bytes()
    code, _, err = _score(tmp_path, capsys, annotations=annotations, responses=responses,
                          out=tmp_path / "." / target.name)
    assert code == 2 and target.read_bytes() == before
    _one_error(err, flag, target)


def test_out_through_a_link_to_an_input_is_refused(tmp_path, capsys):
    responses = _jsonl(tmp_path / "responses.jsonl", [{"id": "1", "response": "<answer>2</answer>"}])
    (tmp_path / "link.jsonl").hardlink_to(responses)
    code, _, err = _score(tmp_path, capsys, responses=responses, out=tmp_path / "link.jsonl")
    assert code == 2 and "--responses" in _one_error(err) and json.loads(responses.read_text())["id"] == "1"


def test_atomic_write_keeps_the_old_file_when_the_text_cannot_be_encoded(tmp_path):
    """Item 2: the verdicts were written in place; unencodable text truncated an earlier file to 0 bytes."""
    from ovlt.ground.artifacts import atomic_write_text

    path = tmp_path / "verdicts.jsonl"
    path.write_text("earlier verdicts\n")
    with pytest.raises(ArtifactError, match="verdicts.jsonl: character 3 is '\\\\ud800'"):
        atomic_write_text(path, "abc\ud800")
    assert path.read_text() == "earlier verdicts\n" and [p.name for p in tmp_path.iterdir()] == ["verdicts.jsonl"]


def test_lone_surrogate_in_a_response_is_named_and_the_earlier_verdicts_kept(tmp_path, capsys):
    """Items 2 and 4: a response holding "\\ud800" raised UnicodeEncodeError after --out was truncated."""
    out = tmp_path / "verdicts.jsonl"
    out.write_text("earlier verdicts\n")
    responses = tmp_path / "responses.jsonl"
    responses.write_text('{"id": "1", "response": "<answer>2</answer> \\ud800"}\n')
    code, stdout, err = _score(tmp_path, capsys, responses=responses, out=out)
    assert code == 2 and out.read_text() == "earlier verdicts\n" and "accuracy" not in stdout
    assert "lone surrogate" in _one_error(err, f"{responses}:1", "response")
    responses.write_text('{"id": "1", "response": "<answer>2</answer>"}\n')  # fixed, the verdicts are replaced whole
    code, stdout, _ = _score(tmp_path, capsys, responses=responses, out=out)
    assert code == 0 and "accuracy: 1/1" in stdout
    assert [json.loads(line)["correct"] for line in out.read_text().splitlines()] == [True]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left


@pytest.mark.parametrize("run", ["..", "../x", "/abs/elsewhere", "a\nb", "a/b"])
def test_unsafe_run_names_are_refused_before_any_work(tmp_path, monkeypatch, capsys, run):
    """Item 3: `ovlt reproduce --run ..` would have run the study in the repository's root."""
    import ovlt.study
    from ovlt.cli import main

    monkeypatch.setattr(ovlt.study, "reproduce", lambda *a, **k: pytest.fail("the study started"))
    code = main(["reproduce", "--config", str(REPO / "configs/tiny.yaml"), "--run", run,
                 "--runs-root", str(tmp_path / "runs"), "--reports-root", str(tmp_path / "reports")])
    assert code == 2 and list(tmp_path.iterdir()) == []
    assert "only letters, digits and _ . : -" in _one_error(capsys.readouterr().err, "--run", repr(run))


def test_unsafe_study_name_in_the_config_is_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text((REPO / "configs/tiny.yaml").read_text().replace("name: tiny", "name: ../../escaped", 1))
    with pytest.raises(ConfigError, match=r"name: .*unsafe study name '../../escaped'"):
        load_config(path)


def test_report_of_a_run_folder_goes_to_the_reports_folder(tmp_path, monkeypatch, capsys):
    """Item 3: `ovlt report --run /abs/path` wrote index.html into the run folder."""
    import ovlt.study
    from ovlt.cli import main

    run = tmp_path / "elsewhere" / "my-run"
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    rendered = []
    monkeypatch.setattr(ovlt.study, "render_report", lambda run_dir, report_dir: rendered.append(
        (Path(run_dir), Path(report_dir))) or Path(report_dir) / "index.html")
    assert main(["report", "--run", str(run), "--reports-root", str(tmp_path / "reports")]) == 0
    assert rendered == [(run, tmp_path / "reports" / "my-run")]
    assert main(["report", "--run", "a/../../b", "--runs-root", str(tmp_path / "runs")]) == 2
    _one_error(capsys.readouterr().err, "--run", "nor is it an existing run folder")


def test_corrupt_summary_is_named_before_the_report_runs(tmp_path, capsys):
    """Item 9: a corrupt summary.json surfaced as "stage report failed in cell 3: JSONDecodeError"."""
    from ovlt.cli import main

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"run": "tiny", "stages": [')
    code = main(["report", "--run", "tiny", "--runs-root", str(tmp_path / "runs"),
                 "--reports-root", str(tmp_path / "reports")])
    assert code == 2 and sorted(p.name for p in run.iterdir()) == ["summary.json"]
    assert not (tmp_path / "reports").exists()
    _one_error(capsys.readouterr().err, run / "summary.json", "not readable JSON")


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("case", ["bare number", "unknown answer_type", "deep JSON", "bad precision", "string choices",
                                  "no entries"])
def test_bad_annotation_files_are_named(tmp_path, capsys, case):
    """Items 4, 7 and 9: tracebacks, a silently wrong reading (choices split into characters), exit 0 on nothing."""
    path = tmp_path / "testmini.json"
    path.write_text({
        "bare number": "17",
        "unknown answer_type": json.dumps({"1": _vista_entry(answer_type="complex")}),
        "deep JSON": DEEP,
        "bad precision": json.dumps({"1": _vista_entry(answer_type="float", answer="1.5", precision="two")}),
        "string choices": json.dumps({"1": _vista_entry(question_type="multi_choice", answer_type="text", answer="B",
                                                        choices="(A) 1 (B) 2")}),
        "no entries": "{}",
    }[case])
    out = tmp_path / "verdicts.jsonl"
    code, stdout, err = _score(tmp_path, capsys, annotations=path, out=out)
    assert code == 2 and not out.exists() and "accuracy" not in stdout
    key = {"unknown answer_type": "answer_type", "bad precision": "precision", "string choices": "choices"}.get(case, "")
    _one_error(err, path, key)


@pytest.mark.parametrize("case", ["deep JSON", "empty"])
def test_bad_response_files_are_named(tmp_path, capsys, case):
    responses = tmp_path / "responses.jsonl"
    responses.write_text({"deep JSON": DEEP + "\n", "empty": "\n\n"}[case])
    code, stdout, err = _score(tmp_path, capsys, responses=responses)
    assert code == 2 and "accuracy" not in stdout
    _one_error(err, responses)


@pytest.mark.parametrize("where", ["under a file", "a folder", "in /proc"])
def test_unwritable_out_is_named(tmp_path, capsys, where):
    """Item 4: --out under a file, naming a folder or in /proc raised OSError tracebacks."""
    (tmp_path / "a-file").write_text("x")
    out = {"under a file": tmp_path / "a-file" / "verdicts.jsonl", "a folder": tmp_path,
           "in /proc": Path("/proc/ovlt-verdicts.jsonl")}[where]
    if where == "in /proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    code, _, err = _score(tmp_path, capsys, out=out)
    assert code == 2 and (tmp_path / "a-file").read_text() == "x"
    _one_error(err, out)


def _tiny_yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_deeply_nested_yaml_is_named(tmp_path, monkeypatch, capsys):
    """Item 5: a YAML config nested 50k deep crashed `plan` and `reproduce` with RecursionError."""
    import ovlt.study
    from ovlt.cli import main

    monkeypatch.setattr(ovlt.study, "reproduce", lambda *a, **k: pytest.fail("the study started"))
    path = _tiny_yaml(tmp_path, (REPO / "configs/tiny.yaml").read_text() + "deep: " + "[" * 50_000 + "]" * 50_000 + "\n")
    for command in ("plan", "reproduce"):
        assert main([command, "--config", str(path)]) == 2
        _one_error(capsys.readouterr().err, path, "nested too deeply")


def test_python_tags_in_a_config_are_refused(tmp_path):
    path = _tiny_yaml(tmp_path, (REPO / "configs/tiny.yaml").read_text().replace(
        "\nseed: 0", "\nseed: !!python/object/apply:os.system ['touch pwned']"))
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        load_config(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


TINY = (REPO / "configs/tiny.yaml").read_text()
LATE = [  # item 6: each was accepted at load and failed late, or ran wrong
    ("unknown data source", TINY.replace("synthetic/counting", "synthetic/countng"), "data.sources.1.name",
     "unknown data source 'synthetic/countng'"),
    ("negative seed", TINY.replace("\nseed: 0", "\nseed: -3"), "seed", "greater than or equal to 0"),
    ("infinite learning rate", TINY.replace("learning_rate: 1.0e-3", "learning_rate: .inf"), "sft.learning_rate",
     "finite number"),
    ("iterations: true", TINY.replace("iterations: 2", "iterations: true").replace(
        "  - {sft_problems: 8000, grpo_candidates: 1000, grpo_problems: 400}\n", ""), "iterations", "boolean true"),
    ("duplicate key", TINY.replace("\nseed: 0", "\nseed: 0\nseed: 1"), "line", "key 'seed' appears twice"),
]


@pytest.mark.parametrize("text,key,message", [case[1:] for case in LATE], ids=[case[0] for case in LATE])
def test_config_values_accepted_before_now_fail_at_load(tmp_path, text, key, message):
    assert text != TINY, "the case must change the config"
    path = _tiny_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and key in str(info.value) and message in str(info.value)


BEFORE_WORK = [  # item 6: what the config names that loading it cannot check, refused by `plan` and `reproduce`
    ("unknown benchmark", TINY.replace("{name: synthetic, protocol", "{name: mathvistaa, protocol"),
     "evaluation.benchmarks.0.name", "unknown benchmark 'mathvistaa'"),
    ("student path that does not exist", TINY.replace("name: tiny           #", "name: /nonexistent/student  #"),
     "models.student.name", "'/nonexistent/student' is neither an existing folder nor a hub id"),
]


@pytest.mark.parametrize("text,key,message", [case[1:] for case in BEFORE_WORK], ids=[case[0] for case in BEFORE_WORK])
def test_names_the_config_cannot_check_fail_before_any_work(tmp_path, monkeypatch, capsys, text, key, message):
    import ovlt.study
    from ovlt.cli import main

    monkeypatch.setattr(ovlt.study, "reproduce", lambda *a, **k: pytest.fail("the study started"))
    path = _tiny_yaml(tmp_path, text)
    assert text != TINY and load_config(path).name == "tiny"
    for command in ("plan", "reproduce"):
        assert main([command, "--config", str(path)]) == 2
        _one_error(capsys.readouterr().err, path, key, message)


FIXTURES = fixtures_dir()
needs_fixtures = pytest.mark.skipif(FIXTURES is None, reason="the official MathVista and MATH-V responses (the "
                                    "scorer's conformance fixtures, OVLT_FIXTURES) are not on this machine")


@needs_fixtures
def test_responses_to_another_benchmark_are_warned_about(tmp_path, capsys):
    """Item 7: MATH-V responses scored as MathVista gave 17.8% and exit 0 without a word; MathVista's own responses
    (GPT-4's, official) get no warning."""
    for source, key, warned in [("mathvision/gpt4_cot_text_only.jsonl", "id", True),
                                ("mathvista/gpt4_2shot_solution.jsonl", "pid", False)]:
        lines = (FIXTURES / source).read_text().splitlines()[:60]
        responses = _jsonl(tmp_path / "responses.jsonl",
                           [{"id": row[key], "response": row["response"]} for row in map(json.loads, lines)])
        code, _, err = _score(tmp_path, capsys, annotations=FIXTURES / "mathvista" / "testmini.json",
                              responses=responses)
        assert code == 0 and ("another benchmark" in err) is warned, (source, err)
