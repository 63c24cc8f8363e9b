"""What a stage notebook shows about its stages once they have run: a card per stage and the counts as a table.

A stage card says what ran and how: the effective settings its fingerprint covers (as its manifest records them),
for the training stages the TRL arguments that differ from TRL's own defaults, the stages it read and what it wrote
(rows of a data set, lines of a JSON-lines file, bytes of a checkpoint), and its wall time. Everything comes from the
run folder (the manifests and the files they name) and, for the TRL arguments, from the same pure functions that
build them for the trainer (`sft_args`, `grpo_args`), so a card shows what the stage ran with, not a copy of it.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ovlt.ground.artifacts import MANIFEST, Run
from ovlt.ground.config import StudyConfig
from ovlt.stages.registry import CHECKPOINT, ITERATION, RUN, STAGES, Key

if TYPE_CHECKING:  # imported where used: `ovlt.study` (and so `ovlt reproduce`) loads neither pandas nor IPython
    import pandas as pd
    from IPython.display import HTML

TRAINING = ("sft", "grpo")
# Manifest fields every stage writes; any other field is the stage's own record (its teacher, its training summary).
STANDARD_FIELDS = {"stage", "iteration", "fingerprint", "params", "inputs", "counts", "outputs", "wall_seconds",
                   "finished_at", "packages", "git_commit"}
SETTING_CHARS = 160  # a setting's value is cut there (the config file has it whole)
INLINE_ITEMS = 20  # a record with up to this many plain values shows them, a row each (its nested values never)
SOURCES = "by_source"  # a counts key holding the same counts per data source: shown as columns
PER_SOURCE = "_by_source"  # `<what>_by_source`: one count per data source, shown in the row `<what>`

STYLE = """<style>
.ovlt-card {border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px 10px; margin: 6px 0 12px;
  font-size: 12.5px; line-height: 1.45; max-width: 1180px}
.ovlt-card .ovlt-title {font-size: 15px; font-weight: 600; margin-bottom: 4px}
.ovlt-card .ovlt-title span {font-weight: normal; color: #57606a; font-size: 12.5px}
.ovlt-card h4 {margin: 8px 0 3px; font-size: 12.5px; font-weight: 600; color: #24292f}
.ovlt-card .ovlt-settings {column-width: 330px; column-gap: 28px}
.ovlt-card .ovlt-kv {break-inside: avoid; padding: 1px 0; display: flex; gap: 10px}
.ovlt-card .ovlt-kv .ovlt-k {flex: 0 0 auto; color: #57606a}
.ovlt-card .ovlt-kv .ovlt-v {flex: 1 1 auto; overflow-wrap: anywhere}
.ovlt-card .ovlt-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(330px, 1fr)); gap: 0 28px}
.ovlt-card table {border-collapse: collapse; margin: 0}
.ovlt-card td, .ovlt-card th {text-align: left !important; vertical-align: top; padding: 1px 14px 1px 0 !important;
  border: none !important; font-size: 12.5px; white-space: normal}
.ovlt-card th {color: #57606a; font-weight: 600}
.ovlt-card code {font-size: 12px}
.ovlt-card .ovlt-note {color: #57606a; font-size: 11.5px; margin-top: 8px}
</style>"""


# --- values, sizes and times ---------------------------------------------------------------------------------------


def _short(value, limit: int = 90, nested: bool = False) -> str:
    """A value on one line: a dict as `key=value, ...` (in braces inside another value), at most `limit` characters."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v, limit, nested=True)}" for k, v in value.items())
        text = f"{{{text}}}" if nested or not text else text
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_short(v, limit, nested=True) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def bytes_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _dataset_rows(path: Path) -> int | None:
    """Rows of a `datasets` folder (save_to_disk), from its Arrow files' metadata; None for any other folder."""
    state = path / "state.json"
    if not state.is_file():
        return None
    import pyarrow as pa

    rows = 0
    for entry in json.loads(state.read_text()).get("_data_files", []):
        with pa.memory_map(str(path / entry["filename"])) as source:
            rows += sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    return rows


def size_text(path: Path) -> str:
    """What a stage output holds: rows of a data set (or of its named sets), lines of a JSON-lines file, and bytes."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_file():
        size = bytes_text(path.stat().st_size)
        if path.suffix == ".jsonl":
            with open(path, "rb") as handle:
                lines = sum(1 for line in handle if line.strip())
            return f"{lines:,} lines · {size}"
        return size
    size = bytes_text(_folder_bytes(path))
    rows = _dataset_rows(path)
    if rows is not None:
        return f"{rows:,} rows · {size}"
    sets = {child.name: _dataset_rows(child) for child in sorted(path.iterdir()) if child.is_dir()}
    if sets and all(n is not None for n in sets.values()):
        return ", ".join(f"{name} {n:,} rows" for name, n in sets.items()) + f" · {size}"
    if (path / "config.json").is_file():
        return f"model · {size}"
    files = sum(1 for f in path.rglob("*") if f.is_file())
    return f"{files:,} file{'s' if files != 1 else ''} · {size}"


# --- settings --------------------------------------------------------------------------------------------------------


def settings(params: dict, leave_out: dict[str, set[str]] | None = None) -> list[tuple[str, str]]:
    """The stage's settings as (name, value) rows: one per key of each config section, a nested value on one line;
    unset values (None, empty) and the keys in `leave_out[section]` are left out."""
    rows = []
    for section, values in params.items():
        if not isinstance(values, dict):
            rows.append((section, _short(values)))
            continue
        for key, value in values.items():
            if key in (leave_out or {}).get(section, set()) or value is None or value in ({}, []):
                continue
            rows.append((f"{section}.{key}", _short(value, SETTING_CHARS)))
    return rows


def _declared_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def trl_differences(cfg: StudyConfig, name: str) -> pd.DataFrame:
    """The TRL arguments a training stage (`sft`, `grpo`) runs with that differ from TRL's defaults: one row per
    argument, with TRL's default, the stage's value (one column per GRPO phase) and where the value comes from.

    TRL's defaults are its config class built with nothing but the output folder; on a machine where that cannot be
    built (its bf16 default needs a device that supports it) with `use_cpu` as the stage has it, whose row then
    compares with the declared default."""
    import tempfile

    import pandas as pd

    if name == "sft":
        from trl import SFTConfig as TrlConfig

        from ovlt.stages.training.sft import sft_args

        section = cfg.sft
        built = {"this stage": lambda folder: sft_args(cfg, folder)}
    elif name == "grpo":
        from trl import GRPOConfig as TrlConfig

        from ovlt.stages.training.grpo import grpo_args

        section = cfg.grpo
        built = {(phase.name if phase else "this stage"): (lambda folder, s=phase_section: grpo_args(cfg, folder, s))
                 for phase, phase_section in cfg.grpo.phase_sections()}
    else:
        raise ValueError(f"{name} is not a training stage: TRL arguments exist for {', '.join(TRAINING)}")
    with tempfile.TemporaryDirectory() as folder:
        ours = {column: make(folder) for column, make in built.items()}
        use_cpu = next(iter(ours.values())).use_cpu
        try:
            default = TrlConfig(output_dir=folder).to_dict()
        except ValueError:
            default = TrlConfig(output_dir=folder, use_cpu=use_cpu).to_dict()
            declared = {f.name: _declared_default(f) for f in dataclasses.fields(TrlConfig)}
            default["use_cpu"] = declared["use_cpu"]
        values = {column: args.to_dict() for column, args in ours.items()}
    passed = section.passed_to_trl()
    rows = []
    for key in default:
        if key == "output_dir":  # a temporary folder here; the stage's own under its folder
            continue
        mine = {column: _plain(args.get(key)) for column, args in values.items()}
        if all(value == _plain(default[key]) for value in mine.values()):
            continue
        if key in section.SET_BY_OVLT:
            origin = f"ovlt, from {section.SET_BY_OVLT[key]}"
        elif key in section.OVLT_KEYS:
            origin = f"ovlt, from {name}.{key}" if key in section.model_fields_set else f"ovlt's default ({name}.{key})"
        elif key in section.model_fields_set:
            origin = f"config: {name}.{key}"
        elif key in passed:
            origin = f"ovlt's default ({name}.{key})"
        else:
            origin = "TRL, derived from the others"
        rows.append({"argument": key, "TRL default": _short(_plain(default[key]), 40),
                     **{column: _short(value, 60) for column, value in mine.items()}, "set by": origin})
    return pd.DataFrame(rows)


# --- the card --------------------------------------------------------------------------------------------------------


def _table(rows: list[tuple], header: tuple[str, ...] | None = None) -> str:
    head = "" if header is None else "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _pairs(rows: list[tuple[str, str]]) -> str:
    """`name value` rows flowing in as many columns as the width holds."""
    return "<div class='ovlt-settings'>" + "".join(
        f"<div class='ovlt-kv'><span class='ovlt-k'>{_code(k)}</span><span class='ovlt-v'>{html.escape(v)}</span></div>"
        for k, v in rows) + "</div>"


def _block(title: str, content: str) -> str:
    return f"<div><h4>{html.escape(title)}</h4>{content}</div>"


def _label(name: str, key: Key) -> str:
    scope = STAGES[name].scope
    return name if scope == RUN else f"iter{key}/{name}" if scope == ITERATION else f"{name} {key}"


def _stage_key(manifest: dict) -> Key:
    scope = STAGES[manifest["stage"]].scope
    return {RUN: None, ITERATION: manifest.get("iteration"), CHECKPOINT: (manifest.get("params") or {}).get("checkpoint")}[
        scope]


def _record(manifest: dict) -> list[tuple[str, str]]:
    """The stage's own manifest fields that fit on a line each: its teacher, its training summary (a flat record, one
    row per plain value), the model it sampled; unset values, lists, nested values and bigger records left out."""
    rows = []
    for key, value in manifest.items():
        if key in STANDARD_FIELDS or value is None or isinstance(value, list):
            continue
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if v is not None and not isinstance(v, dict | list)}
            if len(flat) > INLINE_ITEMS:
                continue
            rows += [(f"{key}.{k}", _short(round(v, 4) if isinstance(v, float) and math.isfinite(v) else v))
                     for k, v in flat.items()]
        else:
            rows.append((key, _short(value, SETTING_CHARS)))
    return rows


def _inputs(cfg: StudyConfig, run: Run, name: str, key: Key) -> list[tuple[str, str, str]]:
    rows = []
    for upstream, upstream_key in STAGES[name].upstream(cfg, key):
        folder = STAGES[upstream].folder(run, upstream_key)
        manifest = _read_manifest(folder)
        outputs = manifest.get("outputs", []) if manifest else []
        label = _label(upstream, upstream_key)
        if not outputs:
            rows.append((html.escape(label), "—", "not finished" if manifest is None else "nothing written"))
        for output in outputs:
            rows.append((html.escape(label), _code(output), html.escape(size_text(folder / output))))
    return rows


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def stage_card(cfg: StudyConfig, run: Run, name: str, key: Key = None) -> HTML:
    """One stage's card: settings, TRL arguments (training stages), inputs, outputs with their sizes, wall time."""
    from IPython.display import HTML

    spec = STAGES[name]
    folder = spec.folder(run, key)
    manifest = _read_manifest(folder)
    label = _label(name, key)
    if manifest is None:
        return HTML(f"{STYLE}<div class='ovlt-card'><div class='ovlt-title'>{html.escape(label)} "
                    f"<span>has not run in {html.escape(str(run.root))}</span></div></div>")
    finished = manifest.get("finished_at", "")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.strptime(finished, "%Y-%m-%dT%H:%M:%SZ")) if finished else "—"
    title = (f"{html.escape(label)} <span>· wall time {seconds_text(manifest.get('wall_seconds'))} · finished "
             f"{when} · fingerprint {_code(manifest.get('fingerprint', '—'))}"
             + (f" · commit {_code(manifest['git_commit'][:10])}" if manifest.get("git_commit") else "") + "</span>")
    params = manifest.get("params") or spec.params(cfg, key)
    leave_out = {}
    blocks = []
    if name in TRAINING:
        section = getattr(cfg, name)
        leave_out = {name: set(section.passed_to_trl())}  # shown with TRL's defaults beside them
        differences = trl_differences(cfg, name)
        columns = list(differences.columns)
        blocks.append(_block(
            "TRL arguments that differ from TRL's defaults",
            _table([tuple(html.escape(str(row[c])) if c != "argument" else _code(row[c]) for c in columns)
                    for _, row in differences.iterrows()], tuple(columns))
            if len(differences) else "none"))
    blocks.insert(0, _block("Settings (the config sections its fingerprint covers)", _pairs(settings(params, leave_out))))
    inputs = _inputs(cfg, run, name, key)
    outputs = [(_code(out), html.escape(size_text(folder / out))) for out in manifest.get("outputs", [])]
    blocks.append("<div class='ovlt-grid'>"
                  + _block("Inputs (the stages it read)", _table(inputs) if inputs else "none")
                  + _block(f"Outputs (in {folder.relative_to(run.root)}/)", _table(outputs) if outputs else "none")
                  + "</div>")
    record = _record(manifest)
    if record:
        blocks.append(_block("Recorded by the stage", _pairs(record)))
    note = ("Unset settings are left out; the whole resolved config is "
            f"{_code(str(Path(run.root.name) / 'config.yaml'))}, the stage's manifest "
            f"{_code(str(folder.relative_to(run.root.parent) / MANIFEST))}, what the stage logged "
            f"{_code(str(Path(run.root.name) / 'study.log'))} (under <code>ovlt reproduce</code>).")
    return HTML(f"{STYLE}<div class='ovlt-card'><div class='ovlt-title'>{title}</div>"
                f"{''.join(blocks)}<div class='ovlt-note'>{note}</div></div>")


def stage_cards(cfg: StudyConfig, run: Run, manifests: dict[str, dict]) -> HTML:
    """The card of each stage a notebook ran (`run_notebook`'s manifests, by stage name), in its order."""
    from IPython.display import HTML

    return HTML("".join(stage_card(cfg, run, name, _stage_key(manifest)).data for name, manifest in manifests.items()))


# --- counts ----------------------------------------------------------------------------------------------------------


def _flatten(counts: dict, prefix: str = "") -> dict[str, object]:
    """Nested counts as {"what": count}; a nested dict's keys joined with " / " (an empty one counts 0)."""
    out: dict[str, object] = {}
    for key, value in counts.items():
        what = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{what} / ") if value else {what: 0})
        elif isinstance(value, list):
            out[what] = len(value)
        else:
            out[what] = value
    return out


def _count_text(value, what: str = "") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.1%}" if what.endswith("accuracy") else f"{value:,.4g}"
    return str(value)


def _stage_rows(counts: dict) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """One stage's counts as {what: count} and {source: {what: count}}: `by_source` gives the same counts per
    source, a `<what>_by_source` dict of numbers the count `<what>` per source."""
    counts = dict(counts)
    per_source = counts.pop(SOURCES, None)
    by_source: dict[str, dict[str, object]] = {}
    if isinstance(per_source, dict):
        for source, values in per_source.items():
            by_source[source] = _flatten(values) if isinstance(values, dict) else {"count": values}
    for key in [k for k, v in counts.items() if k.endswith(PER_SOURCE) and isinstance(v, dict)
                and all(isinstance(n, int | float) for n in v.values())]:
        what, values = key.removesuffix(PER_SOURCE), counts.pop(key)
        if what not in counts:
            counts[what] = sum(values.values()) if values else 0
        for source, n in values.items():
            by_source.setdefault(source, {})[what] = n
    return _flatten(counts), by_source


def counts_table(manifests: dict[str, dict]) -> pd.DataFrame:
    """The counts of the stages a notebook ran as one small table: a row per count (`what`; with several stages,
    `stage` and `what`), a column `count`, and where a stage counts per data source a column per source."""
    import pandas as pd

    rows: list[dict] = []
    sources: list[str] = []
    for name, manifest in manifests.items():
        flat, by_source = _stage_rows(manifest.get("counts") or {})
        sources += [source for source in by_source if source not in sources]
        whats = list(flat) + [w for values in by_source.values() for w in values if w not in flat]
        for what in dict.fromkeys(whats):
            rows.append({"stage": name, "what": what, "count": _count_text(flat.get(what), what),
                         **{source: _count_text(values.get(what), what) for source, values in by_source.items()}})
    table = pd.DataFrame(rows, columns=["stage", "what", "count", *sources]).fillna("")
    if len(manifests) == 1:
        return table.drop(columns="stage").set_index("what")
    return table.set_index(["stage", "what"])
