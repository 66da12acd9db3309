"""A recorded run in the Chrome trace event format (opens in Perfetto or chrome://tracing).

What the recorder samples becomes: one lane per operator with a span for each stretch of time its tasks were
running (from the once-a-second samples), counter tracks per operator (rows/s, queued blocks, object-store
MiB), a counter per node (CPU %), and the run's events as instant marks. The recorder does not keep single
tasks, so the spans are the operator's busy stretches at the sampling resolution, not one span per task.
"""

from __future__ import annotations

from typing import Any

from pipetune.model import Run
from pipetune.report import series

US = 1_000_000  # the format counts microseconds


def trace(run: Run) -> dict[str, Any]:
    names = series.operator_names(run)
    lanes = {uid: i + 1 for i, uid in enumerate(names)}
    events: list[dict[str, Any]] = [_meta("process_name", 0, {"name": f"pipetune run {run.id} ({run.script})"})]
    events += [_meta("thread_name", lanes[uid], {"name": name}) for uid, name in names.items()]
    events += _busy_spans(run, names, lanes)
    events += _counters(run)
    events += [{"name": e.kind.value, "ph": "i", "s": "g", "ts": e.t * US, "pid": 0, "tid": 0,
                "args": {"message": e.message}} for e in run.events]  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"run": run.id, "script": run.script}}


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": 0, "tid": tid, "args": args}


def _busy_spans(run: Run, names: dict[str, str], lanes: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for uid, lane in lanes.items():
        points = sorted((s.t, s.values.get("tasks_running", 0.0)) for s in run.op_samples if s.source == uid)
        start: float | None = None
        peak = 0.0
        for t, running in points:
            if running > 0 and start is None:
                start, peak = t, running
            elif running > 0:
                peak = max(peak, running)
            elif start is not None:
                out.append(_span(names[uid], lane, start, t, peak))
                start = None
        if start is not None and points:
            out.append(_span(names[uid], lane, start, points[-1][0], peak))
    return out


def _span(name: str, lane: int, start: float, end: float, peak: float) -> dict[str, Any]:
    return {"name": name, "ph": "X", "pid": 0, "tid": lane, "ts": start * US, "dur": max(end - start, 0.001) * US,
            "args": {"most tasks running at once": peak}}  # fmt: skip


def _counters(run: Run) -> list[dict[str, Any]]:
    tracks = [
        ("rows/s", series.op_rate(run)),
        ("queued blocks", series.op_metric(run, "inqueue_blocks")),
        ("object store MiB", series.op_metric(run, "obj_store_bytes", 1 / 2**20)),
        ("CPU %", series.node_metric(run, "cpu_pct")),
    ]
    return [
        {"name": f"{label}: {s.name}", "ph": "C", "pid": 0, "ts": t * US, "args": {label: y}}
        for label, group in tracks
        for s in group
        for t, y in zip(s.t, s.y, strict=True)
    ]
