"""Renderers: turn a recorded Run into something a person (or a script) reads. They never touch Ray.

The face of the package. Names load on first use (the HTML renderer pulls in Jinja2 and Plotly; a terminal
command should not pay for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune._faces import lazy

if TYPE_CHECKING:
    from pipetune.report.doctor import diagnosis_text, diagnosis_view, verification_text, verification_view
    from pipetune.report.figures import StageFigures, run_view, stage_figures
    from pipetune.report.html import (
        plotly_js,
        render,
        run_charts,
        run_page,
        run_report,
        study_charts,
        study_report,
    )
    from pipetune.report.live import LiveState, LiveView
    from pipetune.report.plan import plan_summary, plan_view
    from pipetune.report.terminal import console, history, run_summary
    from pipetune.report.trace import chrome_trace
    from pipetune.report.tree import pipeline_tree
    from pipetune.report.tune import study_summary, study_view

_HOME = {
    "LiveState": "live",
    "LiveView": "live",
    "StageFigures": "figures",
    "console": "terminal",
    "diagnosis_text": "doctor",
    "diagnosis_view": "doctor",
    "history": "terminal",
    "pipeline_tree": "tree",
    "plan_summary": "plan",
    "plan_view": "plan",
    "plotly_js": "html",
    "render": "html",
    "run_charts": "html",
    "run_page": "html",
    "run_report": "html",
    "run_summary": "terminal",
    "run_view": "figures",
    "stage_figures": "figures",
    "study_charts": "html",
    "study_report": "html",
    "study_summary": "tune",
    "study_view": "tune",
    "chrome_trace": "trace",
    "verification_text": "doctor",
    "verification_view": "doctor",
}
__all__ = [
    "LiveState",
    "LiveView",
    "StageFigures",
    "chrome_trace",
    "console",
    "diagnosis_text",
    "diagnosis_view",
    "history",
    "pipeline_tree",
    "plan_summary",
    "plan_view",
    "plotly_js",
    "render",
    "run_charts",
    "run_page",
    "run_report",
    "run_summary",
    "run_view",
    "stage_figures",
    "study_charts",
    "study_report",
    "study_summary",
    "study_view",
    "verification_text",
    "verification_view",
]


__getattr__ = lazy(__name__, _HOME)
