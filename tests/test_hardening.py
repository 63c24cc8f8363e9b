"""The bad-input catalogue and the security rules: each kind of bad input has its expected outcome (a clear
error naming the file, row or key, or the row skipped and counted); no remote code, no escaping paths."""

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from ovlt.ground.artifacts import ArtifactError, Run, Stage
from ovlt.ground.config import ConfigError, load_config
from ovlt.ground.schema import check_unique_ids, validate_problem
from ovlt.scoring import answers, benchmarks
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
    verdict = answers.score(response, "3", "integer")
    assert verdict.correct is False
    assert answers.accuracy_reward([response or ""], answer=["3"], answer_type=["integer"], choices=[[]],
                                   precision=[-1]) == [0.0]


def test_pathological_latex_is_bounded():
    nested = "\\frac{" * 400 + "1" + "}{2}" * 400
    start = time.perf_counter()
    verdict = answers.score(f"<answer>{nested}</answer>", "\\frac{1}{2}", "latex")
    assert time.perf_counter() - start < answers.MATH_VERIFY_TIMEOUT_S + 5
    assert verdict.correct in (True, False)


def test_extremely_long_response_is_bounded():
    response = ("blah 7 " * 2_000_000) + "<answer>42</answer>"
    start = time.perf_counter()
    verdict = answers.score(response, "42", "integer")
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
            answers.score(response, gold, answer_type, protocol="mathvision")
            answers.score(response, gold, answer_type, protocol="official")
