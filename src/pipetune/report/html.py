"""Self-contained HTML reports of a run or a study: one file, charts inlined, opens with no network.

Charts are Plotly's (its JavaScript ships inside the ``plotly`` package and is inlined once per file): they
carry units and hover values, and a person reads them at a glance. Pages are Jinja2 templates with
autoescaping, so stage names, UDF names, log text and error messages always show as text.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from pipetune.diagnose import consumption, diagnose
from pipetune.metrics import metric
from pipetune.model import Run
from pipetune.report import series
from pipetune.report.figures import stage_figures
from pipetune.report.tree import pipeline_tree
from pipetune.tune import TuneResult, Verdict

MIB = 1 / 2**20


def run_report(run: Run) -> str:
    return render("run.html.j2", title=f"pipetune run {run.id}", **run_page(run))


def run_page(run: Run) -> dict[str, Any]:
    """What the run page shows, the one-file report and the dashboard alike."""
    return {"run": run, "diagnosis": diagnose(run), "figures": stage_figures(run), "tree": pipeline_tree(run),
            "charts": run_charts(run), "consumers": consumption(run)}  # fmt: skip


def study_report(result: TuneResult, best: Run | None) -> str:
    return render("study.html.j2", title=f"pipetune study {result.study.id}", result=result, best=best,
                   charts=study_charts(result) + (run_charts(best) if best else []))  # fmt: skip


def run_charts(run: Run) -> list[dict[str, Any]]:
    memory = series.node_metric(run, "mem_used_bytes", "mem_total_bytes")
    return [
        _lines("throughput", "Rows per second, per operator", series.op_rate(run), "rows/s"),
        _lines(
            "queues", _title("inqueue_blocks"), series.op_metric(run, "inqueue_blocks"), metric("inqueue_blocks").unit
        ),
        _lines("objstore", _title("obj_store_bytes"), series.op_metric(run, "obj_store_bytes", MIB), "MiB"),
        _declared("cpu", "cpu_pct", series.node_metric(run, "cpu_pct")),
        _lines("memory", "Memory in use on the node", memory, "% of memory"),
        _declared("gpu", "gpu_util_pct", series.node_metric(run, "gpu_util_pct")),
        _task_durations(run),
        *(iteration_charts(run) if run.consumers() else []),
    ]


def iteration_charts(run: Run) -> list[dict[str, Any]]:
    """The guide's Iteration view: how fast each loop took data, and how long it waited for it."""
    blocked = "Time each loop waited for data, cumulative (linear growth: more data parallelism needed)"
    return [
        _lines("iter-blocked", blocked, series.consumer_metric(run, "blocked_s"), "seconds"),
        _lines("iter-share", "Share of each loop's time spent waiting", series.consumer_blocked_pct(run), "%"),
        _lines("iter-rate", "Rows per second each loop took", series.consumer_rate(run), "rows/s"),
    ]


def _title(name: str) -> str:
    """A chart's title is its metric's declared description."""
    text = metric(name).description
    return text[0].upper() + text[1:]


def _declared(key: str, name: str, data: list[series.Series]) -> dict[str, Any]:
    """A chart of one declared metric, titled and labelled from its declaration."""
    return _lines(key, _title(name), data, metric(name).unit)


def _lines(key: str, title: str, data: list[series.Series], unit: str) -> dict[str, Any]:
    traces = [{"type": "scatter", "mode": "lines", "name": s.name, "x": s.t, "y": s.y} for s in data]
    layout = _layout(title, "seconds since the run started", unit)
    return {"id": key, "title": title, "data": traces, "layout": layout, "empty": not any(s.t for s in data)}


def _task_durations(run: Run) -> dict[str, Any]:
    names = series.operator_names(run)
    stats = [s for e in run.executions for s in e.stats if s.task_s.count]
    labels = [names.get(s.uid, s.uid) for s in stats]
    traces = [
        {"type": "bar", "name": label, "x": labels, "y": [getattr(s.task_s, attr) for s in stats]}
        for label, attr in (("median", "p50"), ("p90", "p90"), ("slowest", "max"))
    ]
    layout = {**_layout("Task durations per operator", "", "seconds per task"), "barmode": "group"}
    return {"id": "tasks", "title": layout["title"]["text"], "data": traces, "layout": layout, "empty": not stats}


def study_charts(result: TuneResult) -> list[dict[str, Any]]:
    trials = [t for t in result.trials if t.wall_s]
    colours = {Verdict.KEPT: "#2e7d32", Verdict.BASELINE: "#1565c0"}
    trace = {
        "type": "bar",
        "x": [f"#{t.seq} {t.role.value}" for t in trials],
        "y": [t.wall_s for t in trials],
        "text": [t.change or t.role.value for t in trials],
        "marker": {"color": [colours.get(t.verdict, "#9e9e9e") for t in trials]},
        "hovertemplate": "%{text}<br>%{y:.2f} s<extra></extra>",
    }
    layout = _layout("Time per trial (green: kept, blue: baseline, grey: reverted)", "trial", "seconds")
    return [{"id": "trials", "title": layout["title"]["text"], "data": [trace], "layout": layout, "empty": not trials}]


def _layout(title: str, x: str, y: str) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}, "rangemode": "tozero"},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "height": 320,
        "legend": {"orientation": "h"},
    }


def render(template: str, **context: Any) -> str:
    """A page; inlines Plotly unless ``plotly_src`` says where to fetch it (the dashboard serves it)."""
    context.setdefault("dashboard", False)
    context.setdefault("live", None)
    inline = "" if context.get("plotly_src") else plotly_js()
    return _env().get_template(template).render(plotly_js=inline, **{"plotly_src": "", **context})


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipetune.report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["chart_json"] = _chart_json
    env.filters["num"] = lambda v, fmt=",.0f": format(v, fmt) if isinstance(v, (int, float)) else "-"
    return env


def _chart_json(chart: dict[str, Any]) -> Markup:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' survive, so nothing can close it early."""
    text = json.dumps({"data": chart["data"], "layout": chart["layout"]})
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@cache
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return str(get_plotlyjs())
