"""The study: the order of stages per iteration (`order`), their execution through papermill (`notebooks`), what
the terminal shows meanwhile (`terminal`) and the plan with its GPU-hours and wall-time model (`plan`); what a stage
notebook shows of its stages (`card`)."""

from ovlt.study.card import counts_table, stage_card, stage_cards
from ovlt.study.notebooks import (
    NotebookStop,
    StudyError,
    open_report,
    open_study,
    render_report,
    reproduce,
    run_notebook,
)

__all__ = ["NotebookStop", "StudyError", "counts_table", "open_report", "open_study", "render_report", "reproduce",
           "run_notebook", "stage_card", "stage_cards"]
