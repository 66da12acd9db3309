"""How much faster would the run be with one change? A first-order model over the measured service rates.

Pure. The limiting operator's speed-up is predicted from what the change does to it (more usable slots, or
fewer batches each paying a fixed cost); the pipeline then speeds up until the next operator limits it, and
the time outside the execution does not change. The figures rank candidate changes; the trial run decides.
"""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate, usable_slots
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.fusion import stage_times
from pipetune.model import Operator


def run_speedup(facts: Facts, op: Operator, op_speedup: float) -> float:
    """The whole run's speed-up when ``op`` gets ``op_speedup`` times faster."""
    run, execution, rate = facts.run, facts.execution, facts.rates.get(op.uid)
    if execution is None or execution.ended_t is None or rate is None or not run.wall_s:
        return 1.0
    exec_s = execution.ended_t - execution.started_t
    fixed = max(run.wall_s - exec_s, 0.0)
    bottleneck = min(r.headroom for r in facts.rates.values())
    if rate.headroom > 2 * bottleneck:
        return 1.0  # not what the pipeline waits for: speeding it up changes nothing
    others = [r.headroom for r in facts.rates.values() if r.uid != op.uid]
    cap = max(min(others) / rate.headroom, 1.0) if others else math.inf  # until the next operator limits it
    return run.wall_s / (fixed + exec_s / max(min(op_speedup, cap), 1e-9))


def slots_speedup(
    facts: Facts,
    op: Operator,
    *,
    num_cpus: float | None = None,
    concurrency: int | None = None,
    blocks: int | None = None,
) -> float:
    """More tasks at once: the ratio of usable slots after and before (capped by the cores the tasks burn)."""
    rate = facts.rates.get(op.uid)
    if rate is None:
        return 1.0
    changed = _with(op, num_cpus, concurrency)
    slots = usable_slots(changed, facts.cpus, facts.gpus, rate.cores_per_task)
    tasks = blocks if blocks is not None else _tasks(facts, op)
    return min(slots, max(tasks, 1)) / max(rate.slots, 1e-9)


def _with(op: Operator, num_cpus: float | None, concurrency: int | None) -> Operator:
    from dataclasses import replace

    changes: dict[str, float | int] = {}
    if num_cpus is not None:
        changes["num_cpus"] = num_cpus
    if concurrency is not None:
        changes["max_concurrency"] = concurrency
    return replace(op, **changes) if changes else op  # type: ignore[arg-type]


def _tasks(facts: Facts, op: Operator) -> int:
    stats = facts.run.stats_of(op.uid)
    return stats.task_s.count if stats and stats.task_s.count else 1


def batch_model(facts: Facts, stage: int, batch: int) -> tuple[float, float, float] | None:
    """(stage seconds, fixed seconds per batch, seconds per row) of a stage run at ``batch`` rows per batch."""
    op, rate = facts.operator_of(stage), facts.rate_of(stage)
    stats = facts.stage_stats(stage)
    if op is None or rate is None or stats is None or rate.rows <= 0:
        return None
    times = stage_times(op, stats)
    stage_s = times[op.stages.index(stage)] if times else stats.busy_s
    per_batch = stage_s / max(rate.rows / batch, 1.0)
    fixed = min(per_batch, th.PER_BATCH_FIXED_MS.value / 1000)
    return stage_s, fixed, (per_batch - fixed) / batch


def batch_speedup(facts: Facts, stage: int, batch: int, proposed: int) -> float:
    model, stats = batch_model(facts, stage, batch), facts.stage_stats(stage)
    if model is None or stats is None or stats.busy_s <= 0:
        return 1.0
    stage_s, fixed, per_row = model
    ratio = (fixed / proposed + per_row) / (fixed / batch + per_row)
    return stats.busy_s / (stats.busy_s - stage_s + stage_s * ratio)


def batch_for(facts: Facts, stage: int, batch: int, rate: OperatorRate | None = None) -> int | None:
    """The batch size at which fixed per-batch costs fall under the target share: a power of two, at most x64."""
    model = batch_model(facts, stage, batch)
    if model is None:
        return None
    _, fixed, per_row = model
    target = th.BATCH_OVERHEAD_TARGET.value
    wanted = fixed / (target * per_row) if per_row > 0 else batch * 64
    proposed = 2 ** math.ceil(math.log2(max(wanted, 1)))
    return int(min(max(proposed, batch * 2), batch * 64))
