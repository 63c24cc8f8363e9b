"""The stage registry: each stage declared once, found by the study, the notebooks and the plan; fingerprints as the
stage functions made them before it; the done/begin/finish helper; backends closed when generation fails."""

import ast
import json
import subprocess
import sys

import nbformat
import pytest

from ovlt.engines.generation import Backend
from ovlt.ground.artifacts import MANIFEST, Run, Stage, save_dataset
from ovlt.ground.config import load_config
from ovlt.ground.procedural import generate
from ovlt.stages.registry import RUN, STAGES, Outcome, StageSpec, stage
from ovlt.study.notebooks import NOTEBOOK_DIR, REPORT_NOTEBOOK, StudyError, check_step_finished
from ovlt.study.order import Step, notebook_step, stage_order, steps

REPO = NOTEBOOK_DIR.parent


def two_iterations(**overrides):
    return load_config(REPO / "configs" / "tiny.yaml", overrides=overrides)


def test_every_registered_function_is_the_decorated_stage_of_that_name():
    for name, spec in STAGES.items():
        function = spec.resolve()
        assert function.spec is spec, f"{spec.function} is not decorated with @stage({name!r})"
        assert function.__name__ == spec.function.partition(":")[2]


def test_stage_functions_are_the_registry_s_and_only_it_builds_a_stage():
    """No stage module builds a `Stage` itself or decorates a stage the registry does not point to."""
    decorated = {}
    for path in sorted((REPO / "ovlt" / "stages").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Stage":
                assert path.name == "registry.py", f"{path}:{node.lineno} builds a Stage outside the registry"
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "stage":
                        decorated[decorator.args[0].value] = f"{module}:{node.name}"
    assert decorated == {name: spec.function for name, spec in STAGES.items()}


def test_every_stage_runs_in_the_study_and_every_notebook_is_run():
    cfg = two_iterations()
    assert {ref.name for ref in stage_order(cfg)} == set(STAGES)
    notebooks = {path.name for path in NOTEBOOK_DIR.glob("*.ipynb")}
    assert {step.notebook for step in steps(cfg)} | {REPORT_NOTEBOOK} == notebooks
    assert {spec.notebook for spec in STAGES.values()} <= notebooks


@pytest.mark.parametrize("notebook", sorted({spec.notebook for spec in STAGES.values()}))
def test_stage_notebooks_run_their_stages_through_the_study(notebook):
    """A notebook names no stage function: it asks the study for its own stages, by its own file name."""
    source = "\n".join(cell.source for cell in nbformat.read(NOTEBOOK_DIR / notebook, as_version=4).cells
                       if cell.cell_type == "code")
    assert f'run_notebook(cfg, run, "{notebook}", iteration=iteration, checkpoint=checkpoint)' in source
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"IPython.display", "ovlt.study", "ovlt.stages"}, imported  # ovlt.stages: its report module


def test_a_notebook_runs_the_stages_the_study_gives_it_there():
    cfg = two_iterations()
    assert notebook_step(cfg, "00_data.ipynb", None, None).stages == ("data", "decontaminate", "student")
    assert notebook_step(cfg, "02_distill.ipynb", 1, None).stages == ("distill",)
    assert notebook_step(cfg, "02_distill.ipynb", 2, None).stages == ("self_generate",)
    assert notebook_step(cfg, "03_filter.ipynb", 2, None).stages == ("select", "filter")
    assert [r.key for r in notebook_step(cfg, "07_evaluate.ipynb", None, "sft-2").refs] == ["sft-2"]
    with pytest.raises(ValueError, match="runs 01_caption.ipynb for iter1/caption, not for iteration 2"):
        notebook_step(cfg, "01_caption.ipynb", 2, None)


def test_a_notebook_that_leaves_a_stage_unfinished_or_stale_stops_the_study(tmp_path):
    cfg, run = two_iterations(), Run(tmp_path)
    step = Step("00_data.ipynb", None, None, ("data", "decontaminate", "student"))
    for name in step.stages:
        STAGES[name].open(cfg, run, None).finish(counts={})
    check_step_finished(cfg, run, step)
    unfinished = "notebook 00_data.ipynb ran to its end without finishing stage decontaminate: its manifest"
    with pytest.raises(StudyError, match=f"{unfinished} .* is from other parameters or inputs"):
        check_step_finished(two_iterations(decontaminate={"ngram": 5}), run, step)
    (run.stage_dir("decontaminate") / MANIFEST).unlink()
    with pytest.raises(StudyError, match=f"{unfinished} .* does not exist"):
        check_step_finished(cfg, run, step)


def _finished(run: Run, name: str, iteration=None, folder=None) -> dict:
    """A stand-in manifest of a finished stage, with a fingerprint of its own."""
    path = (folder or run.stage_dir(name, iteration)) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"stage": name, "iteration": iteration, "fingerprint": f"{name}@{iteration}"}
    path.write_text(json.dumps(manifest))
    return manifest


def _stage_as_written_before_the_registry(cfg, run, ref) -> Stage:
    """The Stage each stage function built itself before the registry (ovlt at fc9e45b); None for a newer stage."""
    i, m, name = ref.iteration, run.manifest, ref.name
    student = cfg.models.student
    built = {
        "data": lambda: Stage(run, "data", params=cfg.section("seed", "data", "schedule")),
        "decontaminate": lambda: Stage(run, "decontaminate", params=cfg.section("decontaminate"),
                                       inputs=[m("data")]),
        "student": lambda: Stage(run, "student", params={"seed": cfg.seed, **cfg.section("models.student")},
                                 inputs=[m("decontaminate")] if student.name == "tiny" else []),
        # since: the device they sample on (a correctness fix: existing runs redo caption and all downstream once)
        "caption": lambda: Stage(run, "caption", i, params=cfg.section("caption", "models.captioner", "seed", "device"),
                                 inputs=[m("decontaminate")]),
        "distill": lambda: Stage(run, "distill", i, params=cfg.section("distill", "models.reasoner", "seed", "device"),
                                 inputs=[m("caption", i)]),
        "self_generate": lambda: Stage(run, "self_generate", i,
                                       params=cfg.section("self_generate.sampling", "models.student", "seed"),
                                       inputs=[m("decontaminate"), m("grpo", i - 1)]),
        "select": lambda: Stage(run, "select", i, params=cfg.section("select", "seed") | (
            cfg.section("self_generate.max_share") if i > 1 else {}),
            inputs=[m("distill" if i == 1 else "self_generate", i)]),
        "filter": lambda: Stage(run, "filter", i, params=cfg.section("filter", "models.student.name"),
                                inputs=[m("select", i), m("student")]),
        "sft": lambda: Stage(run, "sft", i, params=cfg.section("sft", "models.student", "seed", "device"),
                             inputs=[m("filter", i)]),
        "select_hard": lambda: Stage(run, "select_hard", i, params=cfg.section(
            "select_hard", f"schedule.{i - 1}", "models.student", "seed"), inputs=[m("decontaminate"), m("sft", i)]),
        "grpo": lambda: Stage(run, "grpo", i, params=cfg.section("grpo", "models.student", "seed", "device"),
                              inputs=[m("sft", i), m("select_hard", i)]),
        # since: the pixel bounds and device it samples under (a correctness fix: existing runs evaluate once more)
        "evaluate": lambda: Stage(run, "evaluate", params={"checkpoint": ref.checkpoint, **cfg.section(
            "evaluation", "models.student", "data.image_min_pixels", "data.image_max_pixels", "device")},
                                  inputs=[m("student") if ref.checkpoint == "base" else m(kind, int(number))],
                                  folder=run.eval_dir(ref.checkpoint)),
    }
    kind, _, number = (ref.checkpoint or "").partition("-")
    return built[name]() if name in built else None


@pytest.mark.parametrize("student", ["tiny", "Qwen/Qwen2.5-VL-7B-Instruct"])
def test_fingerprints_and_folders_are_those_the_stages_had_before_the_registry(tmp_path, student):
    """Existing runs resume: every stage of a two-iteration study opens with the fingerprint it had."""
    cfg = two_iterations(models={"student": {"name": student}})
    run = Run(tmp_path)
    for ref in stage_order(cfg):
        if ref.name != "evaluate":
            _finished(run, ref.name, ref.iteration)
    for ref in stage_order(cfg):
        before = _stage_as_written_before_the_registry(cfg, run, ref)
        if before is None:  # a stage added since
            continue
        now = STAGES[ref.name].open(cfg, run, ref.key)
        assert (now.fingerprint, now.dir, now.iteration) == (before.fingerprint, before.dir, before.iteration), ref.label
        assert (now.params, now.input_fingerprints) == (before.params, before.input_fingerprints), ref.label


def test_new_pixel_bounds_evaluate_a_hub_students_base_checkpoint_again(tmp_path):
    """The base checkpoint of a hub student consumes no stage that covers the pixel bounds, and evaluation samples
    under them: its fingerprint must cover them itself, or base and sft-1 are compared at two image sizes."""
    run = Run(tmp_path)
    cfg = two_iterations(models={"student": {"name": "Qwen/Qwen2.5-VL-7B-Instruct"}})
    bigger = two_iterations(models={"student": {"name": "Qwen/Qwen2.5-VL-7B-Instruct"}},
                            data={**cfg.data.model_dump(), "image_max_pixels": 2 * cfg.data.image_max_pixels})
    _finished(run, "student", None)
    fingerprints = [STAGES["evaluate"].open(c, run, "base").fingerprint for c in (cfg, bigger)]
    assert fingerprints[0] != fingerprints[1]


def test_self_generation_in_iteration_1_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match="self_generate runs from iteration 2 on"):
        STAGES["self_generate"].open(two_iterations(), Run(tmp_path), 1)
    with pytest.raises(TypeError, match="stage sft runs per iteration"):
        STAGES["sft"].open(two_iterations(), Run(tmp_path), "sft-1")


def test_the_stage_helper_skips_a_done_stage_redoes_a_changed_one_and_records_what_it_wrote(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "toy", StageSpec("toy", "tests:toy", "00_data.ipynb", RUN, ("seed",),
                                                 writes=("out.txt", "optional.txt")))
    calls, refusals = [], []

    def refuse_when_asked(cfg, run, key):
        if refusals:
            raise FileNotFoundError("not ready")

    @stage("toy", ready=refuse_when_asked)
    def toy(cfg, run, st):
        """A toy stage."""
        calls.append(cfg.seed)
        (st.dir / "out.txt").write_text(str(cfg.seed))
        return Outcome({"seed": cfg.seed}, {"note": "toy"})

    run, cfg = Run(tmp_path), two_iterations()
    first = toy(cfg, run)
    assert calls == [cfg.seed] and first["counts"] == {"seed": cfg.seed} and first["note"] == "toy"
    assert first["outputs"] == ["out.txt"]  # declared and written; optional.txt was not written
    assert toy(cfg, run) == first and calls == [cfg.seed]  # done: not run again
    changed = two_iterations(seed=cfg.seed + 1)
    assert toy(changed, run)["fingerprint"] != first["fingerprint"] and calls == [cfg.seed, cfg.seed + 1]
    refusals.append(True)
    with pytest.raises(FileNotFoundError):
        toy(cfg, run)  # changed back, but not ready: refused before the folder is cleared
    assert (run.stage_dir("toy") / "out.txt").read_text() == str(cfg.seed + 1)
    assert toy.__name__ == "toy" and toy.__doc__ == "A toy stage." and toy.spec is STAGES["toy"]


class FailingBackend(Backend):
    engines = 1

    def __init__(self):
        self.closed = False

    def generate(self, prompts, images, params):
        raise RuntimeError("generation failed")

    def close(self):
        self.closed = True


@pytest.fixture
def generation_run(tmp_path):
    """A run with a decontaminated pool, a held-out set and stand-ins of the student and SFT-1 checkpoints, and a
    config whose every model samples with a generation backend."""
    cfg = two_iterations(schedule=[{"sft_problems": 4, "grpo_candidates": 4, "grpo_problems": 2}] * 2,
                         models={"captioner": {"name": "some/captioner", "backend": "transformers"},
                                 "reasoner": {"name": "some/reasoner", "backend": "transformers"}})
    run = Run(tmp_path)
    st = Stage(run, "decontaminate")
    st.begin()
    save_dataset(generate(16, 0, "train"), st.dir / "train")
    st.finish(counts={})
    save_dataset(generate(4, 0, "test"), run.stage_dir("data") / "heldout")
    for name, iteration in (("student", None), ("sft", 1), ("grpo", 1)):
        _finished(run, name, iteration)
    return cfg, run


@pytest.mark.parametrize("stage_call", [
    ("teachers", "caption", 1), ("teachers", "self_generate", 2), ("curation", "select_hard", 1),
    ("evaluation", "evaluate", "base"), ("evaluation", "sampled_accuracy", "base", 2)])
def test_a_failing_generation_closes_the_backend(generation_run, monkeypatch, stage_call):
    import importlib

    module_name, function, *args = stage_call
    module = importlib.import_module(f"ovlt.stages.{module_name}")
    backend = FailingBackend()
    monkeypatch.setattr(module, "study_backend", lambda cfg, spec, model_path=None: backend)
    cfg, run = generation_run
    with pytest.raises(RuntimeError, match="generation failed"):
        getattr(module, function)(cfg, run, *args)
    assert backend.closed
    assert not list(run.root.glob(f"**/{function}/{MANIFEST}")) and not (run.eval_dir("base") / MANIFEST).exists()


def test_backends_close_when_a_with_block_fails():
    from ovlt.engines.generation import DataParallelBackend, TransformersBackend, VLLMBackend

    assert all(cls.__exit__ is Backend.__exit__ for cls in (TransformersBackend, VLLMBackend, DataParallelBackend))

    class Closing(Backend):
        closed = False

        def close(self):
            self.closed = True

    with pytest.raises(RuntimeError), Closing() as backend:
        raise RuntimeError("failed inside")
    assert backend.closed


def test_the_registry_and_the_study_order_load_no_model_library():
    code = ("import sys, ovlt.stages.registry, ovlt.study.order, ovlt.study.plan;"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stage_outputs_are_read_through_their_declarations(tmp_path):
    from ovlt.stages.registry import chains_stage, output

    run = Run(tmp_path)
    assert output(run, "filter", "sft", 2) == run.stage_dir("filter", 2) / "sft"
    assert output(run, "select_hard", "sets/hard", 1) == run.stage_dir("select_hard", 1) / "sets" / "hard"
    assert output(run, "data", "heldout") == run.stage_dir("data") / "heldout"
    with pytest.raises(KeyError, match="stage filter declares no output 'selected'"):
        output(run, "filter", "selected", 1)
    with pytest.raises(TypeError, match="stage filter runs per iteration"):
        output(run, "filter", "sft")
    assert [chains_stage(i) for i in (1, 2, 3)] == ["distill", "self_generate", "self_generate"]
    assert STAGES["select"].upstream(two_iterations(), 2) == [("self_generate", 2)]
