"""Each notebook alone, as a person runs it from JupyterLab: on an empty run folder every notebook after 00_data
stops at once with one sentence naming what to run first (00_data itself does its job: every study starts with
it on an empty folder, test_study.py), and the report notebook on a study still running shows what exists."""

import shutil
import time

import nbformat
import pytest
from helpers import write_test_config

from ovlt.ground.config import load_config
from ovlt.study.notebooks import NOTEBOOK_DIR, NotebookStop, StudyError, execute, run_notebook

ALONE = sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb") if not path.name.startswith("00_"))


def _parameters(notebook: str, config, run_dir) -> dict:
    if notebook == "08_report.ipynb":
        return {"run_dir": str(run_dir)}
    checkpoint = "sft-1" if notebook == "07_evaluate.ipynb" else ""
    return {"config": str(config), "run_dir": str(run_dir), "iteration": 0 if checkpoint else 1,
            "checkpoint": checkpoint}


@pytest.mark.parametrize("notebook", ALONE)
def test_a_notebook_alone_on_an_empty_run_folder_names_what_to_run_first(notebook, tmp_path):
    config, run_dir, output = write_test_config(tmp_path), tmp_path / "runs" / "alone", tmp_path / notebook
    start = time.perf_counter()
    with pytest.raises(StudyError) as info:
        execute(NOTEBOOK_DIR / notebook, output, _parameters(notebook, config, run_dir), notebook,
                log_path=tmp_path / "study.log")
    assert time.perf_counter() - start < 60  # at once: a kernel start, no stage
    message = str(info.value)
    wanted = "make reproduce" if notebook == "08_report.ipynb" else "run notebooks/00_data.ipynb first"
    assert "NotebookStop: " in message and wanted in message, message
    # In the notebook: the one sentence, not a traceback from inside the library.
    [error] = [o for cell in nbformat.read(output, as_version=4).cells for o in cell.get("outputs", [])
               if o.output_type == "error"]
    assert len(error.traceback) == 1 and error.traceback[0].startswith("NotebookStop: ") and "\n" not in error.traceback[0]
    assert not list(run_dir.glob("**/manifest.json"))  # nothing ran


@pytest.mark.slow
def test_a_stage_notebook_names_the_earliest_stage_missing(study_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(study_run, run_dir)
    for stage in ("select", "filter", "sft"):
        shutil.rmtree(run_dir / "iter1" / stage)
    cfg = load_config(run_dir / "config.yaml")
    from ovlt.ground.artifacts import Run

    with pytest.raises(NotebookStop, match=r"iter1/grpo needs iter1/select, which has not run in .*: run "
                                           r"notebooks/03_filter.ipynb with iteration = 1 first"):
        run_notebook(cfg, Run(run_dir), "06_grpo.ipynb", iteration=1)
    assert (run_dir / "iter1" / "grpo" / "manifest.json").exists()  # nothing was touched


@pytest.mark.slow
def test_the_report_notebook_on_a_study_still_running_shows_what_exists(study_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(study_run, run_dir)
    (run_dir / "summary.json").unlink()
    shutil.rmtree(run_dir / "eval" / "grpo-1")
    output = tmp_path / "08.ipynb"
    execute(NOTEBOOK_DIR / "08_report.ipynb", output, {"run_dir": str(run_dir)}, "report", log_path=tmp_path / "log")
    text = "".join(str(o) for cell in nbformat.read(output, as_version=4).cells for o in cell.get("outputs", []))
    assert "has not finished (no summary.json yet)" in text and "sft-1" in text
