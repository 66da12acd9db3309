import sqlite3
from pathlib import Path

import pytest

from pipetune.capture import EventSeen, OpId, OpSamples, Outcome, StageBuilt
from pipetune.errors import RunNotFound, StoreError
from pipetune.model import Event, EventKind, RunStatus
from pipetune.store import RunHeader, open_store
from pipetune.store.sqlite import SCHEMA_VERSION
from tests.unit.builders import stage, two_stage_run


def header(run_id: str = "20260101-000000-aaaa", started: float = 1.0) -> RunHeader:
    return RunHeader(run_id, "pipe.py", ("--rows", "5"), "/tmp", "abc", ("1.num_cpus=0.5",), started)


def test_parts_are_kept_as_they_arrive_and_fold_into_a_run(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.create(header())
    store.append(header().id, StageBuilt(stage(0, "range")))
    store.append(header().id, OpSamples(1.0, {OpId(0, "Op", 1): {"rows_out": 5.0}}))
    # A second connection (another process, in real use) sees the running run with what came so far.
    live = open_store(tmp_path / "s.db").load(header().id)
    assert live.status is RunStatus.RUNNING
    assert [s.method for s in live.stages] == ["range"]
    assert live.op_samples[0].values == {"rows_out": 5.0}
    store.finish(header().id, Outcome(RunStatus.SUCCEEDED, 0, wall_s=2.0), rows=5, bottleneck="0:range")
    run = store.load(header().id)
    assert (run.status, run.wall_s, run.args, run.overrides) == (
        RunStatus.SUCCEEDED,
        2.0,
        ("--rows", "5"),
        ("1.num_cpus=0.5",),
    )
    assert store.runs()[0].bottleneck == "0:range"


def test_finished_runs_are_immutable_in_the_database_itself(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.create(header())
    store.finish(header().id, Outcome(RunStatus.FAILED), 0, "")
    with pytest.raises(StoreError, match="immutable"):
        store.append(header().id, EventSeen(Event(0.0, EventKind.WARNING, "late")))
    with pytest.raises(StoreError, match="immutable"):
        store.finish(header().id, Outcome(RunStatus.SUCCEEDED), 0, "")
    assert store.load(header().id).status is RunStatus.FAILED


def test_resolve_by_prefix_and_last(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    store.create(header("20260101-000000-aaaa", 1.0))
    store.create(header("20260101-000000-bbbb", 2.0))
    assert store.resolve("20260101-000000-a") == "20260101-000000-aaaa"
    assert store.resolve("last") == "20260101-000000-bbbb"
    with pytest.raises(RunNotFound, match="several runs"):
        store.resolve("20260101")
    with pytest.raises(RunNotFound, match="pipetune runs"):
        store.resolve("nope")


def test_a_whole_run_imports_and_exports_unchanged(tmp_path: Path) -> None:
    run = two_stage_run()
    store = open_store(tmp_path / "s.db")
    store.add(run)
    assert store.load(run.id) == run
    with pytest.raises(StoreError, match="already holds"):
        store.add(run)


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


def test_runs_started_in_the_same_instant_list_in_the_order_stored(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    for suffix in ("bbbb", "aaaa", "cccc"):
        store.create(header(f"20260101-000000-{suffix}", 5.0))
    assert [r.id[-4:] for r in store.runs()] == ["cccc", "aaaa", "bbbb"]
    assert store.resolve("last").endswith("cccc")
