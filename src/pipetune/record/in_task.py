"""Rows through a stage's batch function, counted inside Ray's workers: progress within a running task.

Ray Data counts an operator's work when its tasks finish, so between task ends a sink's progress stands still
(the ETL example runs its whole map as one 19 s task; the packed row's 8 map tasks end in a few steps), and a
probe's line through it is too coarse to fit early. So the function a ``map_batches`` stage is given is
wrapped (:func:`counting`): in each worker process it counts the rows of every batch it returned from, and
sends the running count to the recorder's socket (``remote.Inbox``) at most every ``SEND_EVERY_S``, as a
:class:`~pipetune.capture.UdfRows` message. The recorder (:class:`InTaskRows`) adds the counts of every
process to the operator samples under ``udf_rows``, for the operator whose first stage it is. (A probe's
figure still waits for a finished task of that operator: ``tune.objective.SinkProbeDone``.)

Only where the workers can import pipetune and reach the recorder (``remote.workers_reach_recorder``: a
local Ray the driver started, or a tuning study's own): elsewhere the function is left as it is. Only plain
functions and callable classes of ``map_batches``: per-row functions (``map``, ``filter``) would pay the
counting on every row.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from typing import Any, TypeVar

import msgspec

from pipetune.capture import ExecutionStarted, Message, OpId, OpSamples, UdfRows
from pipetune.metrics import SAMPLE_INTERVAL_S, declared
from pipetune.record import remote
from pipetune.record.channel import Sender

SEND_EVERY_S = SAMPLE_INTERVAL_S / 2  # fresher than the samples the count is added to
UDF_ROWS = declared("udf_rows")
M = TypeVar("M", bound=Message)


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


def counting(fn: Any, stage: int, name: str) -> Any:
    """``fn`` under the same ``name`` (Ray names the operator after it), counting its batches' rows: a
    function for a function, a subclass whose ``__call__`` counts for a class. Pickled by value with the
    plan; the counting itself lives here, so the workers import pipetune."""
    if inspect.isclass(fn):
        return _counting_class(fn, stage)

    def counted(batch: Any, *args: Any, **kwargs: Any) -> Any:
        out = fn(batch, *args, **kwargs)
        _tally(stage, batch)
        return out

    counted.__name__ = counted.__qualname__ = name
    counted.__doc__ = fn.__doc__
    return counted


def _counting_class(cls: type[Any], stage: int) -> type[Any]:
    call = cls.__call__

    def __call__(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        out = call(self, batch, *args, **kwargs)
        _tally(stage, batch)
        return out

    namespace = {"__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__}  # fmt: skip
    return type(cls.__name__, (cls,), namespace)


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
    """This process's running count per stage, and the socket it goes out on (opened at the first send)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, int] = {}
        self.sent: dict[int, float] = {}
        self.sender: Sender | None = None
        self.connected = False
        self.t0 = 0.0


_counts = _Counts()


def _tally(stage: int, batch: Any) -> None:
    now, c = time.perf_counter(), _counts
    with c.lock:
        rows = c.rows[stage] = c.rows.get(stage, 0) + batch_rows(batch)
        if now - c.sent.get(stage, float("-inf")) < SEND_EVERY_S:
            return
        c.sent[stage] = now
        if not c.connected:
            path = os.environ.get(remote.ENV_SOCKET) or os.environ.get(remote.ENV_WORKERS_SOCKET)
            c.sender, c.t0, c.connected = remote.connect(path), remote.run_t0(), True
    if c.sender is not None:
        c.sender.send(UdfRows(now - c.t0, stage, os.getpid(), rows))


# -- the recorder's side ---------------------------------------------------------------------------------


class InTaskRows:
    """Folds the workers' counts into the operator samples, where the recorder stores them.

    An operator's ``udf_rows`` is the sum over processes of their latest count for the operator's first stage,
    less what they had counted when its execution started (a stage an earlier execution ran too). Operators
    whose first stage is not counted get nothing added."""

    def __init__(self) -> None:
        self._latest: dict[tuple[int, int], int] = {}  # (stage, pid) -> rows
        self._first: dict[OpId, int] = {}  # operator -> its first stage
        self._offset: dict[int, int] = {}  # stage -> rows counted before its current execution

    def add(self, message: UdfRows) -> None:
        key = (message.stage, message.pid)
        self._latest[key] = max(self._latest.get(key, 0), message.rows)  # sends may overtake each other

    def fold(self, message: M) -> M:
        """The message as it should be stored: operator samples get their ``udf_rows``."""
        if isinstance(message, ExecutionStarted):
            for op in message.operators:
                if op.stages:
                    self._first[OpId.parse(op.uid)] = op.stages[0]
                    self._offset[op.stages[0]] = self._total(op.stages[0])
        if not isinstance(message, OpSamples):
            return message
        values = {op: self._with_rows(op, v) for op, v in message.values.items()}
        return msgspec.structs.replace(message, values=values)

    def _with_rows(self, op: OpId, values: dict[str, float]) -> dict[str, float]:
        stage = self._first.get(op)
        rows = self._total(stage) - self._offset.get(stage, 0) if stage is not None else 0
        return {**values, UDF_ROWS: float(rows)} if rows > 0 else values

    def _total(self, stage: int) -> int:
        return sum(rows for (s, _), rows in self._latest.items() if s == stage)
