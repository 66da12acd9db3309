"""A recorded run in the Chrome trace event format (opens in Perfetto or chrome://tracing).

One span per task, from submission to finish as the driver saw them, on worker lanes: one process per node,
one lane per task slot on it (a worker runs one task at a time, so a slot is a worker's timeline). Counter
tracks per operator (rows/s, queued blocks, object-store MiB) and per node (CPU %), and the run's events as
instant marks. Runs recorded before pipetune kept tasks get a lane per operator with its busy stretches
(from the once-a-second samples) instead.
"""

from __future__ import annotations

from typing import Any

from pipetune.model import Run
from pipetune.report import series

US = 1_000_000  # the format counts microseconds


def chrome_trace(run: Run) -> dict[str, Any]:
    names = series.operator_names(run)
    lanes = {uid: i + 1 for i, uid in enumerate(names)}
    events: list[dict[str, Any]] = [_meta("process_name", 0, {"name": f"pipetune run {run.id} ({run.script})"})]
    events += [_meta("thread_name", lanes[uid], {"name": name}) for uid, name in names.items()]
    events += _task_spans(run, names) if run.tasks else _busy_spans(run, names, lanes)
    events += _counters(run)
    events += [{"name": e.kind.value, "ph": "i", "s": "g", "ts": e.t * US, "pid": 0, "tid": 0,
                "args": {"message": e.message}} for e in run.events]  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"run": run.id, "script": run.script}}


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": 0, "tid": tid, "args": args}


def _task_spans(run: Run, names: dict[str, str]) -> list[dict[str, Any]]:
    nodes = {node: i + 1 for i, node in enumerate(sorted({t.node for t in run.tasks}))}
    events = [_meta_p(pid, f"node {node or '(unknown)'}") for node, pid in nodes.items()]
    free_at: dict[int, list[float]] = {pid: [] for pid in nodes.values()}  # per node: when each slot frees up
    for task in sorted(run.tasks, key=lambda t: t.submitted_t):
        pid = nodes[task.node]
        slots = free_at[pid]
        slot = next((i for i, end in enumerate(slots) if end <= task.submitted_t), len(slots))
        if slot == len(slots):
            slots.append(0.0)
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": slot, "args": {"name": f"slot {slot}"}})
        slots[slot] = task.finished_t
        events.append(
            {
                "name": names.get(task.uid, task.uid),
                "ph": "X",
                "pid": pid,
                "tid": slot,
                "ts": task.submitted_t * US,
                "dur": max(task.finished_t - task.submitted_t, 1e-6) * US,
                "args": {"task": task.index, "worker seconds": task.worker_s, "failed": task.failed},
            }
        )
    return events


def _meta_p(pid: int, name: str) -> dict[str, Any]:
    return {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}


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
