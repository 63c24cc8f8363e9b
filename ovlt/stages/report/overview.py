"""What the study found and how it ran: the report's headline and its provenance (config, versions, commit,
teachers, hardware, wall time per stage)."""

from __future__ import annotations

import html
import json
import os
import platform

import pandas as pd
from IPython.display import HTML

from ovlt.ground.artifacts import Run
from ovlt.stages.report.common import (
    STYLE,
    _protocol_label,
    _text,
    evaluated_checkpoints,
    note,
    percent,
    results,
    student,
    summary,
)


def headline(run: Run) -> HTML:
    """What the study found, in a few lines: per benchmark entry and protocol, the first and last stage with
    intervals."""
    s = summary(run) or {}
    lines = []
    for (entry, _), by_stage in results(run).items():
        first, last = list(by_stage)[0], list(by_stage)[-1]
        a, b = by_stage[first], by_stage[last]
        base = s.get("baselines", {}).get(entry)
        lines.append(f"<li><b>{html.escape(entry)}</b> (n={b['n']}, protocol {html.escape(_protocol_label(b))}, "
                     f"prompt {html.escape(b['prompt'])}): "
                     f"{first} {percent(a['accuracy'])}% [{percent(a['ci95'][0])}, {percent(a['ci95'][1])}] &rarr; "
                     f"{last} {percent(b['accuracy'])}% [{percent(b['ci95'][0])}, {percent(b['ci95'][1])}]"
                     + (f"; majority answer {percent(base)}%" if base is not None else "") + "</li>")
    judges = "".join(f"<li>judge for <b>{html.escape(entry)}</b> (the <code>+judge</code> protocols): "
                     f"{html.escape(j['model'])} at <code>{html.escape(j['endpoint'])}</code>, temperature "
                     f"{j['temperature']}, prompt:{_text(j['prompt'])}</li>" for entry, j in s.get("judges", {}).items())
    teacher = s.get("teacher", {})
    kind = "scripted (reads the procedural scene; imperfect by design)" if teacher.get("scripted") else "models"
    stages = ", ".join(evaluated_checkpoints(run)) or "none"
    wall = s.get("wall_seconds")
    return HTML(f"{STYLE}<p>Run <code>{html.escape(run.name)}</code>; student <b>{html.escape(student(run))}</b>; "
                f"config <code>{html.escape(str(s.get('config')))}</code>; "
                f"evaluated stages: {html.escape(stages)}; teachers: {html.escape(kind)}"
                + (f"; wall time {wall / 60:.1f} min" if wall is not None else "") + ".</p>"
                f"<ul>{''.join(lines) or '<li>No evaluated checkpoint yet.</li>'}</ul>"
                + (f"<ul>{judges}</ul>" if judges else "")
                + "<p>Accuracies in percent with 95% bootstrap intervals over the benchmark items; each names the "
                "protocol that scored it and the prompt the responses answered.</p>")


def _hardware() -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "gpus": ", ".join(gpus) or "none"}


def provenance(run: Run) -> HTML:
    """Config, package versions, git commit, teachers, hardware and wall time per stage."""
    found = [(str(p.parent.relative_to(run.root)), json.loads(p.read_text())) for p in run.root.glob("**/manifest.json")]
    manifests = dict(sorted(found, key=lambda item: item[1].get("finished_at", "")))  # in the order they ran
    s = summary(run) or {}
    commits = sorted({str(m.get("git_commit")) for m in manifests.values()})
    packages: dict[str, set] = {}
    for m in manifests.values():
        for name, version in (m.get("packages") or {}).items():
            packages.setdefault(name, set()).add(version)
    general = {"run": run.name, "config": s.get("config"), "git commit(s)": ", ".join(commits),
               **{f"package {k}": ", ".join(sorted(v)) for k, v in sorted(packages.items())}}
    for role, spec in (s.get("teacher") or {}).items():
        if isinstance(spec, dict):
            general[f"teacher {role}"] = ", ".join(f"{k}={v}" for k, v in spec.items() if v not in (None, {}, []))
    general.update({f"report machine {k}": v for k, v in _hardware().items()})
    walls = []
    for where, m in manifests.items():
        train = m.get("train") or {}
        walls.append({"stage": where, "wall (s)": f"{m.get('wall_seconds', float('nan')):.1f}",
                      "processes": train.get("processes", ""), "peak RSS (MB)": train.get("peak_rss_mb", ""),
                      "s/step": train.get("seconds_per_step", ""), "finished": m.get("finished_at", "")})
    general_html = pd.DataFrame({"value": [str(v) for v in general.values()]},
                                index=pd.Index(list(general), name="")).to_html(escape=True)
    walls_html = pd.DataFrame(walls).to_html(index=False, escape=True) if walls else ""
    config_path = run.root / "config.yaml"
    config_text = config_path.read_text() if config_path.exists() else ""
    config_html = (f"<details><summary>config.yaml</summary>{_text(config_text)}</details>" if config_text
                   else note("The run folder has no config.yaml.").data)
    total = s.get("wall_seconds")
    return HTML(f"{STYLE}{general_html}<h4>Wall time per stage"
                + (f" (study total {total / 60:.1f} min)" if total is not None else "")
                + f"</h4>{walls_html}{config_html}")
