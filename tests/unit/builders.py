"""Runs built by hand, for testing pure logic without Ray."""

from __future__ import annotations

from pipetune.model import (
    Dist,
    Environment,
    Execution,
    Knobs,
    Operator,
    OperatorStats,
    Run,
    RunStatus,
    Sample,
    Stage,
    StageKind,
)


def stage(index: int, method: str, udf: str = "", kind: StageKind = StageKind.TRANSFORM, **knobs: object) -> Stage:
    return Stage(index, method, udf, f"pipe.py:{10 + index}", kind, Knobs(**knobs))  # type: ignore[arg-type]


def op_stats(uid: str, rows: int, busy_s: float, cpu_s: float, tasks: int = 10, **extra: object) -> OperatorStats:
    per_task = busy_s / tasks
    return OperatorStats(
        uid=uid,
        wall_s=busy_s,
        busy_s=busy_s,
        cpu_s=cpu_s,
        rows_in=rows,
        rows_out=rows,
        blocks=tasks,
        task_s=Dist.of([per_task] * tasks),
        **extra,  # type: ignore[arg-type]
    )


def two_stage_run(
    read_busy: float = 2.0, map_busy: float = 20.0, map_cpus: float = 1.0, map_cpu_s: float | None = None
) -> Run:
    """read (cheap) -> map_batches(work), 10,000 rows, over 10 s on a 2-CPU cluster."""
    stages = (stage(0, "read_parquet", kind=StageKind.READ), stage(1, "map_batches", "work", num_cpus=map_cpus))
    ops = (
        Operator("0/ReadFiles_1", "ReadFiles", (0,), num_cpus=1.0),
        Operator("0/MapBatches(work)_2", "MapBatches(work)", (1,), num_cpus=map_cpus),
    )
    stats = (
        op_stats("0/ReadFiles_1", 10_000, read_busy, read_busy),
        op_stats("0/MapBatches(work)_2", 10_000, map_busy, map_busy if map_cpu_s is None else map_cpu_s),
    )
    samples = tuple(Sample(float(t), "0/MapBatches(work)_2", {"inqueue_blocks": 4.0}) for t in range(10))
    return Run(
        id="r1",
        script="pipe.py",
        status=RunStatus.SUCCEEDED,
        wall_s=11.0,
        env=Environment(cluster_resources={"CPU": 2.0}),
        stages=stages,
        executions=(Execution(0, "ds", 1.0, ops, 11.0, True, stats),),
        op_samples=samples,
    )
