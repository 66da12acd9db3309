"""The store contract. A run's stored parts are capture messages; ``pipetune.capture`` folds them into a Run."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from pipetune.capture import Outcome, Part, messages_of
from pipetune.errors import RunNotFound
from pipetune.model import Run, RunStatus

StudyEvent = tuple[str, dict[str, Any]]  # (kind, JSON-able payload): one event of a study
LAST = ("last", "latest")  # the references that name the newest run or study


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
    """One line of the run history. ``bottleneck`` is the label the recorder passed to ``finish``, kept as is."""

    id: str
    script: str
    started_at: float
    status: RunStatus
    wall_s: float | None
    rows: int | None
    bottleneck: str


class StudyRow(NamedTuple):
    """One line of the study list."""

    id: str
    script: str
    created_at: float


class StoredStudy(NamedTuple):
    """A study as stored: its spec, and its events in the order they were appended (``Study.fold(*it)``)."""

    id: str
    spec: dict[str, Any]
    events: list[StudyEvent]


class Store(Protocol):
    """Keeps every run and every tuning study, append-only.

    The contract every store honours (tests/unit/test_store_contract.py checks it for each one):

    - Append-only: parts of a run and events of a study are kept in the order appended and never change.
    - Durable on return: once a write returns, a crash of the writer loses none of it (MemoryStore: for the
      life of the process).
    - Finished runs are immutable: after ``finish`` (or ``abandon``) a run takes no part and no second outcome;
      trying raises StoreError "run is finished and immutable".
    - What a caller gets back is its own copy: changing it changes nothing stored.
    - Errors are :class:`pipetune.errors.StoreError` (unknown references: :class:`pipetune.errors.RunNotFound`)
      whose ``str`` is one line with the cause and what to do; a refused call changes nothing stored.
    - The store computes nothing about a run: summaries such as the history line's bottleneck are passed in.
    - References: a full id, a unique prefix of one, or ``last`` (the newest). Listings are newest first,
      entries of the same instant in the reverse of the order they were stored.
    """

    # -- runs ------------------------------------------------------------------------------------------

    def create(self, header: RunHeader) -> None:
        """Record a new run as RUNNING. An id already stored is refused."""
        ...

    def append(self, run_id: str, part: Part) -> None:
        """Add one part (a capture message) to a running run, after every part appended before it; durable on return."""
        ...

    def finish(self, run_id: str, outcome: Outcome, rows: int, bottleneck: str) -> None:
        """Set a running run's outcome exactly once. ``rows`` and ``bottleneck`` are the history line's
        summary, computed by the caller and stored as given. An unknown run is refused."""
        ...

    def abandon(self, run_id: str, why: str) -> None:
        """Close a run whose recorder died as KILLED with ``why`` as its error. Finished or unknown runs are left
        as they are: abandoning is safe to repeat."""
        ...

    def add(self, run: Run) -> None:
        """Store a whole finished run (an import) under its own id, so that ``load`` returns it unchanged."""
        ...

    def load(self, run_id: str) -> Run:
        """The run, folded from its parts in order (a running run shows what has come so far). ``run_id`` is
        resolved first, so any reference ``resolve`` takes will do."""
        ...

    def runs(self, limit: int | None = None) -> list[RunRow]:
        """The run history, newest first (by start time), at most ``limit`` lines."""
        ...

    def resolve(self, ref: str) -> str:
        """The id of the run ``ref`` names; RunNotFound when none or several do."""
        ...

    # -- studies (tuning): a spec, then events appended in order; the study's state is their fold ---------

    def create_study(self, study_id: str, script: str, spec: dict[str, Any]) -> None:
        """Record a new study with its spec, which never changes. An id already stored is refused."""
        ...

    def append_study(self, study_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Add one event to a study, after every event appended before it (also from other writers); durable on
        return. An unknown study is refused."""
        ...

    def load_study(self, ref: str) -> StoredStudy:
        """The study ``ref`` names, with its events in order."""
        ...

    def studies(self, limit: int | None = None) -> list[StudyRow]:
        """The studies, newest first (by creation time), at most ``limit``."""
        ...

    def resolve_study(self, ref: str) -> str:
        """The id of the study ``ref`` names; RunNotFound when none or several do."""
        ...

    def close(self) -> None:
        """Release what the store holds open; the store is not used afterwards."""
        ...


def store_whole(store: Store, run: Run) -> None:
    """Keep a whole finished run (an import) through the store's own create/append/finish, so every store
    imports the same way; a run that cannot be taken apart fails before anything is kept."""
    parts = list(messages_of(run))
    store.create(RunHeader.of(run))
    for part in parts:
        store.append(run.id, part)
    store.finish(run.id, Outcome.of(run), run.rows, "")


def chosen(ref: str, matches: Sequence[str], noun: Literal["run", "study"], where: str) -> str:
    """The one id ``ref`` names, from the ids that match it: those equal to it (first) or starting with it, two
    at most; for ``last``, the newest. Shared by every store so that each refuses with the same words."""
    if matches and (len(matches) == 1 or matches[0] == ref):
        return matches[0]
    plural = _PLURAL[noun]
    if not matches:
        raise RunNotFound(f"no {noun} '{ref}' in {where}", f"`pipetune {plural}` lists the stored {plural}")
    raise RunNotFound(f"'{ref}' matches several {plural}", "give more characters of the id")


_PLURAL = {"run": "runs", "study": "studies"}


def new_run_id(now: float | None = None) -> str:
    """A fresh run id: the local start time to the second, then random hex (ids sort by start)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"
