"""The study report: rendered from a test-sized run through papermill + nbconvert, then checked for content,
real figures, numbers that match summary.json, size, escaping, graceful gaps, and a headless browser."""

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from ovlt.stages.report import PAPER_COLUMN

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
MAX_BYTES = 10 * 1024 * 1024


# --- the rendered report -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(study_run, tmp_path_factory) -> Path:
    from ovlt.study import render_report

    return render_report(study_run, tmp_path_factory.mktemp("reports") / "report-test")


@pytest.fixture(scope="module")
def soup(rendered):
    from bs4 import BeautifulSoup

    return BeautifulSoup(rendered.read_text(encoding="utf-8"), "html.parser")


@pytest.fixture(scope="module")
def summary(study_run) -> dict:
    return json.loads((study_run / "summary.json").read_text())


def section_titles() -> list[str]:
    notebook = json.loads((REPO / "notebooks" / "08_report.ipynb").read_text())
    return [line.lstrip("#").strip() for cell in notebook["cells"] if cell["cell_type"] == "markdown"
            for line in "".join(cell["source"]).splitlines() if line.startswith("#")]


def table_with(soup, column: str) -> list[dict]:
    """Rows of the rendered DataFrame whose header has `column`: {index level / column name: cell text}.
    Row index levels are <th> cells; a leading level spans rows (rowspan), so it is carried down."""
    for table in soup.find_all("table"):
        header_rows = table.find("thead").find_all("tr") if table.find("thead") else []
        if not any(column == th.get_text(strip=True) for tr in header_rows for th in tr.find_all("th")):
            continue
        columns = [th.get_text(strip=True) for th in header_rows[0].find_all("th")]
        levels = [th.get_text(strip=True) for th in header_rows[-1].find_all("th")] if len(header_rows) > 1 else []
        levels = [name for name in levels if name]
        names = levels + [c for c in columns if c]
        rows, carried = [], []
        for tr in table.find("tbody").find_all("tr"):
            index = [th.get_text(strip=True) for th in tr.find_all("th")]
            carried = carried[: len(levels) - len(index)] + index
            rows.append(dict(zip(names, carried + [td.get_text(strip=True) for td in tr.find_all("td")], strict=True)))
        return rows
    raise AssertionError(f"no table with a column {column!r} in the report")


@pytest.mark.slow
def test_every_section_is_rendered_without_errors(soup):
    headings = {h.get_text(strip=True).rstrip("¶") for h in soup.find_all(["h1", "h2"])}
    titles = section_titles()
    assert len(titles) >= 9
    for title in titles:
        assert title in headings, f"section {title!r} missing from the report"
    assert "Traceback" not in soup.get_text()
    assert not soup.select('[data-mime-type="application/vnd.jupyter.stderr"]'), "a cell wrote to stderr"
    # the test run has every stage, so no section may fall back to its "nothing yet" note
    notes = [p.get_text() for p in soup.select("p.ovlt-note")]
    assert notes == [], notes


@pytest.mark.slow
def test_figures_are_real_png_images(soup):
    figures, thumbnails = [], []
    for img in soup.find_all("img"):
        src = img.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:60]
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        (thumbnails if img.get("alt") == "problem image" else figures).append(image)
    # accuracy, 1 breakdown figure per benchmark, funnel, difficulty, reflections, SFT and GRPO curves
    assert len(figures) >= 7
    for image in figures:
        assert image.format == "PNG" and image.width > 250 and image.height > 150
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 5, "a blank figure"
    assert thumbnails, "the reasoning traces show no problem image"
    assert all(max(t.size) <= 112 for t in thumbnails)


def protocol_label(result: dict) -> str:
    return result["protocol"] if result["scorer"] == result["protocol"] else f"{result['protocol']} ({result['scorer']})"


@pytest.mark.slow
def test_accuracy_table_matches_summary(soup, summary):
    rows = {(r["benchmark"], r["protocol"], r["stage"]): r for r in table_with(soup, "accuracy (%)")}
    expected = 0
    for stage in summary["stages"]:
        for m in stage["results"]:
            row = rows[m["entry"], protocol_label(m), stage["name"]]
            assert row["accuracy (%)"] == f"{100 * m['accuracy']:.1f}"
            assert row["95% CI (%)"] == f"[{100 * m['ci95'][0]:.1f}, {100 * m['ci95'][1]:.1f}]"
            assert row["n"] == str(m["n"])
            assert row["prompt"] == m["prompt"]
            assert row["student"] == "tiny Qwen2.5-VL (built locally)"  # whose numbers they are
            assert PAPER_COLUMN not in row  # the paper's figures stand only beside the authors protocol's
            expected += 1
    for entry, baseline in summary["baselines"].items():
        assert rows[entry, "-", "majority answer"]["accuracy (%)"] == f"{100 * baseline:.1f}"
        expected += 1
    assert len(rows) == expected


@pytest.mark.slow
def test_reference_rows_carry_the_protocol(soup):
    rows = table_with(soup, PAPER_COLUMN)
    assert rows and {r["protocol"] for r in rows} == {"authors"}
    note = soup.select_one("p.ovlt-reference").get_text()
    assert "50.2" in note and "GPT-4o" in note and "authors" in note


@pytest.mark.slow
def test_comparisons_table_matches_summary(soup, summary):
    rows = {(r["benchmark"], r["protocol"], r["comparison"], r["measure"]): r
            for r in table_with(soup, "difference (points)")}
    assert len(rows) == len(summary["comparisons"]) > 0
    for c in summary["comparisons"]:
        row = rows[c["entry"], c["protocol"], f"{c['from']} -> {c['to']}", c["measure"]]
        assert row["difference (points)"] == f"{100 * c['diff']:+.1f}"
        assert row["prompt"] == c["prompt"]
        assert row["significant (CI excludes 0)"] == ("yes" if c["significant"] else "no")


@pytest.mark.slow
def test_kind_table_matches_summary_and_chance(soup, summary, study_run):
    """Per question kind: every stage's accuracy from summary.json's breakdowns, beside the kind's majority-answer
    accuracy computed independently here from the held-out answers."""
    from collections import Counter, defaultdict

    from ovlt.ground.artifacts import load_dataset_dir
    from ovlt.ground.procedural import kind_key

    heldout = load_dataset_dir(study_run / "data" / "heldout").remove_columns("image")
    answers = defaultdict(Counter)
    for problem in heldout:  # the majority answer's share per kind (option position for multiple choice)
        answer = problem["choices"].index(problem["answer"]) if problem["choices"] else problem["answer"]
        answers[kind_key(problem)][answer] += 1
    rows = {r["kind"]: r for r in table_with(soup, "majority answer")}
    assert set(rows) == set(answers) and len(rows) >= 2
    for kind, counts in answers.items():
        assert rows[kind]["n"] == str(sum(counts.values()))
        assert rows[kind]["majority answer"] == f"{100 * counts.most_common(1)[0][1] / sum(counts.values()):.1f}"
        for stage in summary["stages"]:
            [result] = [r for r in stage["results"] if r["entry"] == "synthetic"]
            by_kind = result["breakdowns"]["kind"]
            assert rows[kind]["protocol"] == result["protocol"]
            assert rows[kind][stage["name"]] == f"{100 * by_kind[kind]['accuracy']:.1f}"
    assert sum(by_kind[k]["total"] for k in by_kind) == result["n"]


@pytest.mark.slow
def test_funnel_table_matches_the_filter_manifest(soup, study_run):
    funnel = json.loads((study_run / "iter1" / "filter" / "manifest.json").read_text())["funnel"]
    rows = {(r["iteration"], r["source"]): r for r in table_with(soup, "with_correct")}
    for source, steps in [("all", funnel["total"]), *funnel["by_source"].items()]:
        for step in steps:
            assert rows["1", source][step["step"]] == str(step["count"])


@pytest.mark.slow
def test_report_is_small(rendered):
    assert 10_000 < rendered.stat().st_size < MAX_BYTES


# --- functions on edited copies of the run (fast once the run exists) ----------------------------------------


def copy_run(study_run: Path, to: Path) -> Path:
    """The run without its model checkpoints (the report never reads weights)."""
    shutil.copytree(study_run, to, ignore=shutil.ignore_patterns("checkpoint", "tb"))
    return to


@pytest.mark.slow
def test_model_text_is_escaped(study_run, tmp_path):
    from ovlt.stages import report

    run = report.load(copy_run(study_run, tmp_path / "run"))
    # U+2028 and U+0085 end a line for str.splitlines but sit unescaped inside JSON strings, as evaluate writes them
    evil = '<script>alert("x")</script>\u2028\x85<img src=x onerror=alert(1)>'
    for path in (run.root / "eval").glob("*/*/predictions.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [{**r, "response": evil, "verdicts": {p: {**v, "extracted": evil} for p, v in r["verdicts"].items()}}
                for r in rows]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    traces = report.trace_table(run, n=40).data
    assert "<script>" not in traces and "onerror=alert" not in traces.replace(html.escape(evil), "")
    assert html.escape(evil) in traces


@pytest.mark.slow
def test_missing_stages_become_notes(study_run, tmp_path):
    from IPython.display import HTML

    from ovlt.stages import report

    run = report.load(copy_run(study_run, tmp_path / "run"))
    shutil.rmtree(run.root / "iter1" / "grpo")
    shutil.rmtree(run.root / "eval" / "grpo-1")
    assert isinstance(report.training_curves(run, "grpo"), HTML)
    assert isinstance(report.training_curves(run, "sft", iteration=2), HTML)
    assert isinstance(report.funnel_table(run, iteration=2), HTML)
    assert "grpo-1" not in report.accuracy_table(run).index.get_level_values("stage")
    assert "eval grpo-1" not in report.reflection_table(run).index
    shutil.rmtree(run.root / "iter1")
    for section in (report.funnel_figure, report.funnel_table, report.filter_examples, report.difficulty_histogram,
                    report.reflection_figure, report.headline, report.provenance, report.accuracy_figure):
        assert section(run) is not None


def test_load_names_the_missing_summary(tmp_path):
    from ovlt.ground.artifacts import ArtifactError
    from ovlt.stages import report

    with pytest.raises(ArtifactError, match=re.escape(str(tmp_path / "summary.json"))):
        report.load(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        report.load(tmp_path / "nowhere")


def test_paper_values_follow_benchmark_families():
    from ovlt.stages import report

    assert report.paper_values("mathvista") == report.paper_values("mathvista_testmini")
    assert report.paper_values("mathvista")["base"] < report.paper_values("mathvista")["grpo-3"]
    assert report.paper_values("synthetic") == {}
    assert report.paper_values("mathvista", "official") == report.paper_values("mathvista", "strict") == {}


# --- a real browser -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_report_renders_in_headless_chromium(rendered, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = subprocess.run([browser, *flags, f"--screenshot={screenshot}", "--window-size=1280,2000",
                           rendered.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console
    image = Image.open(screenshot)
    image.load()
    assert image.format == "PNG" and image.size == (1280, 2000)
    assert max(ImageStat.Stat(image.convert("L")).stddev) > 10, "the screenshot is blank"


@pytest.mark.slow
def test_grpo_effect_names_the_measures_and_counts_the_flips(soup, summary, study_run):
    """The report's paragraph on each GRPO against its SFT model: every measure's change from summary.json, and
    the greedy flips counted here independently from the two checkpoints' predictions."""
    text = " ".join(soup.get_text(" ").split())
    [greedy] = [c for c in summary["comparisons"]
                if (c["from"], c["to"], c["measure"]) == ("sft-1", "grpo-1", "greedy")]
    assert "GRPO-1 against SFT-1" in text
    for c in summary["comparisons"]:
        if (c["from"], c["to"]) == ("sft-1", "grpo-1"):
            assert f"{c['measure']} {100 * c['diff']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]" in text
    if greedy["significant"] and greedy["diff"] > 0:
        assert "Why greedy accuracy did not rise" not in text.split("GRPO-1 against SFT-1")[1].split("GRPO-2")[0]
        return

    def verdicts(checkpoint):
        lines = (study_run / "eval" / checkpoint / "synthetic" / "predictions.jsonl").read_text().splitlines()
        return {row["id"]: row["verdicts"][greedy["protocol"]]["correct"] for row in map(json.loads, lines)}

    before, after = verdicts("sft-1"), verdicts("grpo-1")
    gained = sum(after[i] and not before[i] for i in before)
    lost = sum(before[i] and not after[i] for i in before)
    assert (f"of {len(before)} items, the greedy verdict flipped on {gained + lost} ({gained} wrong to right, "
            f"{lost} right to wrong)") in text


# --- the GRPO reward curves and the GRPO effect, on small hand-made runs -------------------------------------


def grpo_logged_run(folder: Path, config: Path | None) -> Path:
    """A run folder with one finished GRPO stage whose log carries TRL's keys for the released recipe's rewards."""
    stage = folder / "iter1" / "grpo"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text("{}")
    rows = [{"step": step, "reward": 0.1 * step, "rewards/r1v_reward/mean": 0.1 * step,
             "rewards/r1v_format_reward/mean": 0.5, "kl": 0.01 * step, "completions/mean_length": 40 + step}
            for step in range(1, 4)]
    (stage / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if config is not None:
        shutil.copy(config, folder / "config.yaml")
    return folder


def not_logged(figure) -> list[str]:
    return [axes.get_title() for axes in figure.axes if any(t.get_text() == "not logged" for t in axes.texts)]


def test_grpo_reward_curves_follow_the_configs_reward_funcs(tmp_path):
    """The released recipe rewards r1v_reward: its curve is drawn, not an accuracy_reward panel saying "not logged"."""
    from helpers import write_test_config

    from ovlt.ground.artifacts import Run
    from ovlt.stages import report

    config = write_test_config(tmp_path, grpo={"reward_funcs": ["r1v_reward", "r1v_format_reward"],
                                               "format_reward_weight": 0.0})
    run = Run(grpo_logged_run(tmp_path / "run", config))
    assert report.grpo_curves(run) == (("reward", "reward (total)"), ("rewards/r1v_reward/mean", "r1v reward"),
                                       ("rewards/r1v_format_reward/mean", "r1v format reward"),
                                       ("kl", "KL to the reference"),
                                       ("completions/mean_length", "completion length (tokens)"))
    figure = report.training_curves(run, "grpo")
    assert [axes.get_title() for axes in figure.axes] == [title for _, title in report.grpo_curves(run)]
    assert not_logged(figure) == []

    # the paper's recipe names accuracy_reward: against this log its panel says so, the others still draw
    (tmp_path / "paper").mkdir()
    config = write_test_config(tmp_path / "paper", grpo={"reward_funcs": ["accuracy_reward", "format_reward"]})
    run = Run(grpo_logged_run(tmp_path / "paper-run", config))
    assert not_logged(report.training_curves(run, "grpo")) == ["accuracy reward", "format reward"]

    # a run without a config: every reward its log carries
    run = Run(grpo_logged_run(tmp_path / "bare-run", None))
    figure = report.training_curves(run, "grpo")
    assert [axes.get_title() for axes in figure.axes][1:3] == ["r1v reward", "r1v format reward"]
    assert not_logged(figure) == []


RIGHT, WRONG = "<think>x</think><answer>No</answer>", "<think>x</think><answer>Yes</answer>"


def grpo_evaluated_run(tmp_path, monkeypatch):
    """SFT-1 and GRPO-1 evaluated on three items (gold "No"), four samples each, by a stand-in backend: GRPO-1 turns
    C's greedy answer right (its samples stay at one right) and raises A's right samples from 2 to 4."""
    from helpers import MATHVISTA, evaluated_run, mathvista_record

    from ovlt.ground.artifacts import atomic_write_json

    a, b = (mathvista_record(r) for r, _ in MATHVISTA[1:])
    c = mathvista_record({**MATHVISTA[1][0], "id": "4", "question": "Is the ball square?"})
    entries, sampled = [{"name": "mathvista_testmini", "protocol": "strict"}], {"sampled": {"n": 4}}
    sft = {"mathvista_testmini": [(a, [RIGHT, RIGHT, WRONG, WRONG]), (b, [WRONG] * 4), (c, [WRONG, RIGHT, WRONG, WRONG])]}
    grpo = {"mathvista_testmini": [(a, [RIGHT] * 4), (b, [WRONG] * 4), (c, [RIGHT, WRONG, WRONG, WRONG])]}
    cfg, run, _ = evaluated_run(tmp_path, monkeypatch, entries, sft, checkpoint="sft-1", **sampled)
    atomic_write_json(run.stage_dir("grpo", 1) / "manifest.json", {"stage": "grpo", "fingerprint": "stand-in",
                                                                  "wall_seconds": 0.0})
    evaluated_run(tmp_path, monkeypatch, entries, grpo, checkpoint="grpo-1", **sampled)
    return cfg, run


def test_grpo_effect_numbers_are_stored_by_write_summary_and_put_in_words(tmp_path, monkeypatch):
    from ovlt.stages import report
    from ovlt.stages.evaluation import write_summary

    cfg, run = grpo_evaluated_run(tmp_path, monkeypatch)
    summary = write_summary(cfg, run, config_path=tmp_path / "test-study.yaml")
    assert summary["grpo_effects"] == [{
        "from": "sft-1", "to": "grpo-1", "benchmark": "mathvista_testmini", "entry": "mathvista_testmini",
        "prompt": "paper", "protocol": "strict", "items": 3, "sft_right": 1, "sft_wrong": 2, "wrong_to_right": 1,
        "right_to_wrong": 0, "share_change_on_right": 0.5, "share_change_on_wrong": 0.0, "k": 4}]
    assert json.loads(run.summary_path.read_text())["grpo_effects"] == summary["grpo_effects"]
    [greedy] = [c for c in summary["comparisons"] if c["measure"] == "greedy"]
    assert not greedy["significant"]  # one flip in three items: the interval includes 0

    text = " ".join(report.grpo_effect(run).data.split())
    assert ("Why greedy accuracy did not rise: of 3 items, the greedy verdict flipped on 1 (1 wrong to right, 0 right "
            "to wrong). The share of right samples changed by +50.0 points on the 1 items SFT-1 answered right "
            "greedily and by +0.0 points on the 2 it answered wrong: GRPO concentrated the samples on the answer "
            "greedy decoding already gave, right or wrong, rather than changing that answer.") in text
    assert "ovlt-note" not in text

    # a summary.json written before it stored the counts: the paragraph without the why, and a note saying so
    old = {k: v for k, v in summary.items() if k != "grpo_effects"}
    run.summary_path.write_text(json.dumps(old))
    text = " ".join(report.grpo_effect(run).data.split())
    assert "GRPO-1 against SFT-1" in text and "Why greedy accuracy did not rise:" not in text
    assert 'class="ovlt-note"' in text and "no counts of the greedy flips (grpo_effects" in text
