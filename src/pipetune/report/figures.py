"""Per-stage figures of a run, as the summary table and ``--json`` show them. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune._serde import to_plain
from pipetune.diagnose import Bottleneck, Facts, consumption, lead_stage, own_call_cost, stage_times
from pipetune.model import Operator, OperatorStats, Run, Stage


@dataclass(frozen=True)
class StageFigures:
    stage: Stage
    operator: str  # the physical operator that ran it ("" if it never ran)
    fused_with: tuple[int, ...]  # other stages in the same operator
    lead: bool  # the stage that carries its operator's figures (the one that spent most of its time)
    time_share: float  # the stage's share of its operator's busy time (1.0 when not fused)
    rows: int
    rows_per_s: float
    wall_share: float  # the operator's active span over the run's wall time
    cpu_util: float  # CPU seconds per busy task-second
    mean_inqueue: float
    backpressure_s: float
    task_p50_s: float
    task_p90_s: float
    task_max_s: float
    peak_mem_bytes: float
    blocks: int
    headroom: float | None
    bottleneck: bool
    running: bool = False  # the figures are its running tasks' (a stopped run; ``OperatorStats.running``)
    call_fixed_s: float | None = None  # its UDF's own fixed seconds a call, fitted on the run's calls (capacity)


def stage_figures(run: Run, facts: Facts | None = None) -> list[StageFigures]:
    facts = facts or Facts.of(run)
    return [_figures(facts, stage) for stage in run.stages]


def _figures(facts: Facts, stage: Stage) -> StageFigures:
    run, bottleneck = facts.run, facts.bottleneck
    op = facts.operator_of(stage.index)
    stats = (run.stats_of(op.uid) if op else None) or OperatorStats(uid="")
    rate = facts.rates.get(op.uid) if op else None
    return StageFigures(
        stage=stage,
        operator=op.name if op else "",
        fused_with=tuple(i for i in op.stages if i != stage.index) if op else (),
        lead=op is None or lead_stage(run, op) == stage.index,
        time_share=_time_share(run, op, stats, stage.index) if op else 0.0,
        rows=rate.rows if rate else max(stats.rows_in, stats.rows_out),
        rows_per_s=rate.achieved if rate else 0.0,
        wall_share=stats.wall_s / run.wall_s if run.wall_s else 0.0,
        cpu_util=stats.cpu_s / stats.busy_s if stats.busy_s else 0.0,
        mean_inqueue=rate.mean_inqueue if rate else 0.0,
        backpressure_s=stats.backpressure_s,
        task_p50_s=stats.task_s.p50,
        task_p90_s=stats.task_s.p90,
        task_max_s=stats.task_s.max,
        peak_mem_bytes=stats.peak_uss_bytes,
        blocks=stats.blocks,
        headroom=rate.headroom if rate else None,
        bottleneck=bool(bottleneck and op and bottleneck.rate.uid == op.uid),
        running=stats.running,
        call_fixed_s=own_call_cost(facts, stage.index),
    )


def _time_share(run: Run, op: Operator, stats: OperatorStats, index: int) -> float:
    if len(op.stages) == 1:
        return 1.0
    times = stage_times(op, stats)
    return times[op.stages.index(index)] / sum(times) if times else 0.0


def run_view(run: Run) -> dict[str, Any]:
    """The run as ``--json`` prints it: stages in pipeline order with knobs and figures, and the bottleneck."""
    facts = Facts.of(run)
    bottleneck = facts.bottleneck
    figures = stage_figures(run, facts)
    return {
        "id": run.id,
        "script": run.script,
        "args": list(run.args),
        "status": run.status.value,
        "wall_s": run.wall_s,
        "rows": run.rows,
        "overrides": list(run.overrides),
        "error": run.error,
        "stages": [_stage_view(f) for f in figures],
        "bottleneck": _bottleneck_view(run, bottleneck),
        "events": to_plain(run.events),
        "environment": to_plain(run.env),
        "executions": [_execution_view(run, e.index) for e in run.executions],
        "consumers": [
            {**to_plain(c), "blocked_share": c.blocked_share, "rows_per_s": c.rows_per_s} for c in consumption(run)
        ],
    }


def _stage_view(f: StageFigures) -> dict[str, Any]:
    s = f.stage
    figures = {k: v for k, v in to_plain(f).items() if k not in ("stage", "operator", "fused_with", "bottleneck")}
    return {
        "index": s.index,
        "key": s.key,
        "method": s.method,
        "udf": s.udf,
        "site": s.site,
        "kind": s.kind.value,
        "knobs": s.knobs.set(),
        "overridden": list(s.overridden),
        "operator": f.operator,
        "fused_with": list(f.fused_with),
        "bottleneck": f.bottleneck,
        "figures": figures,
    }


def _bottleneck_view(run: Run, b: Bottleneck | None) -> dict[str, Any] | None:
    if b is None:
        return None
    stages = [run.stage(i) for i in b.rate.stages if any(s.index == i for s in run.stages)]
    return {
        "operator": b.rate.name,
        "stages": [s.key for s in stages],
        "udfs": [s.udf for s in stages],
        "capacity_rows_per_s": b.rate.capacity,
        "achieved_rows_per_s": b.rate.achieved,
        "headroom": b.rate.headroom,
        "evidence": b.evidence,
    }


def _execution_view(run: Run, index: int) -> dict[str, Any]:
    e = next(x for x in run.executions if x.index == index)
    return {
        "index": e.index,
        "dataset_id": e.dataset_id,
        "wall_s": (e.ended_t - e.started_t) if e.ended_t is not None else None,
        "ok": e.ok,
        "operators": [{"uid": o.uid, "name": o.name, "stages": list(o.stages)} for o in e.operators],
        "stats": to_plain(e.stats),
    }
