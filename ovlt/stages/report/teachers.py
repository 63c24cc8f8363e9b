"""The teachers (notebooks 01, 02): sampled captions and reasoning chains beside the problems they answer."""

from __future__ import annotations

import html

from IPython.display import HTML

from ovlt.ground.artifacts import Run, load_dataset_dir
from ovlt.scoring.matching import score
from ovlt.stages.registry import chains_stage, output
from ovlt.stages.report.common import (
    STYLE,
    _pool,
    _problem_cell,
    _problems_by_id,
    _sample,
    _text,
    _verdict,
    note,
)


def caption_samples(run: Run, iteration: int = 1, n: int = 4) -> HTML:
    """A fixed sample of captions beside the image and question they describe."""
    folder = output(run, "caption", "captions", iteration)
    if not folder.is_dir():
        return note(f"Iteration {iteration} has no captions (captioning runs in iteration 1 only).")
    captions = list(_sample(load_dataset_dir(folder), n, f"captions-{iteration}"))
    problems = _problems_by_id(_pool(run), [c["id"] for c in captions])
    rows = "".join(f"<tr><td>{_problem_cell(problems[c['id']])}</td><td>{_text(c['caption'])}</td></tr>"
                   for c in captions)
    return HTML(f'{STYLE}<table class="ovlt-cards"><tr><th>problem</th><th>caption</th></tr>{rows}</table>')


def chain_samples(run: Run, iteration: int = 1, n: int = 3) -> HTML:
    """A fixed sample of problems with all their sampled chains, each scored by the one answer scorer."""
    stage = chains_stage(iteration)
    folder = output(run, stage, "chains", iteration)
    if not folder.is_dir():
        return note(f"Iteration {iteration} has no chains yet (distill / self_generate has not run).")
    items = list(_sample(load_dataset_dir(folder), n, f"chains-{iteration}"))
    problems = _problems_by_id(_pool(run), [item["id"] for item in items])
    rows = []
    for item in items:
        p = problems[item["id"]]
        chains = []
        for chain in item["chains"]:
            v = score(chain, p["answer"], p["answer_type"], p["choices"], p["precision"])
            chains.append(f"{_verdict(v.correct, v.extracted)}{_text(chain)}")
        rows.append(f"<tr><td>{_problem_cell(p)}</td><td>{'<hr>'.join(chains)}</td></tr>")
    return HTML(f'{STYLE}<p>{html.escape(stage)}, iteration {iteration}</p><table class="ovlt-cards">'
                f"<tr><th>problem</th><th>chains</th></tr>{''.join(rows)}</table>")
