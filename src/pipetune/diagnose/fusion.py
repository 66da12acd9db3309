"""Which of a fused operator's stages its time went to. Pure."""

from __future__ import annotations

from pipetune.model import Operator, OperatorStats, Run, StageKind


def lead_stage(run: Run, op: Operator) -> int | None:
    """Of a fused operator's stages, the one its time went to (measured), else its last UDF stage."""
    if not op.stages:
        return None
    stats = run.stats_of(op.uid)
    times = stage_times(op, stats) if stats else None
    if times:
        return max(zip(times, op.stages, strict=True))[1]
    kinds = {s.index: s.kind for s in run.stages}
    udf_stages = [i for i in op.stages if kinds.get(i) not in (StageKind.READ, StageKind.WRITE)]
    return (udf_stages or list(op.stages))[-1]


def stage_times(op: Operator, stats: OperatorStats) -> tuple[float, ...] | None:
    """Busy seconds per stage of a fused operator, or None when Ray did not split them.

    Ray times each function of the chain; a write adds a step of its own at the end (block conversion),
    so surplus steps belong to the last stage.
    """
    n, times = len(op.stages), stats.stage_time_s
    if n == 0 or len(times) < n or sum(times) <= 0:
        return None
    return (*times[: n - 1], sum(times[n - 1 :]))
