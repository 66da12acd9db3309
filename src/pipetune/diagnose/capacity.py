"""The pipeline's capacity model: how much faster would the run be with one change? First order, over the measured
service rates; the planner and the tuner ask it here (the doctor's ranking is to follow).

Pure. The limiting operator's speed-up is predicted from what the change does to it (more usable slots, or
fewer batches each paying a fixed cost); the pipeline then speeds up until the next operator limits it, and
the time outside the execution does not change. The figures rank candidate changes; the trial run decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate, usable_slots
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.fusion import stage_times
from pipetune.model import Knobs, Operator, Run, Stage, StageKind


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


# -- does an actor pool fit? The one home of that judgement (doctor rules, checklist, feasibility, policy) ----

DEFAULT_NUM_CPUS = 1.0  # Ray Data reserves 1 CPU per map task and per actor unless told otherwise (Ray's docs)


@dataclass(frozen=True)
class Reservations:
    """What a pipeline's settings hold: actor pools keep their CPUs and GPUs for the whole execution; the task
    stages then need room for at least one task of the hungriest of them, or the pipeline waits forever."""

    pool_cpus: float
    pool_gpus: float
    task_cpus: float  # one task of the task stage that reserves the most

    def fits(self, cpus: float) -> bool:
        return self.pool_cpus + self.task_cpus <= cpus + 1e-9

    def left_for_pools(self, cpus: float) -> float:
        """CPUs the actor pools may hold between them and still leave the task stages room."""
        return cpus - self.task_cpus


def pool_size(knobs: Knobs) -> int:
    """Actors a pool keeps for the whole execution: its fixed size, or its minimum."""
    c = knobs.concurrency
    if isinstance(c, tuple):
        return int(c[0])
    return int(c) if c else 1


def cpus_of(knobs: Knobs) -> float:
    return DEFAULT_NUM_CPUS if knobs.num_cpus is None else knobs.num_cpus


def reservations(stages: Iterable[tuple[Stage, Knobs]]) -> Reservations:
    """Reservations of these stages run with these knobs (a stage Ray fused into an actor needs no room)."""
    staged = list(stages)
    pools = [(s, k) for s, k in staged if s.kind is StageKind.ACTOR]
    tasks = [cpus_of(k) for s, k in staged if s.kind is not StageKind.ACTOR]
    return Reservations(
        pool_cpus=sum(pool_size(k) * cpus_of(k) for _, k in pools),
        pool_gpus=sum(pool_size(k) * (k.num_gpus or 0.0) for _, k in pools),
        task_cpus=max(tasks, default=0.0),
    )


def as_run(run: Run, changed: Mapping[int, Knobs] | None = None) -> Reservations:
    """The reservations of the recorded run (with some stages' knobs ``changed``), leaving out the stages Ray
    fused into an actor pool."""
    in_pools = {i for _, op in run.operators() if op.compute == "actors" for i in op.stages}
    kept = [s for s in run.stages if s.kind is StageKind.ACTOR or s.index not in in_pools]
    return reservations((s, (changed or {}).get(s.index, s.knobs)) for s in kept)
