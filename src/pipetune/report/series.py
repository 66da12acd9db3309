"""Time series out of a recorded run, ready to plot: per-operator rates and queues, per-node use. Pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise

from pipetune.diagnose import blocked_shares, parse_source
from pipetune.metrics import declared, rows_moved
from pipetune.model import Run


@dataclass(frozen=True)
class Series:
    name: str
    t: tuple[float, ...]
    y: tuple[float, ...]


def operator_names(run: Run) -> dict[str, str]:
    return {op.uid: f"{op.name} [{','.join(map(str, op.stages))}]" for _, op in run.operators()}


def op_metric(run: Run, metric: str, scale: float = 1.0) -> list[Series]:
    """One series per operator of a gauge metric (queues, memory), scaled (e.g. bytes -> MiB)."""
    metric = declared(metric)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in run.op_samples:
        if metric in s.values:
            points[s.source].append((s.t, s.values[metric] * scale))
    names = operator_names(run)
    return [_series(names.get(uid, uid), pts) for uid, pts in points.items()]


def op_rate(run: Run) -> list[Series]:
    """Rows per second per operator, from consecutive samples of the counter of the rows it moved."""
    counter = {op.uid: rows_moved(op.name) for _, op in run.operators()}
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in run.op_samples:
        metric = counter.get(s.source, "rows_out")
        if metric in s.values:
            points[s.source].append((s.t, s.values[metric]))
    names = operator_names(run)
    return [_rates(names.get(uid, uid), pts) for uid, pts in points.items()]


def _rates(name: str, pairs: list[tuple[float, float]]) -> Series:
    rates = [(t1, max(y1 - y0, 0.0) / (t1 - t0)) for (t0, y0), (t1, y1) in pairwise(pairs) if t1 > t0]
    return _series(name, rates)


def node_metric(run: Run, metric: str, total: str | None = None) -> list[Series]:
    """One series per node; with ``total``, as a percentage of it (memory used of memory total)."""
    metric, total = declared(metric), declared(total) if total else None
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in run.node_samples:
        if metric not in s.values:
            continue
        value = s.values[metric]
        if total is not None:
            if not s.values.get(total):
                continue
            value = value / s.values[total] * 100
        points[s.source.removeprefix("node:")[:8]].append((s.t, value))
    return [_series(f"node {node}", pts) for node, pts in points.items()]


def _series(name: str, points: list[tuple[float, float]]) -> Series:
    points.sort()
    return Series(name, tuple(t for t, _ in points), tuple(y for _, y in points))


# -- the script's loops (the guide's Iteration view) --------------------------------------------------------


def _loop_name(source: str) -> str:
    stage, split = parse_source(source)
    return f"loop over stage {stage}" + (f", split {split}" if split is not None else "")


def consumer_metric(run: Run, metric: str) -> list[Series]:
    """One series per loop of a cumulative consumer figure (blocked time grows linearly when data-bound)."""
    metric = declared(metric)
    return [
        _series(_loop_name(source), [(s.t, s.values[metric]) for s in run.samples_of(source) if metric in s.values])
        for source in run.consumers()
    ]


def consumer_rate(run: Run) -> list[Series]:
    """Rows per second each loop took."""
    return [
        _rates(_loop_name(source), [(s.t, s.values.get("rows", 0.0)) for s in run.samples_of(source)])
        for source in run.consumers()
    ]


def consumer_blocked_pct(run: Run) -> list[Series]:
    """The share of each loop's time spent waiting for data, per sampling interval."""
    return [
        _series(_loop_name(source), [(t, 100 * share) for t, share in blocked_shares(run.samples_of(source))])
        for source in run.consumers()
    ]
