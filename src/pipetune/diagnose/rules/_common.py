"""Helpers the rules share: building a finding for a stage, the matrix's ranges, the next value to try."""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.capacity import fix_speedup
from pipetune.diagnose.facts import Facts, OpType
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.model import Stage

NUM_CPUS_BY_TYPE: dict[OpType, tuple[float, float]] = {
    OpType.DATA_LOADING: th.NUM_CPUS_IO,
    OpType.FILTERING: th.NUM_CPUS_FILTER,
    OpType.CPU_PREPROCESSING: th.NUM_CPUS_PREPROCESS,
    OpType.CPU_INFERENCE: th.NUM_CPUS_CPU_INFERENCE,
    OpType.GPU_INFERENCE: th.NUM_CPUS_GPU_INFERENCE,
    OpType.WRITING: (0.1, 0.1),  # guide: optimized ETL pattern, write num_cpus=0.1
}

BATCH_BY_TYPE: dict[OpType, tuple[int, int]] = {
    OpType.CPU_PREPROCESSING: th.BATCH_PREPROCESS,
    OpType.CPU_INFERENCE: th.BATCH_CPU_INFERENCE,
    OpType.GPU_INFERENCE: th.BATCH_GPU_INFERENCE,
}


def finding(
    facts: Facts,
    rule: str,
    symptom: str,
    stage: Stage | None,
    evidence: list[Evidence],
    cause: str,
    fix: Fix | None,
    verify: Criterion,
    confidence: float,
    gain: float = 1.0,
) -> Finding:
    return Finding(
        rule=rule,
        symptom=symptom,
        stage=stage.index if stage else None,
        stage_key=stage.key if stage else "",
        udf=stage.udf if stage else "",
        evidence=tuple(evidence),
        cause=cause,
        fix=fix,
        verify=verify,
        confidence=confidence,
        severity=facts.wall_share(stage.index) if stage else 1.0,
        gain=gain,
    )


def lead_stages(facts: Facts) -> list[Stage]:
    """The stages that carry their operator's figures (one per operator that ran)."""
    out = []
    for stage in facts.run.stages:
        op = facts.operator_of(stage.index)
        if op is not None and facts.lead_of(op) == stage.index and facts.rate_of(stage.index) is not None:
            out.append(stage)
    return out


def lowered_num_cpus(kind: OpType, current: float) -> float:
    """The guide's reservation for the operation type: its high end, or its low end when ``current`` is already
    no more than that (the low-CPU branch and a slow stage's smaller reservation alike)."""
    low, high = NUM_CPUS_BY_TYPE.get(kind, (current, current))
    return high if current > high else low


def lowered_fix(facts: Facts, stage: Stage) -> Fix | None:
    """A lower reservation for ``stage``, with the same for every stage Ray fused with it (``fused_with``): the
    value the model predicts fastest (``capacity.fix_speedup``: the slots it frees against the workers those
    slots need started) among the guide's value for the stage's operation type (``lowered_num_cpus``) and the
    halvings from what it reserves now down to it. Never below the guide's value: a lower one only adds workers
    to start. The guide's value wins a tie. None where nothing lower is in reach."""
    op = facts.operator_of(stage.index)
    if op is None or op.num_cpus <= 0 or not stage.accepts("num_cpus"):
        return None
    guide = lowered_num_cpus(facts.stage_type(stage), op.num_cpus)
    values = [guide, *_halvings(op.num_cpus, guide)]
    fixes = [
        Fix("num_cpus", op.num_cpus, v, Level.PARALLELISM, stage.index, fused_with(facts, stage, v))
        for v in dict.fromkeys(values)
        if v < op.num_cpus
    ]
    return max(fixes, key=lambda f: fix_speedup(facts, f), default=None)


def _halvings(current: float, floor: float) -> list[float]:
    """``current`` halved while it stays above ``floor``: 1 -> 0.5, 0.25, 0.125 above the guide's 0.1."""
    out, value = [], current / 2
    while value > floor:
        out.append(round(value, 3))
        value /= 2
    return out


def fused_with(facts: Facts, stage: Stage, proposed: float) -> tuple[Fix, ...]:
    """The same reservation for the other stages Ray fused with ``stage`` (those that take one): a reservation is
    the operator's, and the operator's tasks are what burn less than they reserve. Set on one stage alone, it
    would split the operator (Ray fuses only equal reservations), each piece a task per block, and the stages
    left at the old reservation would still hold a whole CPU per task."""
    op = facts.operator_of(stage.index)
    if op is None:
        return ()
    others = [facts.run.stage(i) for i in op.stages if i != stage.index]
    return tuple(
        Fix("num_cpus", op.num_cpus, proposed, Level.PARALLELISM, s.index) for s in others if s.accepts("num_cpus")
    )


def over_reserving(facts: Facts, stage: Stage) -> bool:
    """The one answer to "does this stage's task reserve more CPU than it burns": it burns under
    ``USES_RESERVATION`` of its ``num_cpus`` (the low-CPU branch and the slow stage's queues both ask)."""
    op, rate = facts.operator_of(stage.index), facts.rate_of(stage.index)
    return op is not None and rate is not None and rate.cores_per_task < op.num_cpus * th.USES_RESERVATION.value


def doubled(value: float) -> float:
    """The guide's upward steps: 0.25 -> 0.5 -> 1 -> 2 -> 4."""
    return value * 2


def halved_batch(value: int) -> int:
    return max(1, value // 2)


def grown_batch(current: int, low: int, high: int) -> int:
    """Double toward the matrix's range: at least its low end, at most its high end."""
    return int(min(max(current * 2, low), high))


def cpu_criterion() -> Criterion:
    return Criterion("cpu_pct", ">", th.GOOD_CPU_PCT.value, "CPU utilisation above 80%")


def throughput_criterion(stage: Stage, rows_per_s: float) -> Criterion:
    target = rows_per_s * (1 + th.NOISE_PCT.value / 100)
    return Criterion("stage_rows_per_s", ">", target, "the stage's throughput rises beyond the noise", stage.index)


def blocks_for(cpus: float) -> int:
    """Enough blocks that every CPU gets several tasks (and a slow one does not hold the rest)."""
    return max(int(th.MIN_BLOCKS.value), math.ceil(cpus) * int(th.BLOCKS_PER_CPU.value))
