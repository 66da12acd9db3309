"""Starting settings per stage from the guide's tables, or from measurements where a recorded run has them.

Pure: stages (typed by the doctor's classification, or from the source when nothing was recorded), a cluster,
a model name and an image resolution in; a plan out, every value with the table row or measurement behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from pipetune.diagnose import BATCH_BY_TYPE, NUM_CPUS_BY_TYPE, OpType
from pipetune.plan import tables
from pipetune.plan.cluster import Cluster

_MATRIX = "guide: resource allocation matrix by operation type, row '{}'"


@dataclass(frozen=True)
class Value:
    value: Any
    source: str


@dataclass(frozen=True)
class StageIn:
    """A stage as the planner sees it. The measured fields are None when no run was recorded."""

    index: int
    key: str
    op_type: OpType
    actor: bool
    rows: int | None = None
    seconds_per_row: float | None = None  # busy task-seconds per row, measured
    cores_per_task: float | None = None
    batch_from_run: Value | None = None  # a measured batch size proposal (fixed per-batch costs)
    loads: str = ""  # the call by which its UDF loads a model, read from the source ("" if none)


@dataclass(frozen=True)
class StagePlan:
    stage: StageIn
    settings: dict[str, Value] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prediction:
    rows_per_s: float
    limiting: str
    per_stage: dict[str, float]  # rows/s each stage could sustain under the plan
    caveats: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    cluster: Cluster
    stages: tuple[StagePlan, ...]
    prediction: Prediction | None


def plan(stages: list[StageIn], cluster: Cluster, model: str | None = None, resolution: int | None = None) -> Plan:
    planned = tuple(_plan_stage(s, cluster, model, resolution) for s in stages)
    return Plan(cluster, planned, predict(planned, cluster))


def _plan_stage(stage: StageIn, cluster: Cluster, model: str | None, resolution: int | None) -> StagePlan:
    settings: dict[str, Value] = {}
    notes: list[str] = []
    stage = _told(stage, cluster, model, notes)
    if stage.op_type is OpType.GPU_INFERENCE:
        _gpu(stage, cluster, model, resolution, settings, notes)
    elif stage.op_type is OpType.CPU_INFERENCE and stage.actor:
        _cpu_actor(stage, cluster, settings)
    else:
        _task(stage, cluster, settings)
    _measured(stage, settings, notes)
    return StagePlan(stage, settings, tuple(notes))


def _told(stage: StageIn, cluster: Cluster, model: str | None, notes: list[str]) -> StageIn:
    """What the user said wins over what the code shows: ``--model`` makes a stage that loads a model an
    inference stage (GPU inference where the cluster has GPUs), whatever its measured or guessed type."""
    if not (model and stage.loads) or stage.op_type is OpType.GPU_INFERENCE:
        return stage
    kind = OpType.GPU_INFERENCE if cluster.gpus else OpType.CPU_INFERENCE
    notes.append(f"{stage.key} loads a model ({stage.loads}) and --model {model} names it: {kind.value}")
    if not stage.actor:
        notes.append(f"{stage.key} is a function: make it a class so each replica loads the model once (lint PT003)")
    batch = stage.batch_from_run
    if batch is not None and kind is OpType.GPU_INFERENCE:  # measured where it ran as CPU work, not on a GPU
        notes.append(f"{stage.key}: the recorded batch ({batch.value}) was measured on CPUs: the GPU table applies")
        batch = None
    return replace(stage, op_type=kind, actor=True, batch_from_run=batch)


def _task(stage: StageIn, cluster: Cluster, settings: dict[str, Value]) -> None:
    row = NUM_CPUS_BY_TYPE.get(stage.op_type)
    if cluster.mixed and stage.op_type is not OpType.WRITING:
        settings["num_cpus"] = Value(tables.MIXED_CPU_STAGE_CPUS, f"guide: by hardware, {tables.MIXED_CLUSTER}")
    elif row is not None:
        settings["num_cpus"] = Value(row[0], _MATRIX.format(stage.op_type.value) + f", low end of {row[0]}-{row[1]}")
    batch = BATCH_BY_TYPE.get(stage.op_type)
    if batch is not None:
        settings["batch_size"] = Value(
            batch[1], _MATRIX.format(stage.op_type.value) + f", high end of {batch[0]}-{batch[1]}"
        )


def _cpu_actor(stage: StageIn, cluster: Cluster, settings: dict[str, Value]) -> None:
    source = f"guide: by hardware, {tables.CPU_CLUSTER}"
    settings["num_cpus"] = Value(tables.CPU_ACTOR_CPUS, source)
    settings["concurrency"] = Value(max(1, int(cluster.cpus // tables.CPU_ACTOR_CPUS) - 1),
                                    source + " (one actor's CPUs left to the other stages)")  # fmt: skip
    per_worker = cluster.memory_gb / max(cluster.cpus / tables.CPU_ACTOR_CPUS, 1)
    row = tables.cpu_batch(per_worker)
    settings["batch_size"] = Value(int(row.high), f"{row.source} ({per_worker:.0f} GB per actor), high end")


def _gpu(
    stage: StageIn, cluster: Cluster, model: str | None, resolution: int | None,
    settings: dict[str, Value], notes: list[str],
) -> None:  # fmt: skip
    source = f"guide: by hardware, {tables.GPU_CLUSTER}"
    if not cluster.gpus:
        notes.append("a GPU stage, but the cluster has no GPU: it would never be scheduled")
        return
    settings["num_gpus"] = Value(1.0, source)
    settings["num_cpus"] = Value(1.0, source)
    settings["concurrency"] = Value(int(cluster.gpus), source)
    size, why = tables.model_size(model)
    row = tables.gpu_batch(cluster.gpu_memory_gb, size)
    divisor, scaled = tables.resolution_divisor(resolution)
    batch = max(1, int(row.high / divisor))
    settings["batch_size"] = Value(batch, f"{row.source}, high end {row.high:g}" + (f", {scaled}" if scaled else ""))
    notes.append(why)


def _measured(stage: StageIn, settings: dict[str, Value], notes: list[str]) -> None:
    """A recorded run knows better than the table: what each task really burns, what each batch really costs."""
    cores = stage.cores_per_task
    if cores is not None and "num_cpus" in settings and stage.op_type is not OpType.GPU_INFERENCE:
        step = 0.025 if cores < 0.25 else 0.25
        measured = max(step, math.ceil(cores / step) * step)
        table = settings["num_cpus"].value
        if abs(measured - table) > step / 2:
            settings["num_cpus"] = Value(
                round(measured, 3), f"measured: each task burnt {cores:.2f} cores (the table says {table:g})"
            )
            notes.append("num_cpus from the recorded run, not the table")
    if stage.batch_from_run is not None and "batch_size" in settings:
        settings["batch_size"] = stage.batch_from_run
        notes.append("batch_size from the recorded run's per-batch costs, not the table")


def predict(stages: tuple[StagePlan, ...], cluster: Cluster) -> Prediction | None:
    """Rows/s of the plan on ``cluster`` from the per-row costs measured here (same per-core speed assumed)."""
    rates: dict[str, float] = {}
    caveats = ["assumes the target's cores are as fast as the ones measured"]
    for sp in stages:
        s = sp.stage
        if s.seconds_per_row is None or s.seconds_per_row <= 0:
            continue
        slots = _slots(sp, cluster)
        if s.op_type is OpType.GPU_INFERENCE:
            caveats.append(f"{s.key}: measured without a GPU; its GPU speed is not known, the figure is a floor")
        rates[s.key] = slots / s.seconds_per_row
    if not rates:
        return None
    limiting = min(rates, key=lambda k: rates[k])
    return Prediction(rates[limiting], limiting, rates, tuple(caveats))


def _slots(sp: StagePlan, cluster: Cluster) -> float:
    cpus = float(sp.settings.get("num_cpus", Value(1.0, "")).value) or 1.0
    limits = [cluster.cpus / cpus]
    if "concurrency" in sp.settings:
        limits.append(float(sp.settings["concurrency"].value))
    if sp.stage.cores_per_task:
        limits.append(cluster.cpus / max(sp.stage.cores_per_task, 0.01))  # CPU-bound tasks cannot share cores
    return max(min(limits), 1.0)
