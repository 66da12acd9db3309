"""Memory per task, measured: what a stage's task holds at a given batch size, and how much its tasks may hold
together on a node. Pure.

Ray's memory monitor logs every kill with the node's usage, the threshold it exceeded and each worker it
considered, with the memory that worker used (the raylet's "kill details"); the recorder keeps that text as the
OOM event's detail. From it come the bytes a stage's tasks may hold together (the threshold less what everything
else on the node used), how many of its tasks ran at once, and an idle Ray worker's own footprint (the smallest
worker listed). A task's memory is that footprint plus a share proportional to its batch's rows, the share
measured as the stage's peak USS over the rows of the batches it ran. Rows are the one thing a batch size
changes, so that is the first-order model; a trial at the smaller batch measures it again.

Assumed, not measured: that the smallest worker the kill lists is an idle Ray worker (in Ray 2.60 it is one
of Ray Data's own actors). Not measured: actor pools, whose workers Ray names after the actor class rather than
the operator; their kills get the guide's order of fixes.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipetune.diagnose.capacity import rows_per_task
from pipetune.diagnose.facts import Facts
from pipetune.model import EventKind, Operator, Run, Stage

GB = 2**30  # what Ray's "GB" is: the raylet divides bytes by 1024 three times (4826828800 B prints "4.50GB")

_THRESHOLD = re.compile(r"Memory usage (\d+)B exceeded threshold of (\d+)B")
_NUMBER = r"(\d+(?:\.\d+)?)"
_FRACTION = re.compile(rf"was {_NUMBER}GB(?: used)? / {_NUMBER}GB(?: limit)?.*?threshold of {_NUMBER}", re.S)
_WORKER = re.compile(r"task name=(.+?), required resources=[^\n]*?actual memory used=([\d.]+)GB")
_CONSIDERED = "Considered workers: ["


@dataclass(frozen=True)
class Kill:
    """One kill by Ray's memory monitor: the node's usage and the threshold it exceeded, in bytes, and the
    workers it considered as (task name, bytes used)."""

    used: float
    threshold: float
    workers: tuple[tuple[str, float], ...]
    complete: bool = True  # False where the list of workers was cut off: what the others used is not known

    def running(self, op_name: str) -> list[float]:
        """Bytes used by each considered worker that ran a task of the operator named ``op_name``."""
        return [used for name, used in self.workers if name.strip() == op_name]


@functools.lru_cache(maxsize=64)
def parse_kill(detail: str) -> Kill | None:
    """The kill the raylet described, or None where the text has no usage and threshold in either of the
    forms Ray prints (bytes, or GB with the threshold as a fraction of the limit). Cached: the doctor, the
    tuner's limits and the evidence each read the same kills."""
    workers = tuple((name, float(gb) * GB) for name, gb in _WORKER.findall(detail))
    listed = detail.find(_CONSIDERED)
    complete = listed < 0 or "]" in detail[listed + len(_CONSIDERED) :]
    if m := _THRESHOLD.search(detail):
        return Kill(float(m.group(1)), float(m.group(2)), workers, complete)
    if m := _FRACTION.search(detail):
        used, limit, fraction = (float(g) for g in m.groups())
        return Kill(used * GB, fraction * limit * GB, workers, complete)
    return None  # e.g. a kill for a cgroup's limit, which states no node threshold


def kills(run: Run) -> list[Kill]:
    return [k for e in run.events_of(EventKind.OOM_KILL) if (k := parse_kill(e.detail)) is not None]


@dataclass(frozen=True)
class Room:
    """What a kill measured for one operator: the bytes its tasks may hold together on the node and how many of
    its tasks ran there at once."""

    bytes: float
    at_once: int
    idle_worker: float  # the smallest considered worker's memory: a Ray worker's own footprint


def room(run: Run, op_name: str) -> Room | None:
    """The tightest room the run's kills measured for the operator's tasks; None where no kill names it."""
    rooms = [_room_of(k, op_name) for k in kills(run)]
    measured = [r for r in rooms if r is not None]
    return min(measured, key=lambda r: r.bytes / r.at_once) if measured else None


def _room_of(kill: Kill, op_name: str) -> Room | None:
    """None where the kill names no task of the operator, where its list of workers was cut off, or where
    what the others used leaves no room at all (then the figures do not describe this operator's tasks)."""
    ours = kill.running(op_name)
    if not ours or not kill.complete:
        return None
    others = kill.used - sum(ours)  # every other process on the node, Ray's own included
    idle = min((used for _, used in kill.workers), default=0.0)
    return Room(kill.threshold - others, len(ours), idle) if kill.threshold > others else None


def batch_rows(facts: Facts, stage: Stage) -> float | None:
    """Rows per batch the run used: the batch size, or a task's rows where batches are whole blocks."""
    per_task = rows_per_task(facts, stage.index)
    return min(stage.knobs.batch_size or per_task, per_task) if per_task else None


@dataclass(frozen=True)
class Limit:
    """What a run's kills measured for one stage: the bytes its tasks may hold together on a node and how many
    ran at once; its task memory, a footprint ``base`` plus ``per_row`` bytes a row of its batch; the rows a
    task got (a batch of Ray's default takes a whole task's rows) and the rows per batch it ran (where its peak
    was measured)."""

    room: float
    at_once: int
    base: float
    per_row: float
    task_rows: float
    rows: float

    def at(self, rows: float) -> float:
        """A task's memory at batches of ``rows`` rows."""
        return self.base + self.per_row * rows

    @property
    def peak(self) -> float:
        return self.at(self.rows)

    def holds(self, at_once: float, batch: int | None, share: float = 1.0) -> bool:
        """Whether ``at_once`` tasks at batches of ``batch`` rows (None: whole tasks) stay within ``share`` of
        the room."""
        return at_once * self.at(min(batch or self.task_rows, self.task_rows)) <= share * self.room


def oom_limits(facts: Facts) -> dict[int, Limit]:
    """For each operator the run's kills name, its stage whose knobs size its tasks' memory (``sizing_stage``),
    with what the kills measured. One stage per operator: the others fused into it (a read, a write) run inside
    the same tasks at that stage's batches."""
    out = {}
    for _, op in facts.run.operators():
        sizing = sizing_stage(facts.run, op)
        limit = limit_of(facts, sizing) if sizing is not None else None
        if sizing is not None and limit is not None:
            out[sizing.index] = limit
    return out


def sizing_stage(run: Run, op: Operator) -> Stage | None:
    """The stage of an operator whose knobs size its tasks' memory: its map_batches (Ray Data applies that
    batch size to the fused tasks), else its first. The one choice for the doctor's fix and the tuner's check."""
    stages = [run.stage(i) for i in op.stages]
    return next((s for s in stages if s.method == "map_batches"), stages[0] if stages else None)


def limit_of(facts: Facts, stage: Stage) -> Limit | None:
    """What the run's kills measured for the stage's operator, its task memory from the operator's peak USS at
    the rows it ran; None where no kill names the operator or its peak is no more than an idle worker's."""
    op, stats = facts.operator_of(stage.index), facts.stage_stats(stage.index)
    measured = room(facts.run, op.name) if op is not None else None
    rows, per_task = batch_rows(facts, stage), rows_per_task(facts, stage.index)
    if measured is None or stats is None or not rows or not per_task or stats.peak_uss_bytes <= measured.idle_worker:
        return None
    per_row = (stats.peak_uss_bytes - measured.idle_worker) / rows
    return Limit(measured.bytes, measured.at_once, measured.idle_worker, per_row, per_task, rows)


def combined(limits: Sequence[Limit]) -> Limit:
    """What several runs' kills measured for one stage: the tightest room; and where their batches differ, the
    task memory fitted through their peaks (a least-squares line against the rows, its slope and intercept
    kept non-negative): memory that stays as the batch shrinks (a model each task loads) is then base, not
    rows, where one run alone could only assume rows. Assumes ``limits`` is not empty."""
    tight = min(limits, key=lambda lim: lim.room)
    if len({lim.rows for lim in limits}) < 2:
        return tight
    slope, intercept = statistics.linear_regression([lim.rows for lim in limits], [lim.peak for lim in limits])
    per_row = max(slope, 0.0)
    base = max(intercept, 0.0) if slope > 0 else statistics.fmean(lim.peak for lim in limits)  # no slope: all base
    return replace(tight, base=base, per_row=per_row)


def batch_that_fits(facts: Facts, stage: Stage, share: float) -> int | None:
    """The largest power-of-two batch whose tasks, as many at once as the kills measured, keep within ``share``
    of the room the kills measured; None where no kill names the stage's operator, where the stage takes no
    batch size, or where no smaller batch than the run's would fit (the memory is not in the rows)."""
    limit = limit_of(facts, stage) if stage.method == "map_batches" and stage.accepts("batch_size") else None
    if limit is None or limit.per_row <= 0:
        return None
    fits = (share * limit.room / limit.at_once - limit.base) / limit.per_row
    if fits < 1:
        return None
    batch = 2 ** int(math.log2(fits))  # the guide's batch sizes step in powers of two (32 -> 64 -> 128)
    return batch if batch < limit.rows else None
