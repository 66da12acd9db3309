"""What "the pipeline is making progress" means: the one definition the watchdog (live, during a run) and the
stall rules (afterwards, on the stored samples) both use.

Pure. Progress is rows out plus tasks finished, summed over operators; work is in flight while an operator has
tasks running or actors alive. No progress while work is in flight is a stall.
"""

from __future__ import annotations

from collections.abc import Mapping

OperatorValues = Mapping[str, Mapping[str, float]]  # operator uid -> metric -> value, one sample tick


def moved(ops: OperatorValues) -> float:
    """Rows and tasks the operators have finished so far (grows whenever anything moves)."""
    return sum(v.get("rows_out", 0.0) + v.get("tasks_finished", 0.0) for v in ops.values())


def in_flight(ops: OperatorValues) -> list[str]:
    """Operators with work under way, most upstream first (the order the executor reports them)."""
    return [uid for uid, v in ops.items() if v.get("tasks_running", 0) > 0 or v.get("actors_active", 0) > 0]
