"""The SQLite store: one file, append-only parts per run, safe to read while a run writes.

Finished runs are protected by the database itself (triggers refuse changes), so no code path of ours, now or
later, can alter a recorded run. A file that is not a pipetune store is refused and left untouched.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipetune import capture
from pipetune.capture import Outcome, Part
from pipetune.errors import StoreError
from pipetune.model import Run, RunStatus
from pipetune.store.base import LAST, RunHeader, RunRow, StoredStudy, StudyRow, chosen, store_whole

DEFAULT_PATH = Path(".pipetune") / "pipetune.db"
APPLICATION_ID = 0x70697065  # "pipe": marks the file as ours
LAYOUT_0 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    script TEXT NOT NULL,
    started_at REAL NOT NULL,
    status TEXT NOT NULL,
    wall_s REAL,
    rows INTEGER,
    bottleneck TEXT NOT NULL DEFAULT '',
    header TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS parts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TRIGGER IF NOT EXISTS parts_only_while_running BEFORE INSERT ON parts
WHEN (SELECT status FROM runs WHERE id = NEW.run_id) IS NOT 'running'
BEGIN SELECT RAISE(ABORT, 'run is finished and immutable'); END;
CREATE TRIGGER IF NOT EXISTS finished_runs_are_immutable BEFORE UPDATE ON runs
WHEN OLD.status != 'running'
BEGIN SELECT RAISE(ABORT, 'run is finished and immutable'); END;
CREATE TRIGGER IF NOT EXISTS parts_never_change BEFORE UPDATE ON parts
BEGIN SELECT RAISE(ABORT, 'stored parts are immutable'); END;
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    script TEXT NOT NULL,
    created_at REAL NOT NULL,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS study_events (
    study_id TEXT NOT NULL REFERENCES studies(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (study_id, seq)
);
CREATE TRIGGER IF NOT EXISTS study_events_never_change BEFORE UPDATE ON study_events
BEGIN SELECT RAISE(ABORT, 'study events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS studies_never_change BEFORE UPDATE ON studies
BEGIN SELECT RAISE(ABORT, 'study specs are immutable'); END;
"""
# The schema's history, oldest first: migration N takes a store from version N-1 to N (``PRAGMA user_version``).
# Stores written before versions existed are version 0 and hold ``LAYOUT_0`` (all IF NOT EXISTS), so migration 1
# both creates a new store and stamps an old one. Append a migration for every change; never edit one.
MIGRATIONS: tuple[str, ...] = (
    LAYOUT_0
    + """
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS studies_by_creation ON studies (created_at);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)


def open_store(path: str | Path | None = None, readonly: bool = False) -> SQLiteStore:
    """The store at ``path`` (default ``DEFAULT_PATH``), created and brought to ``SCHEMA_VERSION`` if needed;
    ``readonly`` opens it as it is, for viewers, and refuses every write."""
    return SQLiteStore(Path(path) if path else DEFAULT_PATH, readonly)


class SQLiteStore:
    """:class:`pipetune.store.Store` in one SQLite file (WAL: readers never wait for the writer).

    Every write is one transaction, committed before the call returns. Several processes may write at once:
    a study's next event number is read under the write lock, so two writers never take the same one.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self._db = self._connect_readonly() if readonly else self._connect()
        self._seq: dict[str, int] = {}

    def _connect_readonly(self) -> sqlite3.Connection:
        """For viewers (the dashboard): SQLite itself refuses every write on this connection."""
        if not self.path.is_file():
            raise StoreError(f"no store at {self.path}", "record a run first, or pass --store PATH")
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10,
                                 check_same_thread=False)  # fmt: skip
            self._check_ours(db)
            self._check_version(db)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be used ({err})", _hint(err)) from None
        return db

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._check_ours(db)
            self._check_version(db)
            _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
            self._migrate(db)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be used ({err})", _hint(err)) from None
        except OSError as err:
            raise StoreError(f"store {self.path} cannot be created ({err.strerror})", _WRITABLE_HINT) from None
        return db

    def _check_ours(self, db: sqlite3.Connection) -> None:
        # One statement, so one snapshot: read apart, another opener's first migration could commit in between
        # (tables, but no id yet) and a new store would be taken for someone else's file.
        app_id, tables = db.execute(
            "SELECT (SELECT application_id FROM pragma_application_id), (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if app_id != APPLICATION_ID and tables:
            raise StoreError(f"{self.path} is an SQLite file but not a pipetune store", _OTHER_FILE_HINT)

    def _check_version(self, db: sqlite3.Connection) -> None:
        """A store from a newer pipetune is refused before anything is written to it."""
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} was written by a newer pipetune (schema {version}; this one reads up to "
                f"{SCHEMA_VERSION})",
                "upgrade pipetune to read it, or pass --store PATH for another store; the file was not changed",
            )

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the store to ``SCHEMA_VERSION``, one migration at a time, each in one transaction."""
        while True:
            with db:
                db.execute("BEGIN IMMEDIATE")  # re-read under the write lock: two processes never both migrate
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version >= SCHEMA_VERSION:
                    return
                for statement in _statements(MIGRATIONS[version]):
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={version + 1}")

    @property
    def schema_version(self) -> int:
        """The schema the file holds now (``PRAGMA user_version``)."""
        return int(self._query("PRAGMA user_version")[0][0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:  # one transaction: all or nothing
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} refused a write ({err})", _hint(err)) from None

    # -- writing --------------------------------------------------------------------------------------

    def create(self, header: RunHeader) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, script, started_at, status, header) VALUES (?, ?, ?, 'running', ?)",
                (header.id, header.script, header.started_at, json.dumps(header.__dict__)),
            )
        self._seq[header.id] = 0

    def append(self, run_id: str, part: Part) -> None:
        """Keep one part: filed under its kind, its payload the message's JSON (kind included)."""
        seq = self._seq.get(run_id, 0)
        with self._write() as db:
            db.execute(
                "INSERT INTO parts (run_id, seq, kind, payload) VALUES (?, ?, ?, ?)",
                (run_id, seq, capture.kind_of(part), capture.encode(part).decode()),
            )
        self._seq[run_id] = seq + 1

    def finish(self, run_id: str, outcome: Outcome, rows: int, bottleneck: str) -> None:
        with self._write() as db:
            updated = db.execute(
                "UPDATE runs SET status = ?, wall_s = ?, rows = ?, bottleneck = ?, outcome = ? WHERE id = ?",
                (outcome.status.value, outcome.wall_s, rows, bottleneck, capture.encode(outcome).decode(), run_id),
            )
            if updated.rowcount == 0:  # a finished run is refused by the trigger: none here means no such run
                raise StoreError(f"no run {run_id} in {self.path}", "create the run before finishing it")

    def add(self, run: Run) -> None:
        """Store a whole run (e.g. imported from JSON) under its own id."""
        if self._exists(run.id):
            raise StoreError(f"the store already holds a run {run.id}", "it is left as it was")
        store_whole(self, run)

    # -- reading --------------------------------------------------------------------------------------

    def _exists(self, run_id: str) -> bool:
        return self._query("SELECT 1 FROM runs WHERE id = ?", (run_id,)) != []

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be read ({err})", _hint(err)) from None

    def resolve(self, ref: str) -> str:
        return chosen(ref, self._matches("runs", "started_at", ref), "run", str(self.path))

    def _matches(self, table: str, order: str, ref: str) -> list[str]:
        """The ids ``chosen`` picks from: the newest for ``last``, else the exact id first, then prefixes."""
        if ref in LAST:
            rows = self._query(f"SELECT id FROM {table} ORDER BY {order} DESC, rowid DESC LIMIT 1")
        else:  # substr, not LIKE: LIKE ignores case and reads _ and % as wildcards
            prefixed = f"SELECT id FROM {table} WHERE substr(id, 1, length(?1)) = ?1"
            rows = self._query(prefixed + " ORDER BY id != ?1 LIMIT 2", (ref,))
        return [str(row[0]) for row in rows]

    def load(self, run_id: str) -> Run:
        run_id = self.resolve(run_id)
        (header_json, outcome_json), *_ = self._query("SELECT header, outcome FROM runs WHERE id = ?", (run_id,))
        parts = self._query("SELECT kind, payload FROM parts WHERE run_id = ? ORDER BY seq", (run_id,))
        try:
            seed = _header(json.loads(header_json)).seed(capture.decode_outcome(outcome_json))
            return capture.build(seed, (p for p in (capture.decode_part(k, p) for k, p in parts) if p is not None))
        except (capture.DecodeError, KeyError, ValueError) as err:
            raise StoreError(f"run {run_id} in {self.path} cannot be read ({err})", _CORRUPT_HINT) from None

    def runs(self, limit: int | None = None) -> list[RunRow]:
        columns = "id, script, started_at, status, wall_s, rows, bottleneck"
        sql = f"SELECT {columns} FROM runs ORDER BY started_at DESC, rowid DESC"
        rows = self._query(sql + (f" LIMIT {int(limit)}" if limit else ""))
        return [RunRow(r[0], r[1], r[2], RunStatus(r[3]), r[4], r[5], r[6]) for r in rows]

    # -- studies (tuning): a spec, then events appended in order; the state is their fold ---------------

    def create_study(self, study_id: str, script: str, spec: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO studies (id, script, created_at, spec) VALUES (?, ?, ?, ?)",
                (study_id, script, time.time(), json.dumps(spec)),
            )

    def append_study(self, study_id: str, kind: str, payload: dict[str, Any]) -> None:
        with self._write() as db:  # the next seq is read inside the transaction: two writers cannot collide
            if db.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is None:
                raise StoreError(f"no study {study_id} in {self.path}", "create the study before its events")
            (seq,) = db.execute("SELECT count(*) FROM study_events WHERE study_id = ?", (study_id,)).fetchone()
            db.execute(
                "INSERT INTO study_events (study_id, seq, kind, payload) VALUES (?, ?, ?, ?)",
                (study_id, seq, kind, json.dumps(payload, separators=(",", ":"))),
            )

    def resolve_study(self, ref: str) -> str:
        return chosen(ref, self._matches("studies", "created_at", ref), "study", str(self.path))

    def load_study(self, ref: str) -> StoredStudy:
        study_id = self.resolve_study(ref)
        ((spec_json,),) = self._query("SELECT spec FROM studies WHERE id = ?", (study_id,))
        events = self._query("SELECT kind, payload FROM study_events WHERE study_id = ? ORDER BY seq", (study_id,))
        try:
            return StoredStudy(study_id, json.loads(spec_json), [(k, json.loads(p)) for k, p in events])
        except ValueError as err:
            raise StoreError(f"study {study_id} in {self.path} cannot be read ({err})", _CORRUPT_HINT) from None

    def studies(self, limit: int | None = None) -> list[StudyRow]:
        sql = "SELECT id, script, created_at FROM studies ORDER BY created_at DESC, rowid DESC"
        return [StudyRow(*r) for r in self._query(sql + (f" LIMIT {int(limit)}" if limit else ""))]

    def abandon(self, run_id: str, why: str) -> None:
        with self._write() as db:  # only a running run matches, so the immutability trigger never fires here
            db.execute(
                "UPDATE runs SET status = 'killed', outcome = ? WHERE id = ? AND status = 'running'",
                (json.dumps({"status": "killed", "exit_code": 137, "error": why}), run_id),
            )

    def close(self) -> None:
        self._db.close()


def _header(data: dict[str, Any]) -> RunHeader:
    return RunHeader(
        id=data["id"],
        script=data["script"],
        args=tuple(data.get("args", ())),
        cwd=data.get("cwd", ""),
        script_sha256=data.get("script_sha256", ""),
        overrides=tuple(data.get("overrides", ())),
        started_at=data.get("started_at", 0.0),
    )


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (``executescript`` would commit the migration's transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def _retry_locked(action: Any, attempts: int = 20) -> Any:
    """Switching to WAL takes the write lock; with another process starting at the same moment, try again."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None


_WRITABLE_HINT = "choose a writable place with --store PATH"
_OTHER_FILE_HINT = "pass --store with another path; this file was not changed"
_CORRUPT_HINT = "the file is damaged: move it aside (other runs are kept in it) and pass --store for new runs"


def _hint(err: sqlite3.DatabaseError) -> str:
    text = str(err)
    if "immutable" in text:
        return "a finished run, and a study's spec and events, never change; nothing was written"
    if "UNIQUE constraint" in text:
        return "the id is already stored; nothing was written"
    if "readonly" in text or "unable to open" in text:
        return _WRITABLE_HINT
    if "not a database" in text or "malformed" in text:
        return _CORRUPT_HINT
    return "check the file and the disk, or pass --store PATH"
