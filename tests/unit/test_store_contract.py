"""The Store contract, checked once for every store: each test runs on SQLite (a file) and in memory.

A new store joins ``STORES`` and must pass all of it. SQLite's own concerns (files, schema versions, several
processes) are in test_store.py.
"""

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipetune.capture import EventSeen, OpId, OpSamples, Outcome, StageBuilt
from pipetune.errors import RunNotFound, StoreError
from pipetune.model import Event, EventKind, RunStatus
from pipetune.store import MemoryStore, RunHeader, SQLiteStore, Store, open_store
from tests.unit.builders import stage, two_stage_run

STORES: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp: open_store(tmp / "s.db"),
    "memory": lambda tmp: MemoryStore(),
}
IMMUTABLE = "run is finished and immutable"


def header(run_id: str = "20260101-000000-aaaa", started: float = 1.0) -> RunHeader:
    return RunHeader(run_id, "pipe.py", ("--rows", "5"), "/tmp", "abc", ("1.num_cpus=0.5",), started)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = STORES[request.param](tmp_path)
    yield opened
    opened.close()


@pytest.mark.parametrize("cls", [SQLiteStore, MemoryStore])
def test_every_store_has_every_method_of_the_contract(cls: type) -> None:
    methods = [name for name in vars(Store) if not name.startswith("_") and callable(getattr(Store, name))]
    assert {"create", "append", "finish", "abandon", "load", "create_study", "load_study", "close"} <= set(methods)
    for name in methods:
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Store, name)), name


def test_the_store_computes_no_presentation() -> None:
    """Labels such as the history's bottleneck are passed in: store/ imports neither diagnose/ nor report/."""
    import ast

    import pipetune.store

    for source in Path(pipetune.store.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith(("pipetune.diagnose", "pipetune.report"))], source.name


OP = OpId(0, "Op", 1)
EVENT = EventSeen(Event(0.0, EventKind.WARNING, "a warning"))


# -- runs ------------------------------------------------------------------------------------------------


def test_parts_are_kept_in_order_and_fold_into_a_run(store: Store) -> None:
    store.create(header())
    store.append(header().id, StageBuilt(stage(0, "range")))
    store.append(header().id, StageBuilt(stage(1, "map_batches")))
    store.append(header().id, OpSamples(1.0, {OP: {"rows_out": 5.0}}))
    live = store.load(header().id)  # a running run shows what has come so far
    assert live.status is RunStatus.RUNNING
    assert [s.method for s in live.stages] == ["range", "map_batches"]
    assert live.op_samples[0].values == {"rows_out": 5.0}
    store.finish(header().id, Outcome(RunStatus.SUCCEEDED, 0, wall_s=2.0), rows=5, bottleneck="0:range")
    run = store.load(header().id)
    assert (run.status, run.wall_s, run.exit_code, run.args, run.overrides) == (
        RunStatus.SUCCEEDED,
        2.0,
        0,
        ("--rows", "5"),
        ("1.num_cpus=0.5",),
    )
    [row] = store.runs()
    assert (row.id, row.status, row.wall_s, row.rows, row.bottleneck) == (
        header().id,
        RunStatus.SUCCEEDED,
        2.0,
        5,
        "0:range",  # the caller's label, stored as given
    )


def test_finished_runs_are_immutable(store: Store) -> None:
    store.create(header())
    store.finish(header().id, Outcome(RunStatus.FAILED, error="boom"), 0, "")
    with pytest.raises(StoreError, match=IMMUTABLE):
        store.append(header().id, EVENT)
    with pytest.raises(StoreError, match=IMMUTABLE):
        store.finish(header().id, Outcome(RunStatus.SUCCEEDED), 0, "")
    run = store.load(header().id)
    assert (run.status, run.error, len(run.events)) == (RunStatus.FAILED, "boom", 0)


def test_refusals_are_one_line_and_change_nothing(store: Store) -> None:
    store.create(header())
    store.append(header().id, StageBuilt(stage(0, "range")))
    before = store.load(header().id)
    refusals = [
        lambda: store.create(header()),  # the id is taken
        lambda: store.append("20990101-000000-none", EVENT),
        lambda: store.finish("20990101-000000-none", Outcome(RunStatus.FAILED), 0, ""),
        lambda: store.append_study("s-none", "trial", {}),
        lambda: store.load("20990101"),
    ]
    for refuse in refusals:
        with pytest.raises((StoreError, RunNotFound)) as err:
            refuse()
        assert "\n" not in str(err.value)
    assert store.load(header().id) == before and len(store.runs()) == 1


def test_what_a_caller_keeps_or_gets_back_is_its_own_copy(store: Store) -> None:
    store.create(header())
    values = {OP: {"rows_out": 5.0}}
    store.append(header().id, OpSamples(1.0, values))
    values[OP]["rows_out"] = 99.0
    assert store.load(header().id).op_samples[0].values == {"rows_out": 5.0}


def test_resolve_by_full_id_unique_prefix_and_last(store: Store) -> None:
    for run_id, started in (("r1", 1.0), ("r10", 3.0), ("r11", 2.0), ("q2", 0.5)):
        store.create(header(run_id, started))
    assert store.resolve("r1") == "r1"  # a full id, though it also starts two others
    assert store.resolve("r10") == "r10"
    assert store.resolve("q") == "q2"
    assert store.resolve("last") == store.resolve("latest") == "r10"  # the newest by start, not the last stored
    assert store.load("q").id == "q2"
    with pytest.raises(RunNotFound, match="several runs"):
        store.resolve("r")
    with pytest.raises(RunNotFound, match=r"no run 'R1'.*pipetune runs"):
        store.resolve("R1")  # ids are matched exactly: case counts, and _ or % are plain characters
    with pytest.raises(RunNotFound, match="no run 'r_'"):
        store.resolve("r_")


def test_last_in_an_empty_store_names_nothing(store: Store) -> None:
    with pytest.raises(RunNotFound, match="no run 'last'"):
        store.resolve("last")
    with pytest.raises(RunNotFound, match=r"no study 'last'.*pipetune studies"):
        store.resolve_study("last")


def test_a_whole_run_imports_and_exports_unchanged(store: Store) -> None:
    run = two_stage_run()
    store.add(run)
    assert store.load(run.id) == run
    with pytest.raises(StoreError, match="already holds"):
        store.add(run)
    assert store.load(run.id) == run


def test_abandon_closes_only_running_runs(store: Store) -> None:
    store.create(header("a", 1.0))
    store.create(header("b", 2.0))
    store.finish("b", Outcome(RunStatus.SUCCEEDED, wall_s=1.0), 3, "0:range")
    for _ in range(2):  # safe to repeat
        store.abandon("a", "the tuner stopped")
        store.abandon("b", "the tuner stopped")
    store.abandon("nope", "not stored: nothing to do")
    a, b = store.load("a"), store.load("b")
    assert (a.status, a.exit_code, a.error) == (RunStatus.KILLED, 137, "the tuner stopped")
    assert (b.status, b.wall_s, b.error) == (RunStatus.SUCCEEDED, 1.0, "")
    assert [(r.id, r.status, r.bottleneck) for r in store.runs()] == [
        ("b", RunStatus.SUCCEEDED, "0:range"),
        ("a", RunStatus.KILLED, ""),
    ]
    with pytest.raises(StoreError, match=IMMUTABLE):
        store.append("a", EVENT)


def test_runs_started_in_the_same_instant_list_in_the_order_stored(store: Store) -> None:
    for suffix in ("bbbb", "aaaa", "cccc"):
        store.create(header(f"20260101-000000-{suffix}", 5.0))
    store.create(header("20250101-000000-dddd", 4.0))
    assert [r.id[-4:] for r in store.runs()] == ["cccc", "aaaa", "bbbb", "dddd"]
    assert [r.id[-4:] for r in store.runs(limit=2)] == ["cccc", "aaaa"]
    assert store.resolve("last").endswith("cccc")


# -- studies ---------------------------------------------------------------------------------------------


def test_a_study_keeps_its_spec_and_its_events_in_order(store: Store) -> None:
    spec = {"script": "pipe.py", "budget": 2, "start": {"1": {"num_cpus": 1}}}
    store.create_study("s20260101-000000-aaaa", "pipe.py", spec)
    events = [("trial-started", {"run_id": "r1"}), ("trial", {"run_id": "r1", "wall_s": 2.5}), ("finished", {})]
    for kind, payload in events:
        store.append_study("s20260101-000000-aaaa", kind, payload)
    loaded = store.load_study("s2026")
    assert tuple(loaded) == ("s20260101-000000-aaaa", spec, events)
    assert (loaded.id, loaded.spec, loaded.events) == tuple(loaded)
    [row] = store.studies()
    assert (row.id, row.script) == ("s20260101-000000-aaaa", "pipe.py") and row.created_at > 0


def test_study_spec_and_events_never_change(store: Store) -> None:
    store.create_study("s1", "pipe.py", {"budget": 1})
    store.append_study("s1", "trial", {"run_id": "r1", "wall_s": 2.0})
    loaded = store.load_study("s1")
    loaded.spec["budget"] = 9  # what a caller got back is its own copy
    loaded.events[0][1]["wall_s"] = 0.1
    loaded.events.append(("finished", {}))
    with pytest.raises(StoreError, match="nothing was written"):
        store.create_study("s1", "other.py", {"budget": 5})
    assert tuple(store.load_study("s1")) == ("s1", {"budget": 1}, [("trial", {"run_id": "r1", "wall_s": 2.0})])
    assert [(r.id, r.script) for r in store.studies()] == [("s1", "pipe.py")]


def test_events_of_an_unknown_study_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="no study s-none"):
        store.append_study("s-none", "trial", {})
    assert store.studies() == []


def test_resolve_a_study_by_prefix_and_last(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for study_id, created in (("s1-aaaa", 1.0), ("s2-bbbb", 3.0), ("s2-cccc", 3.0), ("s3-dddd", 2.0)):
        monkeypatch.setattr("time.time", lambda created=created: created)
        store.create_study(study_id, "pipe.py", {})
    assert store.resolve_study("s1") == "s1-aaaa"
    assert store.resolve_study("last") == "s2-cccc"  # newest; of the same instant, the one stored last
    assert [r.id for r in store.studies()] == ["s2-cccc", "s2-bbbb", "s3-dddd", "s1-aaaa"]
    assert [r.id for r in store.studies(limit=1)] == ["s2-cccc"]
    assert store.load_study("s3").id == "s3-dddd"
    with pytest.raises(RunNotFound, match="several studies"):
        store.resolve_study("s2")
    with pytest.raises(RunNotFound, match=r"no study 'x'.*pipetune studies"):
        store.load_study("x")
