"""Runs built by hand, for testing pure logic without Ray."""

from __future__ import annotations

import dataclasses

from pipetune.model import (
    Calls,
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
    TaskSpan,
)


def stage(index: int, method: str, udf: str = "", kind: StageKind = StageKind.TRANSFORM, **knobs: object) -> Stage:
    return Stage(index, method, udf, f"pipe.py:{10 + index}", kind, Knobs(**knobs))  # type: ignore[arg-type]


# Ray's framing (input prep and output build) per batch of a pandas map_batches stage, as measured on the ETL
# example (1.6 ms at 64 and at 256 rows a batch): the figure the recorder's ``frame_s`` gives fixtures
FRAME_PER_BATCH_S = 1.6e-3
# a stage whose fixed costs dominate: 3.3 ms a batch, what the ETL example's runs at 64 and 256 rows a batch fit
# (``capacity.fit_batch_cost``), all of it taken here as Ray's framing
DOMINANT_FRAME_S = 3.3e-3


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


def small_batches_run(frame_s: float | None = 1250 * FRAME_PER_BATCH_S) -> Run:
    """read -> map_batches(work) at 8 rows a batch: 10,000 rows, 20 s of stage time (2 ms a row), of which Ray's
    framing of the 1,250 batches took ``frame_s`` (None: a chain Ray timed without its phases)."""
    run = two_stage_run()
    execution = run.executions[0]
    stats = (execution.stats[0], dataclasses.replace(execution.stats[1], frame_s=frame_s))
    staged = (run.stages[0], stage(1, "map_batches", "work", batch_size=8))
    return with_(run, stages=staged, executions=(dataclasses.replace(execution, stats=stats),))


def with_(run: Run, **changes: object) -> Run:
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def node_cpu(run: Run, pct: float, gpu_pct: float | None = None, start: float = 1.0, end: float = 11.0) -> Run:
    """Add one node's samples, once a second over the execution."""
    values: dict[str, float] = {"cpu_pct": pct}
    if gpu_pct is not None:
        values["gpu_util_pct"] = gpu_pct
    samples = tuple(Sample(float(t), "node:n1", dict(values)) for t in range(int(start), int(end) + 1))
    return with_(run, node_samples=samples)


def pipeline(
    specs: list[tuple[Stage, Operator, OperatorStats]],
    cpus: float = 2.0,
    gpus: float = 0.0,
    wall: float = 10.0,
    samples: tuple[Sample, ...] = (),
) -> Run:
    """A run whose stages each ran as the given operator, in one execution of ``wall`` seconds."""
    from pipetune.model import NodeInfo

    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return Run(
        id="r2",
        script="pipe.py",
        status=RunStatus.SUCCEEDED,
        wall_s=wall + 1,
        env=Environment(cluster_resources=resources, nodes=(NodeInfo("n1", "127.0.0.1", resources),)),
        stages=tuple(s for s, _, _ in specs),
        executions=(
            Execution(0, "ds", 1.0, tuple(o for _, o, _ in specs), 1.0 + wall, True, tuple(x for _, _, x in specs)),
        ),
        op_samples=samples,
    )


def looped(
    run: Run,
    blocked_s: float,
    user_s: float,
    batches: float = 100.0,
    rows: float = 10_000.0,
    first_wait_s: float = 0.5,
    split: int | None = None,
    index: int | None = None,
    steps: int = 10,
    **knobs: object,
) -> Run:
    """``run`` consumed by the script's loop (an ``iter_batches`` stage), its figures growing evenly from the
    execution's start: ``steps`` samples after a zero one, as the recorder sends them."""
    index = len(run.stages) if index is None else index
    stages = run.stages
    if not any(s.index == index for s in stages):
        loop = Stage(index, "iter_batches", "", f"pipe.py:{10 + index}", StageKind.CONSUME,
                     Knobs(**knobs), inputs=(index - 1,))  # type: ignore[arg-type]  # fmt: skip
        stages = (*stages, loop)
    source = f"consumer:{index}" + (f"/{split}" if split is not None else "")
    start = run.executions[0].started_t - 0.1 if run.executions else 0.0
    samples = [Sample(start, source, dict.fromkeys(("batches", "rows", "blocked_s", "user_s", "first_wait_s"), 0.0))]
    for k in range(1, steps + 1):
        f = k / steps
        values = {"batches": batches * f, "rows": rows * f, "blocked_s": first_wait_s + (blocked_s * f),
                  "user_s": user_s * f, "first_wait_s": first_wait_s, "ray_stats": 1.0}  # fmt: skip
        samples.append(Sample(start + 10.0 * f, source, values))
    return with_(run, stages=stages, consumer_samples=(*run.consumer_samples, *samples))


def calls(points: list[tuple[int, float]], stage: int = 1) -> Calls:
    """The sums ``record.in_task`` keeps of a stage's calls, each (rows, seconds)."""
    return Calls(stage, len(points), float(sum(r for r, _ in points)), sum(t for _, t in points),
                 float(sum(r * r for r, _ in points)), sum(r * t for r, t in points),
                 sum(t * t for _, t in points))  # fmt: skip


def range_run(blocks: int, overhead_s: float, work_s: float, planned_bytes: float | None = None) -> Run:
    """range(blocks) -> map: the read's tasks one after another, each ``work_s`` on its worker and
    ``overhead_s`` more as the driver saw it (submitted to finished); with ``planned_bytes``, the read's input
    bytes as Ray planned them (the recorder's ``bytes_planned``), on a sample of the read operator."""
    read = stage(0, "range", kind=StageKind.READ, override_num_blocks=blocks)
    m = stage(1, "map_batches", "parse")
    r_op, m_op = (
        Operator("0/ReadRange_1", "ReadRange", (0,)),
        Operator("0/MapBatches(parse)_2", "MapBatches(parse)", (1,)),
    )
    each = overhead_s + work_s
    spans = tuple(TaskSpan(r_op.uid, i, 1.0 + i * each, 1.0 + (i + 1) * each, worker_s=work_s) for i in range(blocks))
    planned = () if planned_bytes is None else (Sample(1.0, r_op.uid, {"bytes_planned": planned_bytes}),)
    run = pipeline(
        [
            (read, r_op, op_stats(r_op.uid, 30_000, blocks * work_s, blocks * work_s, tasks=blocks)),
            (m, m_op, op_stats(m_op.uid, 30_000, 2.0, 2.0, tasks=blocks)),
        ],
        wall=blocks * each + 4.0,
        samples=planned,
    )
    return with_(run, tasks=spans)
