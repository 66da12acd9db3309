"""Notices a run whose rows stopped moving, and captures where its workers are stuck.

The state machine is pure (fed the per-operator samples the recorder receives anyway); capturing stacks runs
on its own thread so the recorder keeps storing what arrives.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from pipetune.diagnose import in_flight, moved

Op = TypeVar("Op", bound=Hashable)  # however the caller names operators


class Watchdog:
    """Fires once per stall: no rows or finished tasks for ``stall_after`` seconds while tasks run."""

    def __init__(self, stall_after: float) -> None:
        self.stall_after = stall_after
        self._progress: float | None = None
        self._since = 0.0
        self._fired = False

    def observe(self, t: float, ops: Mapping[Op, Mapping[str, float]]) -> Op | None:
        """The stuck operator (a key of ``ops``) when a stall begins, else None."""
        progress, running = moved(ops), in_flight(ops)
        if progress != self._progress or not running:
            self._progress, self._since, self._fired = progress, t, False
            return None
        if self._fired or t - self._since < self.stall_after:
            return None
        self._fired = True
        return running[0]  # the most upstream operator with work in flight: the others wait on it
