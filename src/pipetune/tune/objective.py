"""What a trial is judged by, and when a trial has seen enough.

A pipeline that ends in a write: the run's wall time. A pipeline the script's own loop consumes (a training
loop over ``iter_batches``): the loop's time, from asking for its first batch to its last, since the loop's
throughput is what a training job is for; the script's other work (building a model, evaluating) is not the
pipeline's. Such a trial is a probe: it is stopped once every loop has taken ``PROBE_BATCHES`` batches, and its
loop time is predicted for the rows the baseline's loop took (the start-up wait, plus the probe's time per row
for every row; per batch for a baseline stored before rows were). The baseline runs in full, so the count is
measured, never assumed.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipetune.capture import ConsumerSamples, Message, clock
from pipetune.diagnose import Consumption, consumption
from pipetune.model import Run

PROBE_BATCHES = 32  # statistics: the mean of 32 batch times is within about a third of their spread
PROBE_REASON = "probe: every loop took enough batches to time its steady rate"


def consumed(run: Run) -> dict[str, float]:
    """Batches each loop of the run took (none: the run feeds no loop of the script's)."""
    return {c.source: c.batches for c in consumption(run)}


def consumed_rows(run: Run) -> dict[str, float]:
    """Rows each loop of the run took."""
    return {c.source: c.rows for c in consumption(run)}


def loop_s(c: Consumption, batches: float | None = None, rows: float | None = None) -> float:
    """The loop's time, or what it would be over ``rows`` rows (else ``batches`` batches): the time it took, and
    the rows it did not take at its steady pace (its second half's, past the ramp-up; else its mean)."""
    if rows is not None and c.rows > 0:
        pace = c.late_s_per_row if c.late_s_per_row is not None else c.loop_s / c.rows
        return c.first_wait_s + c.loop_s + pace * max(rows - c.rows, 0.0)
    if batches is None or batches <= c.batches:
        return c.first_wait_s + c.loop_s
    return c.first_wait_s + c.loop_s / c.batches * batches


def seconds(run: Run, full: Mapping[str, float], full_rows: Mapping[str, float] | None = None) -> float | None:
    """The trial's figure: the slowest loop's time (predicted over the baseline's ``full_rows`` rows, else its
    ``full`` batches, for a probe), else the run's wall time."""
    loops = consumption(run)
    if not loops:
        return run.wall_s if run.status.ok else None
    rows = full_rows or {}
    return max(loop_s(c, full.get(c.source), rows.get(c.source)) for c in loops)


def is_probe(run: Run) -> bool:
    return run.error == PROBE_REASON


def boxed_reason(box_s: float) -> str:
    return f"stopped at its time box ({box_s:.1f} s of loop): slower than the incumbent beyond the noise"


class ProbeDone:
    """A stop rule: ends the run once every loop the baseline saw has taken its probe's batches (or all it
    will take, for a loop shorter than a probe); with ``box_s``, also once its loops have run that long (the
    incumbent's whole loop time and its noise: a probe still going then is slower, whatever it would predict).
    The box counts from the loop's start, not the script's, so a slow start-up of Ray is never held against it."""

    def __init__(self, full: Mapping[str, float], box_s: float | None = None) -> None:
        self._wanted = {source: min(batches, PROBE_BATCHES) for source, batches in full.items()}
        self._full = dict(full)
        self._seen: dict[str, float] = {}
        self._box_s = box_s
        self._loop_started: float | None = None

    def __call__(self, message: Message) -> str | None:
        t = clock(message)
        if isinstance(message, ConsumerSamples) and self._loop_started is None:
            self._loop_started = message.t
        started, box = self._loop_started, self._box_s
        if box is not None and started is not None and t is not None and t - started > box:
            return boxed_reason(box)
        if not isinstance(message, ConsumerSamples):
            return None
        for source, values in message.values.items():
            self._seen[source] = values.get("batches", 0.0)
        enough = all(self._seen.get(s, 0.0) >= n for s, n in self._wanted.items())
        short = any(self._seen.get(s, 0.0) < self._full[s] for s in self._wanted)
        return PROBE_REASON if self._wanted and enough and short else None
