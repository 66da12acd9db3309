"""Which operator limits the pipeline, judged by measured service rate rather than by wall time.

For each operator: rows per busy task-second (its service rate per slot), times the slots it can get (its
concurrency cap, the cluster's CPUs or GPUs over what each task reserves, and the cores its tasks really
burn), gives its capacity in rows/s. Headroom is capacity over the rate it actually ran at: the operator with
the least headroom is the one the others wait for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipetune.model import Execution, Operator, OperatorStats, Run, StageKind


@dataclass(frozen=True)
class OperatorRate:
    uid: str
    name: str
    stages: tuple[int, ...]
    rows: int  # rows the operator processed
    achieved: float  # rows/s over the execution's wall time
    per_slot: float  # rows per busy task-second
    slots: float  # concurrent tasks it can usefully run
    capacity: float  # rows/s with every slot busy
    cores_per_task: float  # CPU seconds per busy second: under WAITING_CORES means waiting, not computing
    mean_inqueue: float
    backpressure_s: float

    @property
    def headroom(self) -> float:
        return self.capacity / self.achieved if self.achieved > 0 else math.inf


@dataclass(frozen=True)
class Bottleneck:
    rate: OperatorRate
    runner_up: OperatorRate | None

    @property
    def evidence(self) -> str:
        r = self.rate
        text = (
            f"{r.per_slot:,.0f} rows/s per task x {r.slots:.1f} usable slots = {r.capacity:,.0f} rows/s capacity, "
            f"ran at {r.achieved:,.0f} rows/s (headroom {r.headroom:.2f}x)"
        )
        if self.runner_up is not None:
            text += f"; next: {self.runner_up.name} headroom {self.runner_up.headroom:.2f}x"
        if r.mean_inqueue >= 1:
            text += f"; {r.mean_inqueue:.1f} blocks queued at its input on average"
        return text


def operator_rates(run: Run, execution: Execution) -> list[OperatorRate]:
    wall = (execution.ended_t or execution.started_t) - execution.started_t
    cpus = run.env.cluster_resources.get("CPU", 0.0)
    gpus = run.env.cluster_resources.get("GPU", 0.0)
    out = []
    for op in execution.operators:
        stats = run.stats_of(op.uid)
        if stats is None or stats.busy_s <= 0 or wall <= 0:
            continue
        rows = operator_rows(run, op, stats, execution)
        if rows > 0:
            out.append(_rate(run, op, stats, rows, wall, cpus, gpus))
    return out


def operator_rows(run: Run, op: Operator, stats: OperatorStats, execution: Execution) -> int:
    """Rows the operator processed. A write fused into a chain only reports its row count to the sink."""
    writes = any(s.kind is StageKind.WRITE for s in run.stages if s.index in op.stages)
    return max(stats.rows_in, stats.rows_out, execution.sink_rows if writes else 0)


def _rate(
    run: Run, op: Operator, stats: OperatorStats, rows: int, wall: float, cpus: float, gpus: float
) -> OperatorRate:
    cores = stats.cpu_s / stats.busy_s
    slots = min(usable_slots(op, cpus, gpus, cores), max(stats.task_s.count, 1))
    per_slot = rows / stats.busy_s
    queued = [s.values.get("inqueue_blocks", 0.0) for s in run.op_samples if s.source == op.uid]
    return OperatorRate(
        uid=op.uid,
        name=op.name,
        stages=op.stages,
        rows=rows,
        achieved=rows / wall,
        per_slot=per_slot,
        slots=slots,
        capacity=per_slot * slots,
        cores_per_task=cores,
        mean_inqueue=sum(queued) / len(queued) if queued else 0.0,
        backpressure_s=stats.backpressure_s,
    )


def usable_slots(op: Operator, cpus: float, gpus: float, cores_per_task: float) -> float:
    """How many of the operator's tasks can run at once and each get the cores it burns."""
    limits = [float(op.max_concurrency)] if op.max_concurrency else []
    if op.num_cpus > 0 and cpus > 0:
        limits.append(math.floor(cpus / op.num_cpus + 1e-9))
    if op.num_gpus > 0:
        limits.append(math.floor(gpus / op.num_gpus + 1e-9))
    if cores_per_task > 0 and cpus > 0:
        limits.append(cpus / cores_per_task)  # CPU-bound tasks beyond this only share the same cores
    return max(min(limits), 1.0) if limits else 1.0


def main_execution(run: Run) -> Execution | None:
    """The execution that took longest: the pipeline proper, not a schema peek or a count."""
    finished = [e for e in run.executions if e.ended_t is not None]
    return max(finished, key=lambda e: (e.ended_t or 0) - e.started_t, default=None)


def find_bottleneck(run: Run) -> Bottleneck | None:
    execution = main_execution(run)
    if execution is None:
        return None
    rates = sorted(operator_rates(run, execution), key=lambda r: r.headroom)
    if not rates:
        return None
    return Bottleneck(rates[0], rates[1] if len(rates) > 1 else None)
