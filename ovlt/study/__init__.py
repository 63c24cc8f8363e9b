"""The study: the order of stages per iteration (`order`), their execution through papermill (`notebooks`), what
the terminal shows meanwhile (`terminal`) and the plan with its GPU-hours and wall-time model (`plan`)."""

from ovlt.study.notebooks import (
    NotebookStop,
    StudyError,
    open_report,
    open_study,
    render_report,
    reproduce,
    run_notebook,
)

__all__ = ["NotebookStop", "StudyError", "open_report", "open_study", "render_report", "reproduce", "run_notebook"]
