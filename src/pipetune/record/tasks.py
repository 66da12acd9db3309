"""Per-task spans, as the driver sees them: submitted, first output (which node), finished.

Fed by ``_ray_compat``'s hooks on Ray Data's operator metrics, on the executor's thread; flushed in batches
with the once-a-second samples and at the end of each execution, so a run that dies keeps what was sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pipetune.capture import OpId, SpanRow


class TaskLog:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self._uids: dict[int, OpId] = {}  # id(physical op) -> operator
        self._open: dict[tuple[OpId, int], tuple[float, str]] = {}  # (operator, task) -> (submitted_t, node)
        self._done: list[SpanRow] = []
        self._lock = threading.Lock()

    def register(self, execution: int, ops: dict[int, str]) -> None:
        with self._lock:
            self._uids.update({obj: OpId.of(execution, op_id) for obj, op_id in ops.items()})

    def __call__(self, event: str, task: int, op: Any, details: dict[str, Any]) -> None:
        uid = self._uids.get(id(op))
        if uid is None:
            return
        now = time.perf_counter() - self.t0
        with self._lock:
            if event == "submitted":
                self._open[(uid, task)] = (now, "")
            elif event == "output" and (uid, task) in self._open:
                submitted, node = self._open[(uid, task)]
                self._open[(uid, task)] = (submitted, node or details.get("node", ""))
            elif event == "finished":
                submitted, node = self._open.pop((uid, task), (now, ""))
                worker = details.get("worker_s")
                self._done.append(SpanRow(uid, task, submitted, now, worker, node[:12], bool(details.get("failed"))))

    def drain(self) -> list[SpanRow]:
        """The spans finished since the last drain."""
        with self._lock:
            done, self._done = self._done, []
        return done
