"""The store contract, and the pure fold that turns a run's stored parts back into a :class:`Run`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipetune._serde import from_plain
from pipetune.model import (
    Environment,
    Event,
    Execution,
    Materialization,
    Operator,
    OperatorStats,
    Run,
    RunStatus,
    Sample,
    Stage,
    TaskSpan,
)


@dataclass(frozen=True)
class RunHeader:
    """What is known about a run before its script starts."""

    id: str
    script: str
    args: tuple[str, ...]
    cwd: str
    script_sha256: str
    overrides: tuple[str, ...]
    started_at: float


@dataclass(frozen=True)
class RunRow:
    """One line of the run history."""

    id: str
    script: str
    started_at: float
    status: RunStatus
    wall_s: float | None
    rows: int | None
    bottleneck: str


class Store(Protocol):
    """Keeps every run, append-only.

    Contract: ``create`` records a run as RUNNING; ``append`` adds one part (kind, JSON-able payload) in
    order and is durable when it returns, so a crash keeps every part appended so far; ``finish`` sets the
    outcome exactly once, after which the run never changes. ``load`` rebuilds the Run from its parts.
    Errors are :class:`pipetune.errors.StoreError` with a one-line cause, and never damage stored runs.
    """

    def create(self, header: RunHeader) -> None: ...

    def append(self, run_id: str, kind: str, payload: dict[str, Any]) -> None: ...

    def finish(self, run_id: str, outcome: dict[str, Any], rows: int, bottleneck: str) -> None: ...

    def load(self, run_id: str) -> Run: ...

    def runs(self, limit: int | None = None) -> list[RunRow]: ...

    def resolve(self, ref: str) -> str: ...

    def add(self, run: Run) -> None: ...


def assemble(header: RunHeader, outcome: dict[str, Any], parts: Iterable[tuple[str, dict[str, Any]]]) -> Run:
    """Fold a run's parts, in the order they were appended, into one Run."""
    stages: list[Stage] = []
    executions: list[Execution] = []
    op_samples: list[Sample] = []
    node_samples: list[Sample] = []
    events: list[Event] = []
    materializations: list[Materialization] = []
    tasks: list[TaskSpan] = []
    env = Environment()
    for kind, payload in parts:
        if kind == "stage":
            stages.append(from_plain(Stage, payload["stage"]))
        elif kind == "environment":
            env = from_plain(Environment, payload)
        elif kind == "execution":
            executions.append(_execution(payload))
        elif kind == "execution_end":
            executions = _end_execution(executions, payload)
        elif kind == "sink":
            executions = [
                replace(e, sink_rows=e.sink_rows + int(payload["rows"])) if e.index == payload["index"] else e
                for e in executions
            ]
        elif kind in ("op_samples", "node_samples"):
            target = op_samples if kind == "op_samples" else node_samples
            target.extend(Sample(payload["t"], src, v) for src, v in payload["values"].items())
        elif kind == "event":
            events.append(from_plain(Event, payload["event"]))
        elif kind == "materialize":
            materializations.append(from_plain(Materialization, payload))
        elif kind == "tasks":
            tasks.extend(TaskSpan(*row) for row in payload["spans"])
    return Run(
        id=header.id,
        script=header.script,
        args=header.args,
        cwd=header.cwd,
        script_sha256=header.script_sha256,
        overrides=header.overrides,
        started_at=header.started_at,
        status=RunStatus(outcome.get("status", RunStatus.RUNNING.value)),
        wall_s=outcome.get("wall_s"),
        exit_code=outcome.get("exit_code"),
        error=outcome.get("error", ""),
        traceback=outcome.get("traceback", ""),
        env=env,
        stages=tuple(stages),
        executions=tuple(executions),
        op_samples=tuple(op_samples),
        node_samples=tuple(node_samples),
        events=tuple(events),
        materializations=tuple(materializations),
        tasks=tuple(tasks),
    )


def _execution(payload: dict[str, Any]) -> Execution:
    return Execution(
        index=payload["index"],
        dataset_id=payload.get("dataset_id", ""),
        started_t=payload["t"],
        operators=tuple(from_plain(Operator, o) for o in payload.get("operators", [])),
    )


def _end_execution(executions: Sequence[Execution], payload: dict[str, Any]) -> list[Execution]:
    stats = tuple(from_plain(OperatorStats, s) for s in payload.get("stats", []))
    return [
        replace(e, ended_t=payload["t"], ok=payload.get("ok"), stats=stats) if e.index == payload["index"] else e
        for e in executions
    ]
