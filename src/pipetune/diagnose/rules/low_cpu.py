"""Low CPU utilisation: tasks reserve more CPU than they burn, so too few of them run at once.

Guide: below 50% CPU, decrease num_cpus, by stage kind (I/O 0.025-0.1, simple transforms 0.1-0.25, complex
CPU work 0.25-0.5); verified when CPU utilisation is above 80%. Heavy compute (CPU inference) goes the other
way: num_cpus = 2 x num_cpus. Ray sets a worker's OMP_NUM_THREADS from the whole CPUs it reserves, so a model
replica that burns all of its threads while cores idle gets more threads from a larger reservation.
"""

from __future__ import annotations

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.capacity import as_run, idle_cores, omp_threads, rooms, slots_speedup, threads_speedup
from pipetune.diagnose.facts import Facts, OpType
from pipetune.diagnose.findings import Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import (
    NUM_CPUS_BY_TYPE,
    cpu_criterion,
    doubled,
    finding,
    fused_with,
    lead_stages,
    lowered_fix,
    over_reserving,
)
from pipetune.model import Stage

_LOWERABLE = (OpType.DATA_LOADING, OpType.FILTERING, OpType.CPU_PREPROCESSING, OpType.WRITING)


def check(facts: Facts) -> list[Finding]:
    if facts.cpu_pct is None or facts.cpu_pct >= th.LOW_CPU_PCT.value:
        return []
    leads = lead_stages(facts)
    return [f for stage in leads for f in (_over_reserving(facts, stage), _few_threads(facts, stage)) if f]


def _few_threads(facts: Facts, stage: Stage) -> Finding | None:
    """A limiting CPU inference stage whose replicas burn every thread Ray lets them run while cores idle: the
    guide's doubled reservation, where it still fits the nodes, gives each replica twice the threads."""
    rate, op = facts.rate_of(stage.index), facts.operator_of(stage.index)
    if rate is None or op is None or facts.stage_type(stage) is not OpType.CPU_INFERENCE:
        return None
    fix, threads = _doubled(facts, stage, op.num_cpus), omp_threads(op.num_cpus)
    if fix is None or rate.headroom > th.LIMITING_HEADROOM.value or threads_speedup(facts, op, fix.proposed) <= 1:
        return None
    idle = idle_cores(facts)
    return finding(
        facts, "low-cpu", f"low CPU utilisation ({OpType.CPU_INFERENCE.value} stage)", stage,
        [Evidence("cluster CPU use", facts.cpu_pct or 0.0, "%", th.LOW_CPU_PCT.value, th.LOW_CPU_PCT.source),
         Evidence("cores burnt per running task", rate.cores_per_task, "", threads * th.USES_RESERVATION.value,
                  f"{th.USES_RESERVATION.value:g} of each of its {threads} thread(s): it fills them"),
         Evidence("threads Ray lets each task run (OMP_NUM_THREADS)", float(threads)),
         Evidence("num_cpus reserved per task", op.num_cpus)],
        f"each task burns {rate.cores_per_task:.2f} cores on the {threads} thread(s) Ray sets from its "
        f"num_cpus ({op.num_cpus:g}) while {idle:.1f} cores idle: a model's threads follow its reservation",
        fix, cpu_criterion(), 0.6,
    )  # fmt: skip


def _doubled(facts: Facts, stage: Stage, current: float) -> Fix | None:
    """The guide's doubled reservation for ``stage`` and the stages Ray fused with it (kept fused), or None
    where the stage takes no ``num_cpus`` or the pools would no longer fit the nodes with room for the tasks."""
    proposed = doubled(current)
    fix = Fix("num_cpus", current, proposed, Level.PARALLELISM, stage.index, fused_with(facts, stage, proposed))
    moved = [f.stage for f in (fix, *fix.also) if f.stage is not None]
    changed = {i: facts.run.stage(i).knobs.replace(num_cpus=proposed) for i in moved}
    fits = stage.accepts("num_cpus") and as_run(facts.run, changed).fits(rooms(facts.run))
    return fix if fits else None


def _over_reserving(facts: Facts, stage: Stage) -> Finding | None:
    rate, op = facts.rate_of(stage.index), facts.operator_of(stage.index)
    kind = facts.stage_type(stage)
    if rate is None or op is None or kind not in _LOWERABLE or op.num_cpus <= 0 or not stage.accepts("num_cpus"):
        return None
    low = NUM_CPUS_BY_TYPE[kind][0]
    stats = facts.run.stats_of(op.uid)
    more_work_than_slots = stats is not None and stats.task_s.count > rate.slots
    if not over_reserving(facts, stage) or op.num_cpus <= low or not more_work_than_slots:
        return None  # it uses what it reserves, is already low, or has no queued work to run in parallel
    if rate.headroom > th.LIMITING_HEADROOM.value:
        return None  # more parallelism for a stage that keeps up anyway changes nothing
    fix = lowered_fix(facts, stage)
    if fix is None or slots_speedup(facts, op, num_cpus=float(fix.proposed)) <= 1.0:
        return None  # e.g. a fixed pool of one actor: it stays one actor whatever it reserves
    is_bottleneck = facts.bottleneck_stage() == stage
    return finding(
        facts,
        "low-cpu",
        f"low CPU utilisation ({kind.value} stage)",
        stage,
        [
            Evidence("cluster CPU use", facts.cpu_pct or 0.0, "%", th.LOW_CPU_PCT.value, th.LOW_CPU_PCT.source),
            Evidence("cores burnt per running task", rate.cores_per_task, "", th.WAITING_CORES.value),
            Evidence("num_cpus reserved per task", op.num_cpus),
            Evidence("tasks that could run at once", rate.slots),
        ],
        f"each task reserves {op.num_cpus:g} CPU but burns {rate.cores_per_task:.2f}: the scheduler runs only "
        f"{rate.slots:.0f} at once while {stats.task_s.count if stats else 0} were waiting",
        fix,
        cpu_criterion(),
        0.85 if is_bottleneck else 0.5,
    )
