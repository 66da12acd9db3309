"""What a trial is judged by, and when a trial has seen enough.

A pipeline that ends in a write: the run's wall time. A pipeline the script's own loop consumes (a training
loop over ``iter_batches``): the loop's time, from asking for its first batch to its last, since the loop's
throughput is what a training job is for; the script's other work (building a model, evaluating) is not the
pipeline's. Such a trial is a probe: it is stopped once every loop has taken ``PROBE_BATCHES`` batches, and its
loop time is predicted for the rows the baseline's loop took (the start-up wait, plus the probe's time per row
for every row; per batch for a baseline stored before rows were). The baseline runs in full, so the count is
measured, never assumed.

A pipeline that ends in a sink (a write, a materialising call; one execution, no loop) is probed too: the run
is stopped once the rate at which its sink's work gets done is known within the incumbent's noise (a
least-squares line through its samples past the ramp-up, two standard errors of the slope), while half of it
is still to come. Its time is where that line reaches the whole, plus the baseline's own time after its last
operator ended (the script ending, Ray shutting down). The work is counted as a share of the whole at the last
operator (``share_done``): the rows the baseline's last operator took in, where the trial's operator starts at
the same stage; where the last operator reads, the rows out of it against the rows the baseline read
(``read_wholes``) where it is counted inside its tasks, else the share of the read tasks' input done; else its rows done
against Ray's own estimate of the rows its upstream operator will output (``rows_planned``). While an
upstream operator is set to end well before the sink (a read that ran ahead), the probe goes on, and the rate is
fitted after it ends (``Progress``): the resources it held then go to the sink.

The baseline of a pipeline whose first execution ends in a write is a probe as well, by the same rule with
Ray's estimate for the whole (a wrong estimate shows as a jump in the share, which widens the line's error):
its time then comes from the line, and no run of the study need be a full run of the pipeline (``--confirm``
runs the winner once in full).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from pipetune.capture import ConsumerSamples, ExecutionStarted, Message, OpSamples, StageBuilt, clock
from pipetune.diagnose import (
    Consumption,
    consumption,
    counted_inside,
    counted_rows,
    has_task_figures,
    queued,
    read_rows_planned,
    reads,
    rows_done,
    rows_planned,
    rows_read,
    share_read,
)
from pipetune.model import Operator, Run, StageKind, at_each_time
from pipetune.tune.study import Sink

PROBE_BATCHES = 32  # statistics: the mean of 32 batch times is within about a third of their spread
PROBE_REASON = "probe: every loop took enough batches to time its steady rate"
SINK_PROBE_REASON = "probe: the sink's steady rate was known within the noise"
SINK_PAST_BOX_REASON = "probe: the sink's steady rate, even at the top of its error, ends the run past its time box"
SINK_REASONS = (SINK_PROBE_REASON, SINK_PAST_BOX_REASON)
# chosen: a probe stops only while at least half the sink's work is still to come. Past that, running to the end
# costs at most as long again as the probe has run, and a measured figure replaces a predicted one (the probe
# benchmark's predictions were off by -11 to +8%, wider than the runs' noise: benchmarks/results/probes.md)
PROBE_LEFT_SHARE = 0.5
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
    """The sink of a run with one execution and no loop of the script's: for a finished run, the rows its last
    operator took in (the whole of its read tasks' input, as a share, where that operator reads) and the time
    the run went on after that execution ended; for a probe, the whole as a share, with no tail measured. None
    for any other run."""
    if consumption(run) or len(run.executions) != 1 or run.wall_s is None:
        return None
    last = run.executions[0].operators[-1] if run.executions[0].operators else None
    if last is None or not last.stages:
        return None
    if is_probe(run):
        return Sink(1.0, 0.0, last.stages[0], read=True, read_rows=read_wholes(run))
    sink = _finished_sink(run, last) if run.status.ok else None
    return replace(sink, read_rows=read_wholes(run)) if sink is not None else None


def _finished_sink(run: Run, last: Operator) -> Sink | None:
    execution, stats = run.executions[0], run.stats_of(last.uid)
    if stats is None or stats.rows_in <= 0 or execution.ended_t is None or run.wall_s is None:
        return None
    tail = max(run.wall_s - execution.ended_t, 0.0)
    if not _reads(run, last):
        return Sink(float(stats.rows_in), tail, last.stages[0])
    planned = any(reads(s.values) for s in run.samples_of(last.uid))
    return Sink(1.0, tail, last.stages[0], read=True) if planned else None


def read_wholes(run: Run) -> tuple[tuple[int, float], ...]:
    """For each operator of the run's execution that reads and read all its input (the share of its read tasks'
    input done reached 1 in its samples), its last stage and the rows out of it then (``Sink.whole_read``).
    Only where every stage after its read is counted (a ``map_batches`` or ``map`` call,
    ``Stage.counted_in_task``): a trial's operator that reads and holds that last stage then counts its rows
    inside its tasks at least that far (``record.in_task``'s chain), never short of a filter whose output the
    whole would be.
    An operator whose last stage goes on in the next one is left out: Ray runs ``read_parquet`` as ListFiles,
    then ReadFiles, and the first one's rows out are the files it listed (24 in the packed row), not rows."""
    batched = {s.index for s in run.stages if s.counted_in_task}
    ops = run.executions[0].operators
    wholes = []
    for op, after in zip(ops, (*ops[1:], None), strict=True):
        if not op.stages or (after is not None and op.stages[-1:] == after.stages[:1]):
            continue
        ended = [s.values for s in run.samples_of(op.uid) if reads(s.values) and share_read(s.values) >= 1.0]
        if ended and set(op.stages[1:]) <= batched:
            wholes.append((op.stages[-1], max(rows_read(v) for v in ended)))
    return tuple(wholes)


def _reads(run: Run, op: Operator) -> bool:
    kinds = {s.index: s.kind for s in run.stages}
    return any(kinds.get(i) is StageKind.READ for i in op.stages)


def measured_op(
    ops: Sequence[Operator], sink: Sink | None, values: Mapping[str, Mapping[str, float]]
) -> Operator | None:
    """The operator whose progress is the sink's (``share_done``): ``measured_at``'s."""
    i = measured_at(ops, sink, values)
    return ops[i] if i is not None else None


def measured_at(ops: Sequence[Operator], sink: Sink | None, values: Mapping[str, Mapping[str, float]]) -> int | None:
    """Which operator's progress is the sink's: the one that starts with the sink's stage, else the last; or
    the operator feeding it (``_feeds``)."""
    if sink is not None and not sink.read:
        i = next((i for i, op in enumerate(ops) if op.stages[:1] == (sink.stage,)), None)
    else:
        i = len(ops) - 1 if ops else None
    return i - 1 if i is not None and i > 0 and _feeds(values.get(ops[i - 1].uid), values.get(ops[i].uid)) else i


def _feeds(feeding: Mapping[str, float] | None, sink: Mapping[str, float] | None) -> bool:
    """Whether the sink's progress is read at the operator feeding it: the sink's own work is counted only as
    its tasks end (a write: no batch function counted inside it), it has nothing waiting at its input (it keeps
    up, so it ends as its input ends), and the operator feeding it is counted inside its running tasks
    (``record.in_task``). A sink fed a few large blocks moves in steps no line fits: the embed example writes
    four 750-row blocks, 16 s apart, while its model's count moves with every batch of 4."""
    if feeding is None or sink is None or counted_inside(sink) or not counted_inside(feeding):
        return False
    return queued(sink) == 0


def share_done(ops: Sequence[Operator], values: Mapping[str, Mapping[str, float]], sink: Sink | None) -> float | None:
    """How much of the sink's whole the operators' counters (one sample, by uid) say is done, 0 to 1, at the
    operator ``measured_at`` names: its rows done against the rows the baseline measured at the sink's stage;
    else its share of its own whole (``own_share``). None where neither can be read."""
    i = measured_at(ops, sink, values)
    if i is None:
        return None
    if sink is not None and not sink.read:
        return rows_done(values[ops[i].uid]) / sink.rows if ops[i].uid in values else None
    return own_share(ops, i, values, sink)


def upstream_shares(
    ops: Sequence[Operator], values: Mapping[str, Mapping[str, float]], sink: Sink | None
) -> dict[str, float]:
    """Each operator before the last, by uid, with its share of its own whole (``own_share``) where it can be read."""
    shares = {op.uid: own_share(ops, i, values, sink) for i, op in enumerate(ops[:-1])}
    return {uid: share for uid, share in shares.items() if share is not None}


def own_share(
    ops: Sequence[Operator], i: int, values: Mapping[str, Mapping[str, float]], sink: Sink | None
) -> float | None:
    """Operator ``i``'s share of its own whole done. Where it reads and its chain of functions is counted inside
    its running tasks: the rows out of it against the rows the baseline measured there (``Sink.whole_read``),
    else the rows into its chain against the rows its read tasks will output (``_read_share``; the read's
    metadata, Ray's: the http rows' baseline runs the read fused with its per-row fetch, so it never sees the
    read end). Else the share of its read tasks' input done (a read task's bytes count only as it ends: a read
    fused with a model into a few long tasks moves in a few steps). Else its rows done against Ray's estimate
    of the rows the operator before it will output. None where neither can be read."""
    mine = values.get(ops[i].uid)
    if mine is None:
        return None
    if reads(mine):
        return _read_share(ops[i], mine, sink)
    planned = rows_planned(values.get(ops[i - 1].uid, {})) if i > 0 else 0.0
    return min(rows_done(mine) / planned, 1.0) if planned > 0 else None


def _read_share(op: Operator, values: Mapping[str, float], sink: Sink | None) -> float:
    """A reading operator's share done (``own_share``). Its rows out against the whole the baseline measured
    there; else the rows into its counted chain's last function (``counted_rows``) against the rows its read
    will output (never its rows out: a stage after the chain may make more rows than it read); else the share
    of its read tasks' input done."""
    if not counted_inside(values):
        return share_read(values)
    measured = sink.whole_read(op.stages) if sink is not None else 0.0
    if measured > 0:
        return min(rows_read(values) / measured, 1.0)
    planned = read_rows_planned(values)
    return min(counted_rows(values) / planned, 1.0) if planned > 0 else share_read(values)


class Progress:
    """A probe's samples: the share of the sink's whole done, and of each upstream operator's own.

    The sink's rate is steady only while the operators running beside it stay the same: when an upstream
    operator ends (a read that ran ahead), the resources it held go to the others and the sink speeds up
    (measured: a map behind a 1-CPU read ran 1.5x faster once the read's tasks were done). So the sink's line is
    fitted on the points since the last upstream operator ended (``steady``), and a probe is not ended while an
    upstream operator is set to end before the sink by more than the noise (``phase_ahead``)."""

    FINISHED = 1.0 - 1e-9

    def __init__(self) -> None:
        self.sink: list[tuple[float, float]] = []
        self.upstream: dict[str, list[tuple[float, float]]] = {}

    def add(self, t: float, sink: float, upstream: Mapping[str, float]) -> None:
        self.sink.append((t, sink))
        for uid, share in upstream.items():
            self.upstream.setdefault(uid, []).append((t, share))

    def steady(self) -> list[tuple[float, float]]:
        """The sink's points since the last upstream operator ended (all of them where none has)."""
        ended = [pts for pts in self.upstream.values() if pts[-1][1] >= self.FINISHED]
        since = max((next(t for t, d in pts if d >= self.FINISHED) for pts in ended), default=float("-inf"))
        return [(t, d) for t, d in self.sink if t >= since]

    def phase_ahead(self, line: Line, noise_pct: float) -> bool:
        """Whether an upstream operator still running is set to end before the sink by more than the noise."""
        end = line.reaches(1.0)
        for pts in self.upstream.values():
            if pts[-1][1] >= self.FINISHED:
                continue
            mine = steady_line(pts)
            if mine is not None and end - mine.reaches(1.0) > end * noise_pct / 100:
                return True
        return False


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
    """The least-squares line through ``(t, rows done)`` from the first rows done on (the ramp-up left out).
    None until the rows done have moved ``MIN_LINE_POINTS`` times: a sample that repeats the last one's rows
    is the same step seen again, not another measurement. Progress that moves a few large steps (a model fed
    whole 750-row blocks in batches of a block, counted only as each batch returns) fits a line whose error
    the repeats shrink: embed's trial of Ray's defaults, two steps in, was predicted at 101 s, where those
    settings run 59-62 s in full (``tune_bench.py --only embed``)."""
    moving = _moving(points)
    n = len(moving)
    if _moves(moving) < MIN_LINE_POINTS:  # never more moves than points
        return None
    ts, done = [t for t, _ in moving], [d for _, d in moving]
    t_mean = statistics.fmean(ts)
    sxx = sum((t - t_mean) ** 2 for t in ts)
    slope, intercept = statistics.linear_regression(ts, done) if sxx > 0 else (0.0, 0.0)
    if slope <= 0:
        return None
    residual = sum((d - intercept - slope * t) ** 2 for t, d in moving)
    return Line(slope, intercept, 2 * math.sqrt(residual / (n - 2) / sxx) / slope)


def _moves(points: Sequence[tuple[float, float]]) -> int:
    """How many of the points show rows done that differ from the point before (the first counts)."""
    return 1 + sum(b != a for (_, a), (_, b) in itertools.pairwise(points)) if points else 0


def _moving(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    """The points from the first with rows done on: the ramp-up before any row finished is left out."""
    return points[next((i for i, (_, done) in enumerate(points) if done > 0), len(points)) :]


def past_box(points: Sequence[tuple[float, float]], sink: Sink, box_s: float) -> bool:
    """Whether a trial's sink, at its latest steady rate, ends the run past ``box_s`` even at the fastest rate the
    rate's error allows. Only once its rate has stopped climbing (the later half of its points past the ramp-up
    no faster than the whole line, within that line's error): an actor pool still starting replicas, or workers
    still coming up, finishes faster than its first rows say. ``points``: the share of the whole done."""
    moving = _moving(points)
    if len(moving) < 2 * MIN_LINE_POINTS:
        return False
    whole, later = steady_line(moving), steady_line(moving[len(moving) // 2 :])
    if whole is None or later is None or later.slope > whole.slope * (1 + whole.rel_err):
        return False
    return later.reaches_at_best(1.0) + sink.tail_s > box_s


def sink_points(run: Run, sink: Sink | None) -> list[tuple[float, float]]:
    """``(t, share done)`` of the run's last execution (``share_done``), as sampled."""
    return progress_of(run, sink).sink


def progress_of(run: Run, sink: Sink | None) -> Progress:
    """The run's last execution's ``Progress``, as sampled."""
    ops = run.executions[-1].operators if run.executions else ()
    progress = Progress()
    for t, values in at_each_time(run.op_samples, {op.uid for op in ops}):
        share = share_done(ops, values, sink)
        if share is not None:
            progress.add(t, share, upstream_shares(ops, values, sink))
    return progress


def sink_probe_s(run: Run, sink: Sink) -> float | None:
    """A sink probe's predicted full-run time: when its fitted line (``Progress.steady``) reaches the whole, and
    the tail."""
    line = steady_line(progress_of(run, sink).steady())
    return line.reaches(1.0) + sink.tail_s if line is not None else None


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
    """A stop rule for a pipeline that ends in a sink: ends the run once the rate at which the sink's work gets
    done (``share_done``) is known within ``noise_pct`` (``steady_line``'s ``rel_err``) while the line says at
    least half of it is still to come; a probe that would save less runs in full, measured rather than
    predicted. With ``box_s`` (the trial's time box, on the run's clock) it also ends as soon as even the fastest
    rate the line's error allows would end the run past that box: a trial already known to lose is not run to
    its box. Its figure waits until the run will say what the sink operator's tasks did (``has_task_figures``):
    a finished task, or rows counted inside its running ones (``record.in_task``), of which the recorder makes
    the operator's figures when the run is stopped. The model reads them: a baseline stopped inside the one
    map task of the held-out packed row, before either existed, gave the doctor no task of that stage (no
    finding; the study tried Ray's defaults alone, 46% of the oracle). A loser is stopped at once all the
    same: it is reverted, and its figures never read as the incumbent's.
    Without a ``sink`` (the baseline, which measures it) only the first execution is probed, and only
    where its last operator writes: a write is what a script runs for, while a materialising call may be
    followed by more of the script. A run whose progress cannot be read runs in full. The box itself
    (``time_boxed``) is asked first."""

    def __init__(self, sink: Sink | None, noise_pct: float, box_s: float | None = None) -> None:
        self._sink, self._noise, self._box_s = sink, noise_pct, box_s
        self._inner = time_boxed(box_s)
        self._writes: set[int] = set()
        self._ops: tuple[Operator, ...] = ()
        self._executions = 0
        self._progress = Progress()

    def __call__(self, message: Message) -> str | None:
        boxed = self._inner(message) if self._inner is not None else None
        if boxed is not None:
            return boxed
        self._follow(message)
        if not isinstance(message, OpSamples) or not self._probing():
            return None
        values = {str(op): v for op, v in message.values.items()}
        done = share_done(self._ops, values, self._sink)
        if done is None:
            return None
        self._progress.add(message.t, done, upstream_shares(self._ops, values, self._sink))
        measured = measured_op(self._ops, self._sink, values)
        return self._verdict(measured is not None and has_task_figures(values.get(measured.uid, {})))

    def _follow(self, message: Message) -> None:
        if isinstance(message, StageBuilt) and message.stage.kind is StageKind.WRITE:
            self._writes.add(message.stage.index)
        if isinstance(message, ExecutionStarted):
            self._ops, self._progress, self._executions = message.operators, Progress(), self._executions + 1

    def _probing(self) -> bool:
        if not self._ops or self._sink is not None:
            return bool(self._ops)
        return self._executions == 1 and bool(self._writes.intersection(self._ops[-1].stages))

    def _verdict(self, a_task_ended: bool) -> str | None:
        points = self._progress.steady()
        line = steady_line(points)
        if line is None or self._progress.phase_ahead(line, self._noise):
            return None
        if self._box_s is not None and self._sink is not None and past_box(points, self._sink, self._box_s):
            return SINK_PAST_BOX_REASON  # a loser: reverted, its figures never read as the incumbent's
        if not a_task_ended or line.rel_err * 100 > self._noise:
            return None
        return SINK_PROBE_REASON if line.at(points[-1][0]) <= 1 - PROBE_LEFT_SHARE else None
