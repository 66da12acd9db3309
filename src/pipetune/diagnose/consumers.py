"""What the script's loops did with the data: one :class:`Consumption` per consumer (per split of a
``streaming_split``), from its recorded samples. Pure: a Run in, plain numbers out.

The loop's time is split the way Ray Data's Iteration view splits it: *blocked* (waiting inside ``next()``
for a batch the pipeline had not produced yet) and *user* (the loop's own code between batches). A loop that
is blocked a large share of its time is data-bound: the pipeline feeding it limits; one that is almost never
blocked is consumer-bound: no pipeline setting can make it faster.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipetune.diagnose.thresholds import MIN_BATCHES
from pipetune.model import Execution, Run, Sample


@dataclass(frozen=True)
class Consumption:
    source: str  # consumer:<stage> or consumer:<stage>/<split>
    stage: int
    split: int | None
    batches: float
    rows: float
    blocked_s: float  # after the first batch of each iteration: the steady state
    user_s: float
    first_wait_s: float  # waits for each iteration's first batch: the pipeline starting up
    shaping_s: float
    batching_wait_s: float
    from_ray: bool  # the figures are Ray Data's own iterator statistics
    started_t: float
    ended_t: float
    blocked_early: float | None  # blocked share in the first half of the loop's samples
    blocked_late: float | None  # ... and in the second half
    late_s_per_row: float | None = None  # the loop's pace over the second half of its rows: past its ramp-up

    @property
    def loop_s(self) -> float:
        """The loop's time after its first batch (start-up is the pipeline's fixed cost, not a rate)."""
        return self.blocked_s + self.user_s

    @property
    def blocked_share(self) -> float:
        """The share of the loop's time spent waiting for data."""
        return self.blocked_s / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def demand_rows_per_s(self) -> float:
        """How fast the loop would take rows if a batch were always ready: rows over its own time."""
        return self.rows / self.user_s if self.user_s > 0 else math.inf

    @property
    def label(self) -> str:
        return f"stage {self.stage}" + (f" split {self.split}" if self.split is not None else "")


def parse_source(source: str) -> tuple[int, int | None]:
    """``consumer:3`` -> (3, None); ``consumer:3/1`` -> (3, 1)."""
    stage, _, split = source.removeprefix("consumer:").partition("/")
    return int(stage), int(split) if split else None


def consumption(run: Run) -> list[Consumption]:
    """Every consumer of the run, in the order first seen; a consumer of too few batches to time a steady state
    is left out."""
    out = []
    for source in run.consumers():
        samples = run.samples_of(source)
        last = samples[-1].values
        if last.get("batches", 0.0) < MIN_BATCHES.value:
            continue
        stage, split = parse_source(source)
        early, late = _halves(samples)
        out.append(
            Consumption(
                source, stage, split,
                batches=last.get("batches", 0.0), rows=last.get("rows", 0.0),
                blocked_s=_steady(last), user_s=last.get("user_s", 0.0), first_wait_s=last.get("first_wait_s", 0.0),
                shaping_s=last.get("shaping_s", 0.0), batching_wait_s=last.get("batching_wait_s", 0.0),
                from_ray=bool(last.get("ray_stats")), started_t=samples[0].t, ended_t=samples[-1].t,
                blocked_early=early, blocked_late=late, late_s_per_row=_late_pace(samples),
            )
        )  # fmt: skip
    return out


def feeding(run: Run, c: Consumption) -> Execution | None:
    """The execution that fed the loop: started by it (while it ran) and built from stages before it. None
    where that execution was not recorded (a split's coordinator on a cluster the recorder could not reach)."""
    for e in run.executions:
        upstream = all(s < c.stage for op in e.operators for s in op.stages)
        if upstream and e.operators and c.started_t <= e.started_t <= c.ended_t:
            return e
    return None


def blocked_shares(samples: list[Sample]) -> list[tuple[float, float]]:
    """(t, share of the loop's time blocked since the previous sample): the Iteration view's blocked time,
    as a share so loops of different lengths read alike."""
    pairs = itertools.pairwise(samples)
    return [(after.t, share) for before, after in pairs if (share := _share(before, after)) is not None]


def _halves(samples: list[Sample]) -> tuple[float | None, float | None]:
    if len(samples) < 3:
        return None, None
    middle = len(samples) // 2
    return _share(samples[0], samples[middle]), _share(samples[middle], samples[-1])


def _late_pace(samples: list[Sample]) -> float | None:
    """Seconds of loop per row from the sample where the loop had taken half its rows to the last: its steady
    pace, the pipeline's and the loop's ramp-up (workers starting, first steps) left out. None where no sample
    falls between."""
    last = samples[-1].values
    mid = next((s.values for s in samples if s.values.get("rows", 0.0) >= last.get("rows", 0.0) / 2), None)
    if mid is None or mid is last:
        return None
    rows = last.get("rows", 0.0) - mid.get("rows", 0.0)
    loop = _steady(last) + last.get("user_s", 0.0) - _steady(mid) - mid.get("user_s", 0.0)
    return loop / rows if rows > 0 and loop > 0 else None


def _steady(values: Mapping[str, float]) -> float:
    return max(values.get("blocked_s", 0.0) - values.get("first_wait_s", 0.0), 0.0)


def _share(before: Sample, after: Sample) -> float | None:
    return blocked_between(before.values, after.values)


def blocked_between(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """The share of a loop's time between two of its samples that it waited for data (start-up left out):
    the one definition the doctor, the charts and the live view share."""
    blocked = _steady(after) - _steady(before)
    user = after.get("user_s", 0.0) - before.get("user_s", 0.0)
    return blocked / (blocked + user) if blocked + user > 0 else None
