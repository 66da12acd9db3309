"""A store in memory: the :class:`pipetune.store.Store` contract without a file, for tests and embedding.

Parts and payloads are kept encoded, as the SQLite store keeps them, so both accept and return the same data:
a caller that changes a payload after storing it, or what a load gave back, changes nothing stored. Runs fold
back through the same builder as SQLite's (``capture.build``). "Durable" here means for the life of the process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pipetune import capture
from pipetune.capture import Outcome, Part
from pipetune.errors import StoreError
from pipetune.model import Run, RunStatus
from pipetune.store.base import LAST, RunHeader, RunRow, StoredStudy, StudyRow, chosen, store_whole

_WHERE = "the memory store"
_IMMUTABLE = f"{_WHERE} refused a write (run is finished and immutable)"
_IMMUTABLE_HINT = "a finished run never changes; nothing was written"
_Row = TypeVar("_Row", RunRow, StudyRow)


@dataclass
class _Run:
    header: RunHeader
    parts: list[tuple[str, bytes]] = field(default_factory=list)  # (kind, encoded message), in order
    outcome: Outcome = field(default_factory=Outcome)
    row: RunRow = field(init=False)

    def __post_init__(self) -> None:
        h = self.header
        self.row = RunRow(h.id, h.script, h.started_at, RunStatus.RUNNING, None, None, "")

    def close(self, outcome: Outcome, rows: int | None, bottleneck: str) -> None:
        """The run's one outcome, and its history line with it; both are built before either is kept."""
        row = replace(self.row, status=outcome.status, wall_s=outcome.wall_s, rows=rows, bottleneck=bottleneck)
        self.outcome, self.row = outcome, row


@dataclass
class _Study:
    row: StudyRow
    spec: str  # JSON
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, payload as JSON), in order


class MemoryStore:
    """Runs and studies in dicts, newest last; one lock makes each call atomic across threads."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._studies: dict[str, _Study] = {}
        self._lock = threading.Lock()

    # -- runs ------------------------------------------------------------------------------------------

    def create(self, header: RunHeader) -> None:
        with self._lock:
            self._refuse_taken(header.id, self._runs, "run")
            self._runs[header.id] = _Run(header)

    def append(self, run_id: str, part: Part) -> None:
        encoded = (capture.kind_of(part), capture.encode(part))
        with self._lock:
            self._running(run_id).parts.append(encoded)

    def finish(self, run_id: str, outcome: Outcome, rows: int, bottleneck: str) -> None:
        with self._lock:
            self._running(run_id).close(outcome, rows, bottleneck)

    def abandon(self, run_id: str, why: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.row.status is RunStatus.RUNNING:
                run.close(Outcome(status=RunStatus.KILLED, exit_code=137, error=why), None, "")

    def add(self, run: Run) -> None:
        if run.id in self._runs:
            raise StoreError(f"the store already holds a run {run.id}", "it is left as it was")
        store_whole(self, run)

    def load(self, run_id: str) -> Run:
        run_id = self.resolve(run_id)
        with self._lock:
            run = self._runs[run_id]
            header, outcome, parts = run.header, run.outcome, list(run.parts)
        try:
            decoded = (capture.decode_part(kind, data.decode()) for kind, data in parts)
            return capture.build(header.seed(outcome), (p for p in decoded if p is not None))
        except (capture.DecodeError, KeyError, TypeError, ValueError) as err:
            raise StoreError(f"run {run_id} in {_WHERE} cannot be read ({err!r})", _DAMAGED_HINT) from None

    def runs(self, limit: int | None = None) -> list[RunRow]:
        with self._lock:
            rows = [run.row for run in self._runs.values()]
        return _newest_first(rows, lambda row: row.started_at)[: limit or None]

    def resolve(self, ref: str) -> str:
        return chosen(ref, _matches(ref, [row.id for row in self.runs()]), "run", _WHERE)

    def _running(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise StoreError(f"no run {run_id} in {_WHERE}", "create the run before writing to it")
        if run.row.status is not RunStatus.RUNNING:
            raise StoreError(_IMMUTABLE, _IMMUTABLE_HINT)
        return run

    # -- studies ---------------------------------------------------------------------------------------

    def create_study(self, study_id: str, script: str, spec: dict[str, Any]) -> None:
        text = _json(spec)
        with self._lock:
            self._refuse_taken(study_id, self._studies, "study")
            self._studies[study_id] = _Study(StudyRow(study_id, script, time.time()), text)

    def append_study(self, study_id: str, kind: str, payload: dict[str, Any]) -> None:
        text = _json(payload)
        with self._lock:
            study = self._studies.get(study_id)
            if study is None:
                raise StoreError(f"no study {study_id} in {_WHERE}", "create the study before its events")
            study.events.append((kind, text))

    def load_study(self, ref: str) -> StoredStudy:
        study_id = self.resolve_study(ref)
        with self._lock:
            study = self._studies[study_id]
            spec, events = study.spec, list(study.events)
        return StoredStudy(study_id, json.loads(spec), list(_decoded(events)))

    def studies(self, limit: int | None = None) -> list[StudyRow]:
        with self._lock:
            rows = [study.row for study in self._studies.values()]
        return _newest_first(rows, lambda row: row.created_at)[: limit or None]

    def resolve_study(self, ref: str) -> str:
        return chosen(ref, _matches(ref, [row.id for row in self.studies()]), "study", _WHERE)

    def close(self) -> None:
        """Nothing is held open; the contents stay until the store is dropped."""

    @staticmethod
    def _refuse_taken(key: str, taken: dict[str, Any], noun: str) -> None:
        if key in taken:
            raise StoreError(f"{_WHERE} refused a write (the {noun} id {key} is taken)", "nothing was written")


def _json(payload: dict[str, Any]) -> str:
    """The payload as the SQLite store writes it: what cannot be written as JSON raises TypeError here too."""
    return json.dumps(payload, separators=(",", ":"))


def _decoded(items: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((kind, json.loads(payload)) for kind, payload in items)


def _newest_first(rows: list[_Row], when: Callable[[_Row], float]) -> list[_Row]:
    """Newest first; entries of the same instant, the one stored last first (as SQLite's ``rowid DESC``)."""
    return sorted(reversed(rows), key=when, reverse=True)


def _matches(ref: str, newest_first: list[str]) -> list[str]:
    """What ``chosen`` picks from: the newest for ``last``, else the exact id first, then at most one prefix."""
    if ref in LAST:
        return newest_first[:1]
    exact = [ref] if ref in newest_first else []
    return (exact + [i for i in newest_first if i.startswith(ref) and i != ref])[:2]


_DAMAGED_HINT = "a part was stored without what the run needs (a broken recorder); other runs are unaffected"
