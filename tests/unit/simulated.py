"""A simulated pipeline: a runner for whole studies in unit tests, on nodes this machine does not have.

Its physics is its own, written from how Ray Data runs a chain of operators rather than from pipetune's model:
every stage's task costs CPU time per row and per batch plus time waiting (a service, a disk); tasks run as
many at once as their reservations, their pool and the blocks allow, and no faster than the cores they share;
an actor pool first starts its actors (a process and an ``__init__`` each, on a core); a configuration whose
reservations do not fit the nodes hangs until its time box. Wall times carry seeded noise. It produces a
:class:`Run` as the recorder would store it, so the doctor, the model and the study read it unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipetune.diagnose.capacity import Room, reservations
from pipetune.model import (
    Dist,
    Environment,
    Execution,
    Knobs,
    NodeInfo,
    Operator,
    OperatorStats,
    Run,
    RunStatus,
    Sample,
    Stage,
    StageKind,
)
from pipetune.settings import Settings
from pipetune.store import Store
from pipetune.tune.steps import Step
from pipetune.tune.study import Study

DRIVER_S = 2.0  # the driver's start and the script's own time outside the execution


@dataclass(frozen=True)
class SimStage:
    method: str
    udf: str = ""
    kind: StageKind = StageKind.TRANSFORM
    cpu_per_row_s: float = 0.0  # CPU seconds a row costs on one core
    wait_per_row_s: float = 0.0  # seconds a row waits without a core (a service call)
    per_batch_s: float = 0.0  # CPU seconds Ray's framing costs every batch (its input prep and output build)
    call_s: float = 0.0  # CPU seconds the UDF's own call costs every batch: not in Ray's framing figure
    startup_s: float = 0.0  # an actor's start: its process and ``__init__``, on one core
    # a batch of more rows than this no longer fits the cache the UDF works in: each row then costs
    # ``cache_miss_factor`` times its CPU (an effect one run at a smaller batch cannot show); 0: no such limit
    cache_rows: int = 0
    cache_miss_factor: float = 1.0
    knobs: Knobs = field(default_factory=Knobs)


@dataclass
class SimPipeline:
    stages: tuple[SimStage, ...]
    rows: int
    blocks: int
    nodes: tuple[Room, ...]
    noise: float = 0.02  # relative spread of wall times
    seed: int = 0
    runs: int = field(default=0, init=False)
    hung: list[str] = field(default_factory=list, init=False)  # why each configuration that hung did

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    def shipped(self) -> tuple[Stage, ...]:
        return tuple(Stage(i, s.method, s.udf, f"pipe.py:{10 + i}", s.kind, s.knobs) for i, s in enumerate(self.stages))

    def run(self, config: Settings, run_id: str, time_box_s: float | None = None) -> Run:
        """One run of the pipeline with ``config`` applied, as the recorder would have stored it."""
        self.runs += 1
        stages = tuple(self._autoscaled(_applied(s, config)) for s in self.shipped())
        hangs = reservations((s, s.knobs) for s in stages).why_not(self.nodes)
        if hangs:
            self.hung.append(hangs)
        ops = [self._operator(i, s) for i, s in enumerate(stages)]
        exec_s, stats, samples = self._execute(stages, ops)
        rng = random.Random(hash((self.seed, self.runs)))
        wall = (DRIVER_S + exec_s) * (1 + self.noise * rng.gauss(0, 1))
        status, error = RunStatus.SUCCEEDED, ""
        if hangs or (time_box_s is not None and wall > time_box_s):
            wall = time_box_s or 600.0
            status, error = RunStatus.STOPPED, hangs or "stopped at its time box"
        execution = Execution(0, "ds", 1.0, tuple(ops), 1.0 + min(exec_s, wall), not hangs, tuple(stats), self.rows)
        return Run(
            id=run_id,
            script="pipe.py",
            overrides=config.to_args(),
            status=status,
            wall_s=wall,
            exit_code=0 if status is RunStatus.SUCCEEDED else None,
            error=error,
            env=_env(self.nodes),
            stages=stages,
            executions=(execution,),
            op_samples=tuple(samples),
        )

    def _autoscaled(self, stage: Stage) -> Stage:
        """Ray Data 2.60 runs a class UDF without a pool size on an autoscaling pool from 1 actor up: here, as
        many actors as leave one task's CPU on the cluster."""
        knobs = stage.knobs
        if stage.kind is not StageKind.ACTOR or knobs.concurrency is not None:
            return stage
        cpus = 1.0 if knobs.num_cpus is None else knobs.num_cpus
        actors = max(int((self.cpus - 1.0) / cpus), 1) if cpus > 0 else self.blocks
        return Stage(stage.index, stage.method, stage.udf, stage.site, stage.kind, knobs.replace(concurrency=actors))

    def _operator(self, i: int, stage: Stage) -> Operator:
        name = f"MapBatches({stage.udf})" if stage.udf else stage.method
        actors = stage.kind is StageKind.ACTOR
        size = _pool(stage.knobs) if actors else None
        cpus = 1.0 if stage.knobs.num_cpus is None else stage.knobs.num_cpus
        return Operator(f"0/{name}_{i}", name, (i,), "actors" if actors else "tasks", size, cpus)

    def _execute(
        self, stages: tuple[Stage, ...], ops: list[Operator]
    ) -> tuple[float, list[OperatorStats], list[Sample]]:
        per_row = [self._row_s(sim, st) for sim, st in zip(self.stages, stages, strict=True)]
        cpu_row = [self._cpu_row_s(sim, st) for sim, st in zip(self.stages, stages, strict=True)]
        limits = [
            self._parallel(sim, st, op) / pr for sim, st, op, pr in zip(self.stages, stages, ops, per_row, strict=True)
        ]
        rate = min(*limits, self.cpus / max(sum(cpu_row), 1e-12))
        starts = [self._startup(sim, op) for sim, op in zip(self.stages, ops, strict=True)]
        exec_s = max(starts) + self.rows / rate
        frames = [self.rows / self._batch(st) * sim.per_batch_s for sim, st in zip(self.stages, stages, strict=True)]
        stats = [self._stats(*args) for args in zip(ops, per_row, cpu_row, frames, strict=True)]
        samples = [
            Sample(1.0 + t, op.uid, {"actors_alive": 1.0})
            for op, t in zip(ops, starts, strict=True)
            if op.compute == "actors"
        ]
        return exec_s, stats, samples

    def _row_s(self, sim: SimStage, stage: Stage) -> float:
        return self._cpu_row_s(sim, stage) + sim.wait_per_row_s

    def _cpu_row_s(self, sim: SimStage, stage: Stage) -> float:
        batch = self._batch(stage)
        missed = sim.cache_rows and batch > sim.cache_rows
        return sim.cpu_per_row_s * (sim.cache_miss_factor if missed else 1.0) + (sim.per_batch_s + sim.call_s) / batch

    def _batch(self, stage: Stage) -> float:
        whole = self.rows / self.blocks  # Ray Data's default: a whole block per batch
        return float(min(stage.knobs.batch_size or whole, whole)) if stage.method == "map_batches" else whole

    def _parallel(self, sim: SimStage, stage: Stage, op: Operator) -> float:
        """Tasks (or actors) of the stage at once: its pool, its reservation against the CPUs, its blocks."""
        if op.compute == "actors":
            return float(op.max_concurrency or 1)
        slots = math.floor(self.cpus / op.num_cpus + 1e-9) if op.num_cpus > 0 else self.blocks
        cap = stage.knobs.concurrency if isinstance(stage.knobs.concurrency, int) else self.blocks
        return float(max(min(slots, cap, self.blocks), 1))

    def _startup(self, sim: SimStage, op: Operator) -> float:
        if op.compute != "actors":
            return 0.0
        return sim.startup_s * max(1.0, (op.max_concurrency or 1) / self.cpus)  # the starts share the cores

    def _stats(self, op: Operator, per_row: float, cpu_row: float, frame_s: float) -> OperatorStats:
        busy = self.rows * per_row
        block_rows = float(self.rows / self.blocks)
        return OperatorStats(
            uid=op.uid,
            wall_s=busy,
            busy_s=busy,
            cpu_s=self.rows * cpu_row,
            rows_in=self.rows,
            rows_out=self.rows,
            blocks=self.blocks,
            block_rows=Dist.of([block_rows] * self.blocks),
            block_bytes=Dist.of([block_rows * 100] * self.blocks),
            task_s=Dist.of([busy / self.blocks] * self.blocks),
            frame_s=frame_s,
        )


def _applied(stage: Stage, config: Settings) -> Stage:
    return Stage(stage.index, stage.method, stage.udf, stage.site, stage.kind, config.knobs_of(stage))


def _pool(knobs: Knobs) -> int:
    c = knobs.concurrency
    return int(c[0]) if isinstance(c, tuple) else int(c or 1)


def _env(nodes: tuple[Room, ...]) -> Environment:
    infos = tuple(NodeInfo(f"n{i}", f"10.0.0.{i}", {"CPU": n.cpus, "GPU": n.gpus}) for i, n in enumerate(nodes))
    total = {"CPU": sum(n.cpus for n in nodes), "GPU": sum(n.gpus for n in nodes)}
    return Environment(cluster_resources=total, nodes=infos)


@dataclass
class SimRunner:
    """A :class:`pipetune.tune.loop.Runner` over a simulated pipeline: each run is stored, as the recorder would."""

    store: Store
    pipeline: SimPipeline
    configs: list[Settings] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @contextmanager
    def open(self, study: Study) -> Iterator[None]:
        yield

    def run(self, study: Study, step: Step, run_id: str) -> Run:
        self.configs.append(step.config)
        self.steps.append(step)
        run = self.pipeline.run(step.config, run_id, step.time_box_s)
        self.store.add(run)
        return run
