"""The store contract. A run's stored parts are capture messages; ``pipetune.capture`` folds them into a Run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipetune.capture import Outcome, Part
from pipetune.model import Run, RunStatus


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

    @staticmethod
    def of(run: Run) -> RunHeader:
        return RunHeader(run.id, run.script, run.args, run.cwd, run.script_sha256, run.overrides, run.started_at)

    def seed(self, outcome: Outcome) -> Run:
        """The run as known before any part: what ``RunBuilder`` folds the parts onto."""
        run = Run(self.id, self.script, self.args, self.cwd, self.script_sha256, self.overrides,
                  started_at=self.started_at)  # fmt: skip
        return outcome.applied_to(run)


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

    Contract: ``create`` records a run as RUNNING; ``append`` adds one part (a capture message) in
    order and is durable when it returns, so a crash keeps every part appended so far; ``finish`` sets the
    outcome exactly once, after which the run never changes. ``load`` rebuilds the Run from its parts.
    Errors are :class:`pipetune.errors.StoreError` with a one-line cause, and never damage stored runs.
    """

    def create(self, header: RunHeader) -> None: ...

    def append(self, run_id: str, part: Part) -> None: ...

    def finish(self, run_id: str, outcome: Outcome, rows: int, bottleneck: str) -> None: ...

    def load(self, run_id: str) -> Run: ...

    def runs(self, limit: int | None = None) -> list[RunRow]: ...

    def resolve(self, ref: str) -> str: ...

    def add(self, run: Run) -> None: ...
