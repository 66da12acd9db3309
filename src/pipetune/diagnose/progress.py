"""What "the pipeline is making progress" means: the one definition the watchdog (live, during a run) and the
stall rules (afterwards, on the stored samples) both use.

Pure. Progress is rows out plus tasks finished, summed over operators; work is in flight while an operator has
tasks running or actors alive. No progress while work is in flight is a stall.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from pipetune.metrics import declared

Op = TypeVar("Op", bound=Hashable)  # however the caller names operators (a uid, an OpId)
_ROWS_OUT, _TASKS_FINISHED = declared("rows_out"), declared("tasks_finished")
_TASKS_RUNNING, _ACTORS_ACTIVE = declared("tasks_running"), declared("actors_active")
_ROWS_IN, _BYTES_IN, _BYTES_DONE = declared("rows_in"), declared("bytes_in"), declared("bytes_done")
_BYTES_PLANNED, _ROWS_PLANNED = declared("bytes_planned"), declared("rows_planned")
_READ_ROWS_PLANNED = declared("read_rows_planned")
_UDF_ROWS, _QUEUED = declared("udf_rows"), declared("inqueue_blocks")


def moved(ops: Mapping[Op, Mapping[str, float]]) -> float:
    """Rows and tasks the operators have finished so far (grows whenever anything moves)."""
    return sum(v.get(_ROWS_OUT, 0.0) + v.get(_TASKS_FINISHED, 0.0) for v in ops.values())


def in_flight(ops: Mapping[Op, Mapping[str, float]]) -> list[Op]:
    """Operators with work under way, most upstream first (the order the executor reports them)."""
    return [uid for uid, v in ops.items() if v.get(_TASKS_RUNNING, 0) > 0 or v.get(_ACTORS_ACTIVE, 0) > 0]


def rows_done(values: Mapping[str, float]) -> float:
    """Rows an operator's finished tasks took in: its rows received, in the share of its input bytes that
    finished tasks processed (Ray counts input rows on arrival and input bytes on a task's end); or, where more,
    the rows its chain of batch functions returned from in running tasks too (``udf_rows``, counted in the
    workers), at most the rows received. Queued rows are not done; a write's own output (one row per file)
    says nothing here."""
    rows, received = values.get(_ROWS_IN, 0.0), values.get(_BYTES_IN, 0.0)
    finished = rows * min(values.get(_BYTES_DONE, 0.0) / received, 1.0) if received > 0 else 0.0
    return max(finished, min(values.get(_UDF_ROWS, 0.0), rows))


def has_task_figures(values: Mapping[str, float]) -> bool:
    """Whether the run will say what the operator's tasks did: Ray's figures of its finished tasks, or, where
    none has finished, the recorder's of its running ones, counted inside them (``record.in_task``)."""
    return values.get(_TASKS_FINISHED, 0.0) > 0 or values.get(_UDF_ROWS, 0.0) > 0


def counted_rows(values: Mapping[str, float]) -> float:
    """The rows the operator's chain of counted functions has taken in so far, running tasks included
    (``udf_rows``); 0 where nothing is counted."""
    return values.get(_UDF_ROWS, 0.0)


def counted_inside(values: Mapping[str, float]) -> bool:
    """Whether the operator's rows are counted inside its running tasks (``udf_rows``: a batch function the
    recorder wraps), not only as its tasks end."""
    return values.get(_UDF_ROWS, 0.0) > 0


def queued(values: Mapping[str, float]) -> float:
    """Blocks waiting at the operator's input (0: it keeps up with what it is fed)."""
    return values.get(_QUEUED, 0.0)


def inputs_held(values: Mapping[str, float]) -> float:
    """Inputs the operator holds at one sample: tasks finished and running, and blocks waiting at its input."""
    return values.get(_TASKS_FINISHED, 0.0) + values.get(_TASKS_RUNNING, 0.0) + queued(values)


def share_read(values: Mapping[str, float]) -> float:
    """For an operator that reads: the share of its read tasks' input bytes that finished tasks processed (Ray
    counts a read task's input as one row, so rows say nothing there). 0 for any other operator."""
    planned = values.get(_BYTES_PLANNED, 0.0)
    return min(values.get(_BYTES_DONE, 0.0) / planned, 1.0) if planned > 0 else 0.0


def rows_read(values: Mapping[str, float]) -> float:
    """For an operator that reads: the rows out of its last stage so far, from its finished tasks (``rows_out``)
    or, where more, counted inside its running ones (``udf_rows``: its chain of batch functions after the read).
    Its rows received say nothing here (one a read task)."""
    return max(values.get(_ROWS_OUT, 0.0), values.get(_UDF_ROWS, 0.0))


def read_rows_planned(values: Mapping[str, float]) -> float:
    """For an operator that reads: the rows its read tasks will output in all, from the read's own metadata
    (Ray's, where it has it); 0 where unknown."""
    return values.get(_READ_ROWS_PLANNED, 0.0)


def reads(values: Mapping[str, float]) -> bool:
    """Whether the operator's input is read tasks (Ray counted their input bytes when the execution started)."""
    return values.get(_BYTES_PLANNED, 0.0) > 0


def rows_planned(values: Mapping[str, float]) -> float:
    """The rows Ray expects the operator to output in all: its own estimate from the tasks finished so far (the
    figure its progress bars show); 0 where it has none yet."""
    return values.get(_ROWS_PLANNED, 0.0)
