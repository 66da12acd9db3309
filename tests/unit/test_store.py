"""What only the SQLite store must do: files, schema versions, readers and writers in other processes.

The contract every store shares is tested in test_store_contract.py.
"""

import sqlite3
from pathlib import Path

import pytest

from pipetune.capture import StageBuilt
from pipetune.errors import StoreError
from pipetune.model import RunStatus
from pipetune.store import SCHEMA_VERSION, open_store
from tests.unit.builders import stage, two_stage_run
from tests.unit.test_store_contract import header


def test_a_second_connection_reads_a_running_run_as_its_parts_arrive(tmp_path: Path) -> None:
    """Durable on return: another process (the dashboard, a resumed tuner) sees every part appended so far."""
    writer = open_store(tmp_path / "s.db")
    writer.create(header())
    writer.append(header().id, StageBuilt(stage(0, "range")))
    live = open_store(tmp_path / "s.db", readonly=True).load(header().id)
    assert live.status is RunStatus.RUNNING and [s.method for s in live.stages] == ["range"]


def test_a_readonly_store_refuses_every_write(tmp_path: Path) -> None:
    open_store(tmp_path / "s.db").add(two_stage_run())
    viewer = open_store(tmp_path / "s.db", readonly=True)
    with pytest.raises(StoreError, match=r"refused a write.*--store"):
        viewer.create(header())
    assert [r.id for r in viewer.runs()] == ["r1"]


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "pipetune.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"cannot be used.*move it aside"):
        open_store(path)
    assert path.read_bytes() == before


def test_another_programs_database_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(StoreError, match="not a pipetune store"):
        open_store(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("accounts",)]


def test_a_path_that_cannot_be_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"cannot be created.*--store"):
        open_store(blocker / "s.db")


def test_damaged_parts_give_a_clear_error_and_other_runs_still_load(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.add(two_stage_run())
    store.create(header())
    with store._write() as db:  # no "t": written by a broken recorder
        db.execute("INSERT INTO parts (run_id, seq, kind, payload) VALUES (?, 0, 'execution', '{\"index\": 0}')",
                   (header().id,))  # fmt: skip
    with pytest.raises(StoreError, match="cannot be read"):
        store.load(header().id)
    assert store.load("r1").stages


OLD_STORE = Path(__file__).resolve().parent.parent / "data" / "store-v0.db"  # written by pipetune before versions


def test_a_store_from_before_schema_versions_is_upgraded_and_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.write_bytes(OLD_STORE.read_bytes())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    readonly = open_store(path, readonly=True)  # a viewer reads it as it is, without upgrading it
    assert [r.status for r in readonly.runs()] == [RunStatus.SUCCEEDED] * 3
    store = open_store(path)
    assert store.schema_version == SCHEMA_VERSION
    runs = store.runs()
    assert len(runs) == 3 and all(store.load(r.id).stages for r in runs)
    [(study_id, _, _)] = store.studies()
    _, spec, events = store.load_study(study_id)
    assert spec["budget"] == 1 and [k for k, _ in events][-1] == "finished"
    store.create(header("20990101-000000-cccc", 9e9))  # and it takes new runs
    assert store.resolve("last") == "20990101-000000-cccc"


def test_a_store_from_a_newer_pipetune_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()  # the last connection: the change is in the file itself, not in a write-ahead log
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"newer pipetune.*file was not changed"):
            open_store(path, readonly=readonly)
    assert path.read_bytes() == before


def test_two_writers_open_a_new_store_at_once(tmp_path: Path) -> None:
    """Each migration runs under the write lock: the second opener finds the store already current."""
    import threading

    path, errors = tmp_path / "s.db", []

    def open_and_write(n: int) -> None:
        try:
            store = open_store(path)
            store.create(header(f"20260101-00000{n}-aaaa", float(n)))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(open_store(path).runs()) == 4


def test_two_writers_append_to_one_study_without_taking_the_same_place(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "s.db"
    open_store(path).create_study("s1", "pipe.py", {})

    def append_events(n: int) -> None:
        store = open_store(path)
        for i in range(10):
            store.append_study("s1", "trial", {"writer": n, "i": i})

    threads = [threading.Thread(target=append_events, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = open_store(path).load_study("s1").events
    assert len(events) == 30
    for n in range(3):  # each writer's events in the order it wrote them
        assert [p["i"] for _, p in events if p["writer"] == n] == list(range(10))
