"""The figures verification criteria are stated in, measured on any run. Pure."""

from __future__ import annotations

from collections.abc import Callable

from pipetune.diagnose.facts import Facts
from pipetune.diagnose.rules.gpu import is_cuda_oom
from pipetune.diagnose.rules.memory import spilled_mib
from pipetune.diagnose.rules.stalls import longest_stall
from pipetune.model import EventKind


def measure(facts: Facts, metric: str, stage: int | None = None) -> float | None:
    """The value of ``metric`` in this run (None when the run cannot tell)."""
    if metric in _STAGE_METRICS:
        return _STAGE_METRICS[metric](facts, stage) if stage is not None else None
    return _RUN_METRICS[metric](facts) if metric in _RUN_METRICS else None


def _events(facts: Facts, kind: EventKind) -> list[str]:
    return [e.message + e.detail for e in facts.run.events_of(kind)]


_RUN_METRICS: dict[str, Callable[[Facts], float | None]] = {
    "cpu_pct": lambda f: f.cpu_pct,
    "gpu_pct": lambda f: f.gpu_pct,
    "oom_kills": lambda f: float(len(_events(f, EventKind.OOM_KILL))),
    "spilled_mib": lambda f: spilled_mib(f.run),
    "cuda_errors": lambda f: float(sum(is_cuda_oom(t) for t in _events(f, EventKind.UDF_ERROR))),
    "mid_materializations": lambda f: float(len(f.run.mid_pipeline_materializations())),
    "stall_s": lambda f: longest_stall(f.run),
    "udf_errors": lambda f: float(len(_events(f, EventKind.UDF_ERROR))),
}


def _task_skew(facts: Facts, stage: int) -> float | None:
    stats = facts.stage_stats(stage)
    return stats.task_s.p90 / stats.task_s.p50 if stats and stats.task_s.p50 > 0 else None


def _tasks(facts: Facts, stage: int) -> float | None:
    stats = facts.stage_stats(stage)
    return float(stats.task_s.count) if stats else None


def _rows_per_s(facts: Facts, stage: int) -> float | None:
    rate = facts.rate_of(stage)
    return rate.achieved if rate else None


def _blocked_share(facts: Facts, stage: int) -> float | None:
    """The largest share of its time any consumer of the stage (any split) waited for data."""
    shares = [c.blocked_share for c in facts.consumers if c.stage == stage]
    return max(shares) if shares else None


_STAGE_METRICS: dict[str, Callable[[Facts, int], float | None]] = {
    "blocked_share": _blocked_share,
    "task_skew": _task_skew,
    "tasks": _tasks,
    "stage_rows_per_s": _rows_per_s,
}
