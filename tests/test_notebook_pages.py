"""A stage notebook reads as a page: saved by `ovlt reproduce`, it keeps no progress frame, no library warning and
no stderr, and shows a card per stage and the counts as a table; run in a Jupyter kernel (as JupyterLab runs it), its
progress still arrives live and without tqdm's widget warning."""

import json
import queue
import time

import nbformat
import pytest

from ovlt.study.card import counts_table
from ovlt.study.notebooks import (
    NOTEBOOK_DIR,
    PROGRESS_FRAME,
    REPORT_NOTEBOOK,
    STAGE_CELL,
    clean_output_list,
    shown_text,
)
from ovlt.study.order import steps

STAGE_NOTEBOOKS = sorted(path.name for path in NOTEBOOK_DIR.glob("0*.ipynb") if path.name != REPORT_NOTEBOOK)


def _stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def _html(text: str) -> dict:
    return {"output_type": "display_data", "data": {"text/html": text, "text/plain": "<HTML>"}, "metadata": {}}


def test_a_saved_cell_keeps_real_prints_and_drops_frames_warnings_and_widgets():
    outputs = [
        _stream("stderr", "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets."),
        _stream("stderr", "\rdistill:   6%|▌         | 2/32 [00:01<00:15,  1.9prompt/s]"),
        _stream("stdout", "\rSaving the dataset (0/1 shards):   0%|          | 0/45 [00:00<?, ? examples/s]"
                          "\rSaving the dataset (1/1 shards): 100%|██████████| 45/45 [00:00<00:00]\n"),
        _stream("stdout", "kept 25 of 32\n\n  0%|          | 0/4 [00:00<?, ?it/s]\x1b[A\n 25%|██▌       | 1/4\n"),
        {"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                                                 "text/plain": "HBox()"}, "metadata": {}},
        _html("<table>counts</table>"),
    ]
    kept = clean_output_list(outputs)
    assert kept == [_stream("stdout", "kept 25 of 32\n"), _html("<table>counts</table>")]


def test_a_stage_cell_keeps_only_its_error_and_what_led_there():
    chatter = [_stream("stderr", "12:00:01 ovlt.stages.training.sft: iter1/sft: SFT from base\n"),
               _html("<table><tr><th>Step</th><th>Training Loss</th></tr><tr><td>1</td><td>No Log</td></tr></table>"),
               _stream("stdout", "{'loss': 6.9}\n")]
    assert clean_output_list(chatter, stage_cell=True) == []
    error = {"output_type": "error", "ename": "LaunchError", "evalue": "exit 1", "traceback": ["LaunchError: exit 1"]}
    kept = clean_output_list([*chatter, _stream("stderr", "\rgenerate:  50%|#####     | 2/4"), error], stage_cell=True)
    assert kept == [chatter[0], chatter[2], error]


def test_shown_text_is_what_a_terminal_ends_up_showing():
    assert shown_text("a\rb\n\rgenerate:  40%|####      | 4/10 [00:01<00:02]\nc\n") == "b\nc"
    assert shown_text("\x1b[A\n                     \n") == ""
    assert PROGRESS_FRAME.match("Loading weights: 100%|██████████| 44/44 [00:00<00:00, 29471.32it/s]")
    assert not PROGRESS_FRAME.match("accuracy: 45% | n 24")


def test_counts_become_a_small_table_with_a_column_per_source():
    manifests = {"caption": {"counts": {"in": 32, "out": 30, "dropped": {"empty": 2}, "by_source": {
        "synthetic/chart": {"in": 17, "out": 16, "dropped": {"empty": 1}},
        "synthetic/counting": {"in": 15, "out": 14, "dropped": {"empty": 1}}}}},
                 "evaluate": {"counts": {"synthetic": {"items": 24, "strict": {"accuracy": 0.125, "correct": 3}},
                                         "train_by_source": {"synthetic/chart": 3}}}}
    table = counts_table(manifests)
    assert list(table.columns) == ["count", "synthetic/chart", "synthetic/counting"]
    assert table.loc[("caption", "dropped / empty")].tolist() == ["2", "1", "1"]
    assert table.loc[("evaluate", "synthetic / strict / accuracy"), "count"] == "12.5%"
    assert table.loc[("evaluate", "train")].tolist() == ["3", "3", ""]
    single = counts_table({"sft": {"counts": {"examples": 1200, "steps": 4}}})
    assert single.index.name == "what" and single["count"].tolist() == ["1,200", "4"]


@pytest.mark.parametrize("notebook", STAGE_NOTEBOOKS)
def test_a_stage_notebook_runs_its_stages_in_one_tagged_cell_then_shows_card_counts_and_evidence(notebook):
    cells = [cell for cell in nbformat.read(NOTEBOOK_DIR / notebook, as_version=4).cells if cell.cell_type == "code"]
    [stage] = [cell for cell in cells if STAGE_CELL in cell.metadata.get("tags", [])]
    assert stage.source.startswith("manifests = run_notebook(") and "\n" not in stage.source
    after = "\n".join(cell.source for cell in cells[cells.index(stage) + 1:])
    assert "stage_cards(cfg, run, manifests)" in after and "counts_table(manifests)" in after and "report." in after


def _run_in_kernel(code: str, timeout: float = 120) -> list[tuple[float, str, str]]:
    """Execute `code` in a fresh kernel of this Python, as JupyterLab does; returns its stream messages with the
    seconds each arrived after the request, up to the kernel's idle."""
    from jupyter_client.manager import start_new_kernel

    from ovlt.study.notebooks import kernel_for_this_python

    manager, client = start_new_kernel(kernel_name=kernel_for_this_python())
    try:
        start = time.monotonic()
        msg_id = client.execute(code)
        streams = []
        while time.monotonic() - start < timeout:
            try:
                msg = client.get_iopub_msg(timeout=5)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            if msg["msg_type"] == "stream":
                streams.append((time.monotonic() - start, content["name"], content["text"]))
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(content["traceback"]))
            elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
                return streams
        raise AssertionError(f"the kernel did not finish in {timeout} s")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_in_a_jupyter_kernel_progress_arrives_live_and_without_the_widget_warning():
    streams = _run_in_kernel(
        "import time\n"
        "from ovlt.study import open_study, run_notebook  # a stage notebook's first import\n"
        "import datasets  # a library that imports tqdm.auto\n"
        "from ovlt.ground.progress import tqdm\n"
        "for _ in tqdm(range(5), desc='generate', mininterval=0):\n"
        "    time.sleep(0.4)\n")
    text = "".join(s for _, _, s in streams)
    assert "TqdmWarning" not in text and "IProgress" not in text, text
    frames = [(t, s) for t, _, s in streams if "generate:" in s]
    # live: one frame after another while the loop runs, not all at once at the end
    assert len(frames) >= 4 and frames[-1][0] - frames[0][0] > 1.0, frames
    assert "\r" in text and "5/5" in frames[-1][1]


@pytest.mark.slow
def test_saved_notebooks_of_a_study_read_as_pages(study_run):
    from ovlt.ground.config import load_config

    cfg = load_config(study_run / "config.yaml")
    for step in steps(cfg):
        path = study_run / "notebooks" / step.output_name
        notebook = nbformat.read(path, as_version=4)
        outputs = [(cell, o) for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
        streams = [o for _, o in outputs if o.output_type == "stream"]
        assert not [o for o in streams if o.name == "stderr"], f"{path.name}: stderr kept"
        for o in streams:
            assert "TqdmWarning" not in o.text and not any(PROGRESS_FRAME.match(line) for line in o.text.split("\n"))
        assert not [o for cell, o in outputs if STAGE_CELL in cell.metadata.get("tags", [])], path.name
        html = "".join(o.get("data", {}).get("text/html", "") for _, o in outputs)
        assert html.count("class='ovlt-card'") == len(step.refs), path.name
        assert "<th>count</th>" in html or ">count</th>" in html, f"{path.name}: no counts table"
        if step.notebook == "04_sft.ipynb":
            assert "TRL arguments that differ from TRL" in html and "learning_rate" in html
        if step.notebook == "03_filter.ipynb":
            assert " rows · " in html  # the SFT set's size
    report = nbformat.read(study_run / "notebooks" / REPORT_NOTEBOOK, as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in report.cells])
    assert "TqdmWarning" not in text and '"name": "stderr"' not in text
