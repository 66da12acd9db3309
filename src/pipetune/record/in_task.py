"""Rows through a stage's batch function, counted inside Ray's workers: progress within a running task.

Ray Data counts an operator's work when its tasks finish, so between task ends a sink's progress stands still
(the ETL example runs its whole map as one 19 s task; the packed row's 8 map tasks end in a few steps), and a
probe's line through it is too coarse to fit early. So the function a ``map_batches`` (or ``map``) stage is
given is wrapped (:func:`counting`): in each worker process it counts the rows of every batch it returned from, and
sends the running count to the recorder's socket (``remote.Inbox``) at most every ``SEND_EVERY_S``, as a
:class:`~pipetune.capture.UdfRows` message. The recorder (:class:`InTaskRows`) adds the counts of every
process to the operator samples under ``udf_rows``, for the operator whose chain of batch functions the
stage belongs to (the rows through all of them), and, when a stopped run's execution ends, gives an
operator with no finished task its running tasks' figures (:func:`running_stats`), which the model reads
as it reads Ray's.

Only where the workers can import pipetune and reach the recorder (``remote.workers_reach_recorder``: a
local Ray the driver started, or a tuning study's own): elsewhere the function is left as it is. Only plain
functions and callable classes of ``map_batches`` and ``map`` (``model.COUNTED_METHODS``). A ``map`` function
runs once a row, so its calls are counted, never timed (``_RowCount``). A trivial function is the worst case:
2M rows of ``range(...).map(f)`` on 2 cores ran 3% slower counted (median of 10 interleaved pairs, ranges
overlapping: ``benchmarks/row_count_overhead.py``); the wrapper adds 0.2-0.3 us a row, against Ray's own ~5 us
of work a row there, and any real function makes that a smaller share.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from pipetune.capture import ExecutionEnded, ExecutionStarted, Message, OpId, OpSamples, StageBuilt, UdfRows
from pipetune.metrics import SAMPLE_INTERVAL_S, declared
from pipetune.model import Calls, Dist, OperatorStats, Stage, StageKind
from pipetune.record import remote
from pipetune.record.channel import Sender

SEND_EVERY_S = SAMPLE_INTERVAL_S / 2  # fresher than the samples the count is added to
HAND_OVER_S = SEND_EVERY_S / 4  # chosen: a per-row count reaches the process's figures several times a send
UDF_ROWS, READ_ROWS_PLANNED = declared("udf_rows"), declared("read_rows_planned")
M = TypeVar("M", bound=Message)
T = TypeVar("T")


# -- a worker's side -------------------------------------------------------------------------------------


def can_count(fn: Any) -> bool:
    """Whether ``fn`` is a plain synchronous function (a lambda, a def, a ``functools.partial`` of one) or a
    class whose ``__call__`` is one (Ray's actor pool); Ray runs coroutines and async generators its own way."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.isclass(inner):
        inner = getattr(inner, "__call__", None)  # noqa: B004 - the class's method, not the class's callability
    if not inspect.isfunction(inner):
        return False
    return not (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner))


def counting(fn: Any, stage: int, name: str, per_row: bool = False) -> Any:
    """``fn`` under the same ``name`` (Ray names the operator after it), counting its batches' rows (``per_row``:
    one row a call, ``map``'s): a function for a function, a subclass whose ``__call__`` counts for a class.
    Pickled by value with the plan; the counting itself lives here, so the workers import pipetune."""
    if inspect.isclass(fn):
        return _counting_class(fn, stage, per_row)
    counted = _row_counted(fn, row_count(stage)) if per_row else _batch_counted(fn, stage)
    counted.__name__ = counted.__qualname__ = name
    counted.__doc__ = fn.__doc__
    return counted


def _batch_counted(fn: Callable[..., Any], stage: int) -> Callable[..., Any]:
    def counted(batch: Any, *args: Any, **kwargs: Any) -> Any:
        return _counted_call(stage, fn, batch, *args, **kwargs)

    return counted


def _row_counted(fn: Callable[..., object], rows: _RowCount) -> Callable[..., object]:
    """``fn`` counted a row a call; for a class's ``__call__`` too, its instance passed through as it comes."""

    def counted(*args: object, **kwargs: object) -> object:
        return rows.counted(fn(*args, **kwargs))

    return counted


def _counting_class(cls: type[Any], stage: int, per_row: bool) -> type[Any]:
    call = cls.__call__
    counted = _row_counted(call, row_count(stage)) if per_row else _batch_method(call, stage)
    namespace = {"__call__": counted, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__}  # fmt: skip
    return type(cls.__name__, (cls,), namespace)


def _batch_method(call: Callable[..., Any], stage: int) -> Callable[..., Any]:
    def __call__(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        return _counted_call(stage, functools.partial(call, self), batch, *args, **kwargs)

    return __call__


def _counted_call(stage: int, fn: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
    began = time.perf_counter()
    out = fn(batch, *args, **kwargs)
    _tally(stage, batch, began)
    return out


class _RowCount:
    """A per-row function's rows, handed to the process's counts (``_add_rows``) ``HAND_OVER_S`` apart at
    most. The clock is read once a row; the call
    itself is never timed: a ``map`` stage gives no call figures (``model.Calls``).

    One per stage and process (``row_count``): Ray unpickles a task pool's function again for every task, and
    each copy takes this process's one, so the rows a task ends with before a hand-over are handed over with
    the next task's. A process that runs no further row of the stage holds them until Ray's own count of its
    finished task takes over (``diagnose.rows_done``: the more of the two). Not locked: rows counted by two
    threads at once (a plain function Ray runs on threads) can lose an increment, never more."""

    __slots__ = ("due", "rows", "stage")

    def __init__(self, stage: int) -> None:
        self.stage, self.rows, self.due = stage, 0, 0.0

    def __reduce__(self) -> tuple[Callable[[int], _RowCount], tuple[int]]:
        return row_count, (self.stage,)

    def counted(self, out: T) -> T:
        self.rows += 1
        now = time.perf_counter()
        if now >= self.due:
            _add_rows(self.stage, self.rows, now)
            self.rows, self.due = 0, now + HAND_OVER_S
        return out


_row_counts: dict[int, _RowCount] = {}


def row_count(stage: int) -> _RowCount:
    """This process's count of the per-row function of ``stage`` (made at the first ask)."""
    return _row_counts.setdefault(stage, _RowCount(stage))


def batch_rows(batch: Any) -> int:
    """Rows in a batch of any of Ray Data's formats (pandas, pyarrow, a dict of arrays)."""
    if isinstance(batch, dict):
        first = next(iter(batch.values()), None)
        return len(first) if first is not None else 0
    try:
        return len(batch)
    except TypeError:
        return 0


class _Counts:
    """This process's running figures per stage, and the socket they go out on (opened at the first send)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, int] = {}
        self.udf_s: dict[int, float] = {}
        self.squares: dict[int, tuple[int, float, float, float]] = {}  # calls, sums of rows², rows·s, s²
        self.began: dict[int, tuple[float, float]] = {}  # at the first batch's end: (wall clock, process CPU)
        self.sent: dict[int, float] = {}
        self.sender: Sender | None = None
        self.connected = False


_counts = _Counts()


def _tally(stage: int, batch: Any, began: float) -> None:
    """A batch function's call: its rows and seconds."""
    now = time.perf_counter()
    _add_rows(stage, batch_rows(batch), now, now - began)


def _add_rows(stage: int, n: int, now: float, took: float | None = None) -> None:
    """``n`` rows of the stage done by ``now``; with ``took``, one call's seconds, and the sums its calls' line
    is fitted from (a per-row function's calls are not timed: ``_RowCount``)."""
    c = _counts
    with c.lock:
        if took is not None:
            c.udf_s[stage] = c.udf_s.get(stage, 0.0) + took
            calls, rows_sq, rows_s, s_sq = c.squares.get(stage, (0, 0.0, 0.0, 0.0))
            c.squares[stage] = (calls + 1, rows_sq + n * n, rows_s + n * took, s_sq + took * took)
        message = _counted(stage, n, now)
    if message is not None and c.sender is not None:
        c.sender.send(message)


def _counted(stage: int, n: int, now: float) -> UdfRows | None:
    """Add ``n`` rows to the stage's count (under ``_counts.lock``); the figures to send, at most every
    ``SEND_EVERY_S``."""
    c = _counts
    rows = c.rows[stage] = c.rows.get(stage, 0) + n
    if stage not in c.began:  # the process's CPU clock is read once, not on every batch
        c.began[stage] = (now, time.process_time())
    first_wall, first_cpu = c.began[stage]
    if now - c.sent.get(stage, float("-inf")) < SEND_EVERY_S:
        return None
    c.sent[stage] = now
    if not c.connected:
        path = os.environ.get(remote.ENV_SOCKET) or os.environ.get(remote.ENV_WORKERS_SOCKET)
        c.sender, c.connected = remote.connect(path), True
    cpu_s = time.process_time() - first_cpu  # this process's, Ray's batching in it included
    squares = c.squares.get(stage, (0, 0.0, 0.0, 0.0))
    return UdfRows(now, stage, os.getpid(), rows, c.udf_s.get(stage, 0.0), cpu_s, now - first_wall, *squares)


# -- the recorder's side ---------------------------------------------------------------------------------


class InTaskRows:
    """Folds the workers' counts into what the recorder stores.

    Operator samples: an operator's ``udf_rows`` is the rows its chain of batch functions has done since its
    execution started (a stage an earlier execution ran too), summed over processes: in each, the fewest rows
    any of the counted stages it starts with returned from (``_chain``, ``through_chain``). Rows pass
    through those stages in order, so the fewest is the last one's, and a stage with no count yet holds it
    at 0. Where Ray fused a light stage before a heavy one (a preprocessing function over whole blocks, then
    a model in batches of 4), the first stage's count jumps a block at a time while the last one's moves
    with every batch (the embed example's four 750-row tasks). A chain whose functions drop rows reads low
    until its tasks end, when Ray's own count takes over (``rows_done``: the more of the two).

    An execution's end: an operator with no finished task (a probe stopped it inside its tasks) gets the
    figures of its running tasks, through its chain, instead of Ray's zeros (``running_stats``). A read Ray
    fused in front of the chain (Ray's defaults fuse a read into the operator after it) is passed over: the
    chain's rows are the rows read so far. Operators whose first stage after any read is not counted are left
    as Ray reported them."""

    def __init__(self) -> None:
        self._latest: dict[tuple[int, int], UdfRows] = {}  # (stage, pid) -> its latest figures
        self._at_start: dict[tuple[int, int], UdfRows] = {}  # the same, when the stage's execution started
        self._stages: dict[OpId, tuple[int, ...]] = {}  # operator -> its stages, in chain order
        self._counted: set[int] = set()  # the stages whose functions are counted (``Stage.counted_in_task``)
        self._per_row: set[int] = set()  # those counted a row at a time, never timed (``Stage.counted_per_row``)
        self._reads: set[int] = set()  # the stages that read (a chain may start after one Ray fused in front)

    def add(self, message: UdfRows) -> None:
        key = (message.stage, message.pid)
        if key not in self._latest or message.rows >= self._latest[key].rows:  # sends may overtake each other
            self._latest[key] = message

    def fold(self, message: M) -> M:
        """The message as it should be stored."""
        if isinstance(message, StageBuilt):
            self._built(message.stage)
        if isinstance(message, ExecutionStarted):
            self._started(message)
        if isinstance(message, OpSamples):
            values = {op: self._with_rows(op, v) for op, v in message.values.items()}
            return msgspec.structs.replace(message, values=values)
        if isinstance(message, ExecutionEnded):
            stats = tuple(self._with_calls(self._with_running(s)) for s in message.stats)
            return msgspec.structs.replace(message, stats=stats)
        return message

    def _built(self, stage: Stage) -> None:
        if stage.counted_in_task:
            self._counted.add(stage.index)
        if stage.counted_per_row:
            self._per_row.add(stage.index)
        if stage.kind is StageKind.READ:
            self._reads.add(stage.index)

    def _started(self, message: ExecutionStarted) -> None:
        ops = {OpId.parse(op.uid): op.stages for op in message.operators if op.stages}
        self._stages.update(ops)
        stages = {stage for chain in ops.values() for stage in chain}
        self._at_start.update({key: m for key, m in self._latest.items() if key[0] in stages})

    def _since_start(self, stage: int) -> list[UdfRows]:
        """Each process's figures for ``stage`` since its execution started."""
        out = [_minus(m, self._at_start.get(key)) for key, m in self._latest.items() if key[0] == stage]
        return [m for m in out if m.rows > 0]

    def _chain(self, op: OpId) -> tuple[int, ...]:
        """The counted stages the operator's chain starts with, after a read Ray fused in front of them (none:
        its first stage after any read is another call)."""
        stages = self._stages.get(op, ())
        start = next((i for i, stage in enumerate(stages) if stage not in self._reads), len(stages))
        end = next((i for i, stage in enumerate(stages[start:], start) if stage not in self._counted), len(stages))
        return stages[start:end]

    def _through(self, op: OpId) -> list[UdfRows]:
        """Each process's figures through the operator's chain since its execution started (``through_chain``)."""
        return through_chain([self._since_start(stage) for stage in self._chain(op)])

    def _with_rows(self, op: OpId, values: dict[str, float]) -> dict[str, float]:
        """The operator's counted rows added; the rows its read will output left out where its chain's count
        is not a count of those rows (``_counts_the_rows_read``)."""
        rows = sum(m.rows for m in self._through(op))
        out = {**values, UDF_ROWS: float(rows)} if rows > 0 else values
        if READ_ROWS_PLANNED in out and not self._counts_the_rows_read(op):
            out = {k: v for k, v in out.items() if k != READ_ROWS_PLANNED}
        return out

    def _counts_the_rows_read(self, op: OpId) -> bool:
        """Whether the chain's count is the rows its read fused in front of it outputs: the count is of the
        rows into the chain's last function, so every one before it must keep a row per row (``map``); a
        batch function before it may drop or add rows (the sink's whole would then be out of reach)."""
        chain = self._chain(op)
        return bool(chain) and self._stages.get(op, ())[:1] != chain[:1] and set(chain[:-1]) <= self._per_row

    def _with_running(self, stats: OperatorStats) -> OperatorStats:
        if stats.task_s.count > 0:
            return stats
        counted = self._through(OpId.parse(stats.uid))
        return running_stats(stats, counted) if counted else stats

    def _with_calls(self, stats: OperatorStats) -> OperatorStats:
        """The operator's stages' calls since its execution started, each process's summed (``model.Calls``):
        its batch functions' only, as a per-row one's calls are not timed."""
        stages = [s for s in self._stages.get(OpId.parse(stats.uid), ()) if s not in self._per_row]
        counted = [(stage, self._since_start(stage)) for stage in stages]
        calls = tuple(calls_of(stage, ms) for stage, ms in counted if ms)
        return dataclasses.replace(stats, calls=calls) if calls else stats


def _minus(m: UdfRows, old: UdfRows | None) -> UdfRows:
    """A process's figures since ``old`` (nothing: since it started)."""
    if old is None:
        return m
    return UdfRows(m.t, m.stage, m.pid, m.rows - old.rows, m.udf_s - old.udf_s, m.cpu_s - old.cpu_s,
                   m.busy_s - old.busy_s, m.calls - old.calls, m.rows_sq - old.rows_sq, m.rows_s - old.rows_s,
                   m.s_sq - old.s_sq)  # fmt: skip


def through_chain(stages: list[list[UdfRows]]) -> list[UdfRows]:
    """Each process's figures for a chain of stages it runs one after another (one list per stage, in chain
    order): the rows through the whole chain (the fewest any stage returned from: the last one's), the seconds
    inside all of their functions, and one window from the earliest first batch's end to the latest count
    (its CPU: the widest any stage measured). Empty where any stage has no count from a process."""
    by_pid = [{m.pid: m for m in stage} for stage in stages]
    pids = set.intersection(*(set(ms) for ms in by_pid)) if by_pid else set()
    return [_joined([ms[pid] for ms in by_pid]) for pid in sorted(pids)]


def _joined(ms: list[UdfRows]) -> UdfRows:
    last, began = max(m.t for m in ms), min(m.t - m.busy_s for m in ms)
    return UdfRows(last, ms[-1].stage, ms[0].pid, min(m.rows for m in ms), sum(m.udf_s for m in ms),
                   max(m.cpu_s for m in ms), last - began)  # fmt: skip


def calls_of(stage: int, counted: list[UdfRows]) -> Calls:
    """The calls of ``stage`` that the processes counted, summed."""
    return Calls(stage, sum(m.calls for m in counted), float(sum(m.rows for m in counted)),
                 sum(m.udf_s for m in counted), sum(m.rows_sq for m in counted),
                 sum(m.rows_s for m in counted), sum(m.s_sq for m in counted))  # fmt: skip


def running_stats(ray: OperatorStats, counted: list[UdfRows]) -> OperatorStats:
    """An operator's figures from its running tasks, one per process that counted (a task pool's worker runs
    one task at a time; an actor, one of the pool's): the rows its chain of functions returned from
    (``through_chain``), the seconds inside them, and each process's wall and CPU seconds from its first
    batch's end to its last count (one window, measured in the worker). What Ray reported stays: memory,
    backpressure, nodes."""
    busy = [m.busy_s for m in counted]
    return dataclasses.replace(ray, wall_s=max(busy), busy_s=sum(busy), cpu_s=sum(m.cpu_s for m in counted),
                               udf_s=sum(m.udf_s for m in counted), rows_in=sum(m.rows for m in counted),
                               rows_out=0, task_s=Dist.of(busy), running=True)  # fmt: skip
