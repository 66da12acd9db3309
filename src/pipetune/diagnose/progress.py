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


def moved(ops: Mapping[Op, Mapping[str, float]]) -> float:
    """Rows and tasks the operators have finished so far (grows whenever anything moves)."""
    return sum(v.get(_ROWS_OUT, 0.0) + v.get(_TASKS_FINISHED, 0.0) for v in ops.values())


def in_flight(ops: Mapping[Op, Mapping[str, float]]) -> list[Op]:
    """Operators with work under way, most upstream first (the order the executor reports them)."""
    return [uid for uid, v in ops.items() if v.get(_TASKS_RUNNING, 0) > 0 or v.get(_ACTORS_ACTIVE, 0) > 0]
