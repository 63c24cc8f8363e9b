"""The study: the order of stages per iteration (`order`), their execution through papermill (`notebooks`) and the
plan with its GPU-hours model (`plan`)."""

from ovlt.study.notebooks import StudyError, open_study, render_report, reproduce, run_notebook

__all__ = ["StudyError", "open_study", "render_report", "reproduce", "run_notebook"]
