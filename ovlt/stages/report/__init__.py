"""The figures and tables of the study, for the report notebook (notebooks/08_report.ipynb) and the stage notebooks;
one module per section: `data` (00), `teachers` (01, 02), `curation` (03, 05), `training` (04, 06), `evaluation`
(07 and the report's results), `reasoning` (traces and reflections), `overview` (headline and provenance), `paper`
(the published figures), and `common` (the run opened and read, the pieces of figures and HTML).

Every function takes the run (`ovlt.ground.artifacts.Run`; `load(run_dir)` opens one) and reads only what the stages
wrote: stage manifests, data sets, `eval/<checkpoint>/<entry>/{predictions.jsonl,metrics.json}`, the training logs and
`summary.json`. Figures are `matplotlib.figure.Figure` objects (no pyplot state); tables are pandas DataFrames;
composite views (traces, provenance) are `IPython.display.HTML` with every piece of model or data text escaped. Where
a run lacks something (no GRPO yet, no summary) a function returns a short note instead of failing, so a
half-finished study still renders. `iteration=None` means every iteration the run has.

Accuracies are shown in percent with one decimal (`percent`), the same format in every table, each with the protocol
that scored it and the prompt its responses answered; the paper's figures (`PAPER`) stand beside ours only under the
`authors` protocol, the harness they were measured with.
"""

from ovlt.stages.report.common import (
    FIGURE_DPI,
    STAGE_COLORS,
    STYLE,
    THUMBNAIL_PX,
    evaluated_checkpoints,
    iterations,
    load,
    note,
    percent,
    results,
    student,
    study_config,
    summary,
)
from ovlt.stages.report.curation import difficulty_histogram, filter_examples, funnel_figure, funnel_table
from ovlt.stages.report.data import majority_baselines, problem_grid
from ovlt.stages.report.evaluation import (
    accuracy_figure,
    accuracy_table,
    breakdown_figures,
    comparisons_table,
    grpo_effect,
    kind_table,
)
from ovlt.stages.report.overview import headline, provenance
from ovlt.stages.report.paper import (
    PAPER,
    PAPER_COLUMN,
    PAPER_HARNESS,
    PAPER_PROTOCOL,
    PAPER_STUDENT,
    PAPER_V12,
    SEED_NUMBERS,
    compared_with_paper,
    paper_values,
    reference_note,
    reference_table,
)
from ovlt.stages.report.reasoning import (
    REFLECTION_PHRASES,
    TEXTS_PER_STAGE,
    reflection_figure,
    reflection_table,
    trace_table,
)
from ovlt.stages.report.teachers import caption_samples, chain_samples
from ovlt.stages.report.training import GRPO_CURVES, SFT_CURVES, grpo_curves, training_curves

__all__ = [
    "FIGURE_DPI", "GRPO_CURVES", "PAPER", "PAPER_COLUMN", "PAPER_HARNESS", "PAPER_PROTOCOL", "PAPER_STUDENT",
    "PAPER_V12", "REFLECTION_PHRASES", "SEED_NUMBERS", "SFT_CURVES", "STAGE_COLORS", "STYLE",
    "TEXTS_PER_STAGE", "THUMBNAIL_PX", "accuracy_figure", "accuracy_table", "breakdown_figures", "caption_samples",
    "chain_samples", "compared_with_paper", "comparisons_table", "difficulty_histogram", "evaluated_checkpoints",
    "filter_examples", "funnel_figure", "funnel_table", "grpo_curves", "grpo_effect", "headline", "iterations",
    "kind_table", "load", "majority_baselines", "note", "paper_values", "percent", "problem_grid", "provenance",
    "reference_note", "reference_table", "reflection_figure", "reflection_table", "results", "student",
    "study_config", "summary", "trace_table", "training_curves",
]
