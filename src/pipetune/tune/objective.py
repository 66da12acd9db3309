"""What a trial is judged by, and when a trial has seen enough.

A pipeline that ends in a write: the run's wall time. A pipeline the script's own loop consumes (a training
loop over ``iter_batches``): the loop's time, from asking for its first batch to its last, since the loop's
throughput is what a training job is for; the script's other work (building a model, evaluating) is not the
pipeline's. Such a trial is a probe: it is stopped once every loop has taken ``PROBE_BATCHES`` batches, and its
loop time is predicted for the rows the baseline's loop took (the start-up wait, plus the probe's time per row
for every row; per batch for a baseline stored before rows were). The baseline runs in full, so the count is
measured, never assumed.

A pipeline that ends in a sink (a write, a materialising call; one execution, no loop) is probed too: the run
is stopped once the rate at which its last operator finishes rows is known within the incumbent's noise (a
least-squares line through its samples past the ramp-up, two standard errors of the slope), while half of the
rows are still to come. Its time is where that line reaches the rows the baseline's last operator took in, plus
the baseline's own time after its last operator ended (the script ending, Ray shutting down). A last operator
that reads is counted by the share of its read tasks' input done, toward all of it (``Sink.read``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipetune.capture import ConsumerSamples, ExecutionStarted, Message, OpSamples, clock
from pipetune.diagnose import Consumption, consumption, rows_done, share_read
from pipetune.model import Operator, Run, StageKind
from pipetune.tune.study import Sink

PROBE_BATCHES = 32  # statistics: the mean of 32 batch times is within about a third of their spread
PROBE_REASON = "probe: every loop took enough batches to time its steady rate"
SINK_PROBE_REASON = "probe: the sink's steady rate was known within the noise"
SINK_PAST_BOX_REASON = "probe: the sink's steady rate, even at the top of its error, ends the run past its time box"
SINK_REASONS = (SINK_PROBE_REASON, SINK_PAST_BOX_REASON)
MIN_LINE_POINTS = 5  # statistics: a line's error needs residual degrees of freedom (n - 2); fewer than 3 is a guess


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


def seconds(
    run: Run, full: Mapping[str, float], full_rows: Mapping[str, float] | None = None, sink: Sink | None = None
) -> float | None:
    """The trial's figure: the slowest loop's time (predicted over the baseline's ``full_rows`` rows, else its
    ``full`` batches, for a probe), else the run's wall time (predicted for the ``sink``'s rows, for a probe)."""
    loops = consumption(run)
    if not loops:
        if run.error in SINK_REASONS:
            return sink_probe_s(run, sink) if sink is not None else None
        return run.wall_s if run.status.ok else None
    rows = full_rows or {}
    return max(loop_s(c, full.get(c.source), rows.get(c.source)) for c in loops)


def is_probe(run: Run) -> bool:
    return run.error == PROBE_REASON or run.error in SINK_REASONS


def sink_of(run: Run) -> Sink | None:
    """The sink of a finished run with one execution and no loop of the script's; None for any other run. A
    last operator that reads is measured by the share of its read tasks' input (Ray counts each as one row)."""
    if consumption(run) or len(run.executions) != 1 or not run.status.ok or run.wall_s is None:
        return None
    execution = run.executions[0]
    last = execution.operators[-1] if execution.operators else None
    stats = run.stats_of(last.uid) if last is not None else None
    if last is None or not last.stages or stats is None or stats.rows_in <= 0 or execution.ended_t is None:
        return None
    tail = max(run.wall_s - execution.ended_t, 0.0)
    if not _reads(run, last):
        return Sink(float(stats.rows_in), tail, last.stages[0])
    planned = any(share_read(s.values) > 0 for s in run.samples_of(last.uid))
    return Sink(1.0, tail, last.stages[0], read=True) if planned else None


def _reads(run: Run, op: Operator) -> bool:
    kinds = {s.index: s.kind for s in run.stages}
    return any(kinds.get(i) is StageKind.READ for i in op.stages)


def entry(operators: Sequence[Operator], sink: Sink) -> Operator | None:
    """The operator whose progress a probe reads: the one that starts with the sink's stage (the last one, or
    the first part of it where a trial split it); where the sink reads, only the last operator, since a read
    that a trial split off runs ahead of the rest."""
    found = next((op for op in operators if op.stages[:1] == (sink.stage,)), None)
    if sink.read and operators and found is not operators[-1]:
        return None
    return found


def progress(values: Mapping[str, float], sink: Sink) -> float:
    """What a probe counts toward ``sink.rows``: rows done, or the share of the read tasks' input done."""
    return share_read(values) if sink.read else rows_done(values)


@dataclass(frozen=True)
class Line:
    """Rows done against time, fitted; ``rel_err``: two standard errors of the slope, as a share of it."""

    slope: float
    intercept: float
    rel_err: float

    def at(self, t: float) -> float:
        return self.intercept + self.slope * t

    def reaches(self, rows: float) -> float:
        return (rows - self.intercept) / self.slope

    def reaches_at_best(self, rows: float) -> float:
        """When the line reaches ``rows`` at the fastest slope its error allows (the slope times 1 + rel_err)."""
        return (rows - self.intercept) / (self.slope * (1 + self.rel_err))


def steady_line(points: Sequence[tuple[float, float]]) -> Line | None:
    """The least-squares line through ``(t, rows done)`` from the first rows done on (the ramp-up left out)."""
    moving = _moving(points)
    n = len(moving)
    if n < MIN_LINE_POINTS:
        return None
    ts, done = [t for t, _ in moving], [d for _, d in moving]
    t_mean = statistics.fmean(ts)
    sxx = sum((t - t_mean) ** 2 for t in ts)
    slope, intercept = statistics.linear_regression(ts, done) if sxx > 0 else (0.0, 0.0)
    if slope <= 0:
        return None
    residual = sum((d - intercept - slope * t) ** 2 for t, d in moving)
    return Line(slope, intercept, 2 * math.sqrt(residual / (n - 2) / sxx) / slope)


def _moving(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    """The points from the first with rows done on: the ramp-up before any row finished is left out."""
    return points[next((i for i, (_, done) in enumerate(points) if done > 0), len(points)) :]


def past_box(points: Sequence[tuple[float, float]], sink: Sink, box_s: float) -> bool:
    """Whether a trial's sink, at its latest steady rate, ends the run past ``box_s`` even at the fastest rate the
    rate's error allows. Only once its rate has stopped climbing (the later half of its points past the ramp-up
    no faster than the whole line, within that line's error): an actor pool still starting replicas, or workers
    still coming up, finishes faster than its first rows say."""
    moving = _moving(points)
    if len(moving) < 2 * MIN_LINE_POINTS:
        return False
    whole, later = steady_line(moving), steady_line(moving[len(moving) // 2 :])
    if whole is None or later is None or later.slope > whole.slope * (1 + whole.rel_err):
        return False
    return later.reaches_at_best(sink.rows) + sink.tail_s > box_s


def sink_points(run: Run, sink: Sink) -> list[tuple[float, float]]:
    """``(t, progress)`` of the run's last execution at its ``entry`` operator, as sampled."""
    found = entry(run.executions[-1].operators, sink) if run.executions else None
    return [(s.t, progress(s.values, sink)) for s in run.samples_of(found.uid)] if found is not None else []


def sink_probe_s(run: Run, sink: Sink) -> float | None:
    """A sink probe's predicted full-run time: when its fitted line reaches the sink's rows, and the tail."""
    line = steady_line(sink_points(run, sink))
    return line.reaches(sink.rows) + sink.tail_s if line is not None else None


def time_boxed(box_s: float | None) -> Callable[[Message], str | None] | None:
    """A stop rule that ends a run once its clock passes ``box_s`` (None: no box)."""
    if box_s is None:
        return None

    def boxed(message: Message) -> str | None:
        t = clock(message)
        if t is not None and t > box_s:
            return f"stopped at its time box ({box_s:.1f} s): slower than the incumbent beyond the noise"
        return None

    return boxed


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


class SinkProbeDone:
    """A stop rule for a pipeline that ends in a sink: ends the run once the rate its last operator finishes
    rows at is known within ``noise_pct`` (``steady_line``'s ``rel_err``) while the line says at least half of
    the sink's rows are still to come; a probe that would save less runs in full, measured rather than
    predicted. With ``box_s`` (the trial's time box, on the run's clock) it also ends as soon as even the fastest
    rate the line's error allows would end the run past that box: a trial already known to lose is not run to
    its box. Progress is read at the ``entry`` operator; a trial with none (it fused the sink's stage behind
    another, or split a reading sink) runs in full. The box itself (``time_boxed``) is asked first."""

    def __init__(self, sink: Sink, noise_pct: float, box_s: float | None = None) -> None:
        self._sink, self._noise, self._box_s = sink, noise_pct, box_s
        self._inner = time_boxed(box_s)
        self._last: str | None = None
        self._points: list[tuple[float, float]] = []

    def __call__(self, message: Message) -> str | None:
        boxed = self._inner(message) if self._inner is not None else None
        if boxed is not None:
            return boxed
        if isinstance(message, ExecutionStarted):
            found = entry(message.operators, self._sink)
            self._last, self._points = (found.uid if found is not None else None), []
        if not isinstance(message, OpSamples) or self._last is None:
            return None
        values = next((v for op, v in message.values.items() if str(op) == self._last), None)
        if values is None:
            return None
        self._points.append((message.t, progress(values, self._sink)))
        line = steady_line(self._points)
        if line is None:
            return None
        if self._box_s is not None and past_box(self._points, self._sink, self._box_s):
            return SINK_PAST_BOX_REASON
        if line.rel_err * 100 > self._noise:
            return None
        return SINK_PROBE_REASON if line.at(self._points[-1][0]) <= self._sink.rows / 2 else None
