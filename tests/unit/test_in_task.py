"""Rows counted inside running tasks: the wrapper a worker runs, and the recorder's fold into operator samples."""

from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipetune.capture import ExecutionEnded, ExecutionStarted, Message, OpId, OpSamples, StageBuilt, UdfRows
from pipetune.diagnose import rows_done
from pipetune.model import Dist, Operator, OperatorStats, StageKind
from pipetune.record import in_task, remote
from pipetune.record.channel import Sender
from tests.unit.builders import stage


def double(batch: Any, factor: int = 2) -> Any:
    """Doubles."""
    return batch


async def fetch(batch: Any) -> Any:
    return batch


class Model:
    """A model."""

    def __init__(self, scale: int = 1) -> None:
        self.scale = scale

    def __call__(self, batch: Any) -> Any:
        return batch


class AsyncModel:
    async def __call__(self, batch: Any) -> Any:
        return batch


def test_only_plain_synchronous_functions_are_counted() -> None:
    assert in_task.can_count(double) and in_task.can_count(lambda b: b)
    assert in_task.can_count(functools.partial(double, factor=3))
    assert in_task.can_count(Model)  # Ray's actor pool: its __call__ is counted
    assert not in_task.can_count(AsyncModel)
    assert not in_task.can_count(Model())  # Ray names a callable object after its class
    assert not in_task.can_count(fetch)  # Ray runs a coroutine function its own way
    assert not in_task.can_count(Model().__call__)  # Ray names a bound method Class.method


@pytest.mark.parametrize(
    "batch",
    [pd.DataFrame({"x": range(5)}), pa.table({"x": list(range(5))}), {"x": np.arange(5), "y": np.arange(5)}],
    ids=["pandas", "pyarrow", "numpy"],
)
def test_the_rows_of_a_batch_in_every_format(batch: Any) -> None:
    assert in_task.batch_rows(batch) == 5


class FakeSender(Sender):
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> FakeSender:
    """A fresh worker process's counts, sent to a list instead of the recorder's socket."""
    fake = FakeSender()
    monkeypatch.setattr(in_task, "_counts", in_task._Counts())
    monkeypatch.setattr(in_task, "_row_counts", {})
    monkeypatch.setattr(remote, "connect", lambda path=None: fake)
    return fake


def test_the_wrapper_returns_what_the_function_returns_keeps_its_name_and_sends_at_most_twice_a_sample(
    sender: FakeSender,
) -> None:
    wrapped = in_task.counting(functools.partial(double, factor=3), 4, "double")
    assert wrapped.__name__ == "double"  # Ray names the operator MapBatches(double), as without pipetune
    batch = pd.DataFrame({"x": range(10)})
    assert wrapped(batch) is batch
    for _ in range(4):
        wrapped(batch)  # within SEND_EVERY_S of the first: counted, not sent
    assert [(m.stage, m.pid, m.rows) for m in sender.sent if isinstance(m, UdfRows)] == [(4, os.getpid(), 10)]
    in_task._counts.sent[4] = time.perf_counter() - in_task.SEND_EVERY_S  # as if that long had passed
    wrapped(batch)
    assert [m.rows for m in sender.sent if isinstance(m, UdfRows)] == [10, 60]


def test_a_worker_outside_a_recorded_run_counts_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_task, "_counts", in_task._Counts())
    monkeypatch.delenv(remote.ENV_SOCKET, raising=False)
    monkeypatch.delenv(remote.ENV_WORKERS_SOCKET, raising=False)
    assert in_task.counting(double, 0, "double")([1, 2]) == [1, 2]
    assert in_task._counts.sender is None and in_task._counts.connected


MAP, READ = OpId(0, "MapBatches(double)", 2), OpId(0, "ReadRange", 1)


def _started(index: int = 0) -> ExecutionStarted:
    ops = (Operator(str(OpId(index, "ReadRange", 1)), "ReadRange", (0,)),
           Operator(str(OpId(index, "MapBatches(double)", 2)), "MapBatches(double)", (1, 2)))  # fmt: skip
    return ExecutionStarted(index, 0.0, operators=ops)


def _folding(second: str = "map_batches") -> in_task.InTaskRows:
    """The recorder's fold, told the stages: a read, then a ``map_batches`` call and ``second``, fused."""
    fold = in_task.InTaskRows()
    for index, method in enumerate(("range", "map_batches", second)):
        fold.fold(StageBuilt(stage(index, method, kind=StageKind.READ if index == 0 else StageKind.TRANSFORM)))
    return fold


def test_the_recorder_adds_every_processs_latest_count_to_the_operator_whose_first_stage_it_is() -> None:
    fold = _folding(second="filter")  # a filter fused after it: not counted, not part of the chain
    fold.fold(_started())
    for message in (UdfRows(1.0, 1, 10, 300), UdfRows(1.2, 1, 11, 200), UdfRows(1.1, 1, 10, 250)):  # one late
        fold.add(message)
    folded = fold.fold(OpSamples(2.0, {READ: {"rows_out": 5.0}, MAP: {"rows_in": 800.0}}))
    assert folded.values[MAP] == {"rows_in": 800.0, "udf_rows": 500.0}
    assert folded.values[READ] == {"rows_out": 5.0}  # nothing counted there: nothing added


def test_a_chain_of_batch_functions_has_done_the_rows_its_last_one_returned_from() -> None:
    """A light function over whole blocks fused before a heavy one in small batches: the first one's count
    jumps a block at a time, the last one's moves with every batch; a stage not counted yet holds it at 0."""
    fold = _folding()
    fold.fold(_started())
    fold.add(UdfRows(1.0, 1, 10, 750))  # the first function took a whole block at once
    assert "udf_rows" not in fold.fold(OpSamples(1.5, {MAP: {"rows_in": 3000.0}})).values[MAP]
    fold.add(UdfRows(2.0, 2, 10, 8))
    fold.add(UdfRows(1.5, 1, 11, 750))  # a second actor of the pool: a block of its own
    fold.add(UdfRows(2.0, 2, 11, 4))
    assert fold.fold(OpSamples(2.5, {MAP: {}})).values[MAP] == {"udf_rows": 12.0}
    fold.add(UdfRows(3.0, 2, 10, 1200))  # fused functions that made rows: the fewer, the chain's first
    assert fold.fold(OpSamples(3.5, {MAP: {}})).values[MAP] == {"udf_rows": 754.0}


def test_a_chain_ray_fused_behind_a_read_is_counted_from_its_first_batch_function() -> None:
    """Ray's defaults fuse the read into the model's operator (the embed example's trial of them): the read
    itself runs no counted function, so the chain starts after it; a call not counted at the start ends it."""
    fused = OpId(0, "ReadRange->MapBatches(double)", 1)
    fold = _folding()
    fold.fold(ExecutionStarted(0, 0.0, operators=(Operator(str(fused), "ReadRange->MapBatches(double)", (0, 1, 2)),)))
    fold.add(UdfRows(1.0, 1, 10, 750))
    fold.add(UdfRows(2.0, 2, 10, 12))
    assert fold.fold(OpSamples(2.5, {fused: {"rows_out": 0.0}})).values[fused] == {"rows_out": 0.0, "udf_rows": 12.0}
    row_first = in_task.InTaskRows()
    for index, method in enumerate(("range", "filter", "map_batches")):  # a filter right after the read
        row_first.fold(StageBuilt(stage(index, method, kind=StageKind.READ if index == 0 else StageKind.TRANSFORM)))
    row_first.fold(ExecutionStarted(0, 0.0, operators=(Operator(str(fused), "ReadRange->Filter", (0, 1, 2)),)))
    row_first.add(UdfRows(2.0, 2, 10, 12))  # counted, but after a call that is not: the chain is empty
    assert "udf_rows" not in row_first.fold(OpSamples(2.5, {fused: {}})).values[fused]


def test_a_per_row_function_counts_a_row_a_call_and_hands_its_rows_over_at_most_four_times_a_send(
    sender: FakeSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``map``'s function: one row a call, never timed; its rows reach the process's counts at once, then a
    quarter of a send apart, and go out at most once a send, as a batch function's do."""
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    wrapped = in_task.counting(lambda row: {**row, "y": 1}, 5, "parse", per_row=True)
    assert wrapped.__name__ == "parse" and wrapped({"x": 1}) == {"x": 1, "y": 1}
    for _ in range(9):
        wrapped({"x": 2})  # within a quarter of a send of the first: held in the wrapper
    assert [(m.stage, m.rows, m.calls, m.udf_s) for m in sender.sent if isinstance(m, UdfRows)] == [(5, 1, 0, 0.0)]
    now[0] += in_task.SEND_EVERY_S / 4
    wrapped({"x": 3})  # handed over (10 rows more), not sent: within a send of the last
    assert in_task._counts.rows[5] == 11 and len(sender.sent) == 1
    now[0] += in_task.SEND_EVERY_S
    wrapped({"x": 4})
    assert [m.rows for m in sender.sent if isinstance(m, UdfRows)] == [1, 12]


def test_each_unpickled_copy_of_a_per_row_function_shares_its_processs_count_so_no_task_loses_rows(
    sender: FakeSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray unpickles a task pool's function again for every task: rows a task ends with before a hand-over are
    handed over with the next task's, not lost with its copy."""
    import cloudpickle

    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    shipped = cloudpickle.dumps(in_task.counting(lambda row: row, 7, "parse", per_row=True))
    first, second = cloudpickle.loads(shipped), cloudpickle.loads(shipped)  # two tasks in one worker
    for _ in range(4):
        first({"x": 1})  # the first row handed over at once, three held
    now[0] += in_task.SEND_EVERY_S * 2
    second({"x": 1})  # the next task's first row hands over the three the first task ended with
    assert [m.rows for m in sender.sent if isinstance(m, UdfRows)] == [1, 5]


def test_a_per_row_class_counts_a_row_a_call(sender: FakeSender) -> None:
    model = in_task.counting(Model, 6, "Model", per_row=True)(scale=3)
    assert model({"x": 1}) == {"x": 1} and model.scale == 3
    assert [(m.stage, m.rows) for m in sender.sent if isinstance(m, UdfRows)] == [(6, 1)]


def test_a_chain_that_starts_with_a_per_row_call_is_counted_and_gives_no_calls_for_it() -> None:
    """A read fused with ``map`` then ``map_batches`` (the ETL example's parse, then its batch functions): the
    chain's rows are the fewest either returned from; its calls are the batch function's only."""
    fused = OpId(0, "ReadRange->Map(parse)->MapBatches(double)", 1)
    fold = in_task.InTaskRows()
    for index, method in enumerate(("range", "map", "map_batches")):
        fold.fold(StageBuilt(stage(index, method, kind=StageKind.READ if index == 0 else StageKind.TRANSFORM)))
    fold.fold(ExecutionStarted(0, 0.0, operators=(Operator(str(fused), "ReadRange->Map->MapBatches", (0, 1, 2)),)))
    fold.add(UdfRows(2.0, 1, 10, 40))
    assert "udf_rows" not in fold.fold(OpSamples(2.5, {fused: {}})).values[fused]  # the batch function: none yet
    fold.add(UdfRows(3.0, 2, 10, 32, 0.5, calls=2, rows_sq=512.0, rows_s=8.0, s_sq=0.13))
    assert fold.fold(OpSamples(3.5, {fused: {}})).values[fused] == {"udf_rows": 32.0}
    ray = OperatorStats(str(fused), rows_in=1, task_s=Dist.of([1.0]))
    [stats] = fold.fold(ExecutionEnded(0, 9.0, None, (ray,))).stats
    assert [(c.stage, c.count, c.rows) for c in stats.calls] == [(2, 2, 32.0)]


def test_the_rows_a_read_will_output_stay_only_where_the_chain_fused_behind_it_counts_those_rows() -> None:
    """The chain's count is of the rows into its last function: the rows read where every function before it
    keeps a row per row (``map``); a batch function before it may drop or add rows."""
    fold = in_task.InTaskRows()
    methods = ("range", "map", "map_batches", "map_batches")
    for index, method in enumerate(methods):
        fold.fold(StageBuilt(stage(index, method, kind=StageKind.READ if index == 0 else StageKind.TRANSFORM)))
    per_row, batched = OpId(0, "ReadRange->Map->MapBatches", 1), OpId(1, "ReadRange->Map->MapBatches->MapBatches", 1)
    fold.fold(ExecutionStarted(0, 0.0, operators=(Operator(str(per_row), "ReadRange->Map->MapBatches", (0, 1, 2)),)))
    fold.fold(ExecutionStarted(1, 0.0, operators=(Operator(str(batched), "R->M->MB->MB", (0, 1, 2, 3)),)))
    planned = {"read_rows_planned": 600.0}
    folded = fold.fold(OpSamples(1.0, {per_row: planned, batched: planned})).values
    assert folded[per_row] == planned and folded[batched] == {}
    alone = OpId(2, "Map->MapBatches", 2)  # its chain starts the operator: no read fused in front of it
    fold.fold(ExecutionStarted(2, 0.0, operators=(Operator(str(alone), "Map->MapBatches", (1, 2)),)))
    assert fold.fold(OpSamples(2.0, {alone: planned})).values[alone] == {}


def test_a_later_execution_of_the_same_stage_counts_from_its_own_start() -> None:
    fold = _folding(second="filter")
    fold.fold(_started(0))
    fold.add(UdfRows(1.0, 1, 10, 300))
    fold.fold(_started(1))
    fold.add(UdfRows(2.0, 1, 10, 340))
    folded = fold.fold(OpSamples(2.5, {OpId(1, "MapBatches(double)", 2): {}}))
    assert folded.values[OpId(1, "MapBatches(double)", 2)] == {"udf_rows": 40.0}


def test_rows_done_takes_the_rows_counted_in_running_tasks_at_most_the_rows_received() -> None:
    finished = {"rows_in": 1000.0, "bytes_in": 100.0, "bytes_done": 20.0}
    assert rows_done(finished) == 200.0  # Ray's counters: the finished tasks' share
    assert rows_done({**finished, "udf_rows": 450.0}) == 450.0
    assert rows_done({**finished, "udf_rows": 100.0}) == 200.0  # a count not sent yet since tasks ended
    assert rows_done({**finished, "udf_rows": 5000.0}) == 1000.0


def test_an_inbox_on_a_given_path_listens_there_and_leaves_the_directory(tmp_path: Path) -> None:
    path = str(tmp_path / "events.sock")
    (tmp_path / remote.LEDGER).write_text('{"next": {"stage": 7}, "keys": {}}')  # an earlier run's
    got: list[Message] = []
    inbox = remote.Inbox(got.append, path)
    assert not (tmp_path / remote.LEDGER).exists()  # each run numbers its stages from 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        Sender(conn.fileno()).send(UdfRows(1.0, 1, 10, 5))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    inbox.close()
    assert got == [UdfRows(1.0, 1, 10, 5)]
    assert tmp_path.exists() and not os.path.exists(path)  # the next run of the series listens there


def test_workers_reach_the_recorder_on_a_studys_own_ray_only_for_the_socket_it_gave_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "_reachable", False)
    monkeypatch.setenv(remote.ENV_WORKERS_SOCKET, "/tmp/x/events.sock")
    monkeypatch.setenv(remote.ENV_SOCKET, "/tmp/x/events.sock")
    assert remote.workers_reach_recorder()
    monkeypatch.setenv(remote.ENV_SOCKET, "/tmp/y/events.sock")  # a run listening elsewhere
    assert not remote.workers_reach_recorder()


def test_a_second_run_at_once_on_the_same_ray_listens_in_a_directory_of_its_own(tmp_path: Path) -> None:
    path = str(tmp_path / "events.sock")
    first = remote.Inbox(lambda m: None, path)
    second = remote.Inbox(lambda m: None, path)  # its workers will not reach it: they count nothing
    assert first.path == path and second.path != path and os.path.exists(path)
    second.close()
    assert os.path.exists(path)  # the first run's socket is untouched
    first.close()
    third = remote.Inbox(lambda m: None, path)
    assert third.path == path
    third.close()


def test_a_class_is_counted_by_a_subclass_of_the_same_name_that_pickles_by_value(sender: FakeSender) -> None:
    import cloudpickle

    counted = in_task.counting(Model, 3, "Model")
    assert issubclass(counted, Model) and counted.__name__ == "Model" and counted.__doc__ == Model.__doc__
    model = cloudpickle.loads(cloudpickle.dumps(counted))(scale=2)  # as Ray ships it to the pool's actors
    batch = {"x": np.arange(7)}
    assert model(batch) is batch and model.scale == 2
    assert [(m.stage, m.rows) for m in sender.sent if isinstance(m, UdfRows)] == [(3, 7)]


def test_an_operator_with_no_finished_task_gets_its_running_tasks_figures_when_its_execution_ends() -> None:
    """A probe stopped inside the one task of a stage: Ray reports zeros for it; the recorder puts in what its
    process counted, so the doctor reads the stage's rate and its one task."""
    fold = _folding(second="filter")
    fold.fold(_started())
    fold.add(UdfRows(100.0, 1, 10, 3_000, udf_s=4.0, cpu_s=4.4, busy_s=5.0))
    ray = (OperatorStats(str(READ), busy_s=2.0, rows_in=1, rows_out=40_000, task_s=Dist.of([2.0])),
           OperatorStats(str(MAP), rows_in=40_000, peak_uss_bytes=5e8))  # fmt: skip
    ended = fold.fold(ExecutionEnded(0, 9.0, None, ray))
    read, running = ended.stats
    assert read == ray[0]  # a finished task: Ray's figures stand
    assert running.running and (running.rows_in, running.busy_s, running.cpu_s, running.udf_s) == (3_000, 5.0, 4.4, 4.0)
    assert running.task_s.count == 1 and running.peak_uss_bytes == 5e8  # one process, one task; Ray's memory kept


def test_the_wrapper_keeps_the_sums_a_line_of_call_time_on_rows_is_fitted_from(sender: FakeSender) -> None:
    wrapped = in_task.counting(double, 4, "double")
    wrapped(pd.DataFrame({"x": range(10)}))
    in_task._counts.sent[4] = time.perf_counter() - in_task.SEND_EVERY_S
    wrapped(pd.DataFrame({"x": range(4)}))
    last = [m for m in sender.sent if isinstance(m, UdfRows)][-1]
    assert (last.calls, last.rows, last.rows_sq) == (2, 14, 116.0)
    assert 0 < last.s_sq <= last.udf_s**2 and 0 < last.rows_s <= 10 * last.udf_s


def test_each_stage_of_an_operator_gets_its_calls_since_its_execution_started_summed_over_processes() -> None:
    fold = in_task.InTaskRows()
    fold.fold(_started(0))
    fold.add(UdfRows(1.0, 1, 10, 100, 1.0, calls=10, rows_sq=1000.0, rows_s=10.0, s_sq=0.1))
    fold.fold(_started(1))  # a later execution of the same stages counts from here
    fold.add(UdfRows(2.0, 1, 10, 160, 1.5, calls=14, rows_sq=1900.0, rows_s=15.0, s_sq=0.15))
    fold.add(UdfRows(2.0, 1, 11, 30, 0.2, calls=3, rows_sq=300.0, rows_s=2.0, s_sq=0.02))
    fold.add(UdfRows(2.0, 2, 11, 30, 0.3, calls=3, rows_sq=300.0, rows_s=3.0, s_sq=0.03))  # fused after the first
    ray = OperatorStats(str(OpId(1, "MapBatches(double)", 2)), rows_in=90, task_s=Dist.of([1.0]))
    [stats] = fold.fold(ExecutionEnded(1, 9.0, None, (ray,))).stats
    first, second = stats.calls
    assert (first.stage, first.count, first.rows, first.rows_sq, first.rows_seconds) == (1, 7, 90.0, 1200.0, 7.0)
    assert first.seconds == pytest.approx(0.7) and first.seconds_sq == pytest.approx(0.07)
    assert (second.stage, second.count, second.rows) == (2, 3, 30.0)
    assert not stats.running and stats.rows_in == 90  # Ray's figures otherwise stand


def test_a_chain_stopped_inside_its_tasks_gets_the_figures_of_the_whole_chain() -> None:
    """A light function then a heavy one, in one process: the rows through both, the seconds inside both, and
    one window from the first function's first batch to the heavy one's latest count."""
    fold = _folding()
    fold.fold(_started())
    fold.add(UdfRows(10.0, 1, 10, 750, udf_s=0.1, cpu_s=0.1, busy_s=0.0))  # the whole block at once, at t=10
    fold.add(UdfRows(30.0, 2, 10, 300, udf_s=18.0, cpu_s=19.0, busy_s=19.5))  # its first batch ended at t=10.5
    ray = (OperatorStats(str(MAP), rows_in=3_000),)
    [running] = fold.fold(ExecutionEnded(0, 31.0, None, ray)).stats
    assert running.running and (running.rows_in, running.cpu_s, running.task_s.count) == (300, 19.0, 1)
    assert (running.busy_s, running.udf_s) == (pytest.approx(20.0), pytest.approx(18.1))
    assert in_task.through_chain([[UdfRows(1.0, 1, 10, 5)], []]) == []  # no process has run the heavy one yet
