"""The script's loop over the data (guide: the Iteration view): data-bound or consumer-bound, uneven splits,
a prefetch too shallow for a bursty producer, a shuffle buffer that costs more than the loop's own step.

Data-bound: the loop waits for batches a large share of its time, so the pipeline feeding it limits; the
stage that limits is the producer's bottleneck, judged by service rate as for any pipeline, and the other
rules give its fix. Consumer-bound: the loop almost never waits, so no pipeline setting can make it faster;
the finding says so and shows the headroom the producer has. Prefetch: the loop waits although the producer
could, on average, supply rows faster than the loop takes them: its output comes in bursts (whole blocks) that
one batch of prefetch does not smooth.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate, operator_rates
from pipetune.diagnose.consumers import Consumption, feeding
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import finding
from pipetune.model import Execution

RAY_PREFETCH_DEFAULT = 1  # Ray Data: iter_batches(prefetch_batches=1) by default


def check_bound(facts: Facts) -> list[Finding]:
    return [_bound(facts, c) for c in facts.consumers]


def _bound(facts: Facts, c: Consumption) -> Finding:
    producer = feeding(facts.run, c)
    slowest = _slowest(facts, producer)
    if c.blocked_share < th.DATA_BOUND_SHARE.value:
        return _consumer_bound(facts, c, slowest)
    if slowest is not None and slowest.capacity > c.demand_rows_per_s:
        return _bursty(facts, c, slowest.capacity, producer)
    return _data_bound(facts, c, slowest)


def _slowest(facts: Facts, producer: Execution | None) -> OperatorRate | None:
    """The producer's operator with the least headroom, judged by service rate as for any pipeline (None:
    its execution was not recorded, e.g. a split's coordinator on a cluster the recorder could not reach)."""
    rates = operator_rates(facts.run, producer) if producer is not None else []
    return min(rates, key=lambda r: r.headroom, default=None)


def _name(facts: Facts, c: Consumption) -> str:
    """``the loop over iter_batches (train.py:40, split 1)``: which loop, as the user wrote it."""
    stage = facts.run.stage(c.stage)
    split = f", split {c.split}" if c.split is not None else ""
    return f"the loop over {stage.method} ({stage.site}{split})"


def _share_evidence(c: Consumption) -> Evidence:
    return Evidence("loop time blocked waiting for data", 100 * c.blocked_share, "%",
                    100 * th.DATA_BOUND_SHARE.value, th.DATA_BOUND_SHARE.source)  # fmt: skip


def _figures(c: Consumption) -> list[Evidence]:
    return [
        Evidence("wait for the first batch (start-up, not counted above)", c.first_wait_s, " s"),
        Evidence("rows the loop took per second", c.rows_per_s, " rows/s"),
        Evidence("rows per second of the loop's own time (its demand)", c.demand_rows_per_s, " rows/s"),
    ]


def _consumer_bound(facts: Facts, c: Consumption, slowest: OperatorRate | None) -> Finding:
    capacity = slowest.capacity if slowest else None
    headroom = [Evidence("producer capacity over the loop's rate", capacity / c.rows_per_s, "x")] if capacity else []
    f = finding(
        facts, "consumer-bound",
        f"consumer-bound: {_name(facts, c)} waited only {100 * c.blocked_share:.3g}% of its time for data",
        facts.run.stage(c.stage), [_share_evidence(c), *_figures(c), *headroom],
        "the loop's own code takes almost all its time: no pipeline setting can make it faster; speed up the "
        "loop (or give it more workers) instead",
        None,
        Criterion("blocked_share", "<", th.DATA_BOUND_SHARE.value, "the loop rarely waits for data", c.stage),
        0.9,
    )  # fmt: skip
    return _stake(f, c)


def _data_bound(facts: Facts, c: Consumption, slowest: OperatorRate | None) -> Finding:
    limiting = facts.stage_of(slowest)
    capacity = slowest.capacity if slowest else None
    rising = _rising(c)
    named = f"stage {limiting.key} limits the pipeline" if limiting else "the producer's stages ran outside the driver"
    f = finding(
        facts, "data-bound",
        f"data-bound: {_name(facts, c)} waited {100 * c.blocked_share:.3g}% of its time for batches",
        limiting or facts.run.stage(c.stage),
        [_share_evidence(c), *_figures(c), *rising,
         *([Evidence("producer capacity (its slowest operator)", capacity, " rows/s")] if capacity else [])],
        f"the pipeline cannot produce rows as fast as the loop takes them: {named}"
        + ("; blocked time is rising, so it needs more data parallelism" if rising else ""),
        None,
        Criterion("blocked_share", "<", th.DATA_BOUND_SHARE.value, "the loop rarely waits for data", c.stage),
        0.8,
    )  # fmt: skip
    return _stake(f, c)


def _bursty(facts: Facts, c: Consumption, capacity: float, producer: Execution | None) -> Finding:
    stage = facts.run.stage(c.stage)
    current = stage.knobs.prefetch_batches if stage.knobs.prefetch_batches is not None else RAY_PREFETCH_DEFAULT
    f = finding(
        facts, "shallow-prefetch",
        f"prefetch too shallow: {_name(facts, c)} waited {100 * c.blocked_share:.3g}% of its time although the "
        "producer keeps up on average",
        stage,
        [_share_evidence(c), *_figures(c), Evidence("producer capacity (its slowest operator)", capacity, " rows/s",
                                                    c.demand_rows_per_s, "the loop's demand")],
        "rows arrive in bursts (whole blocks) that a prefetch of "
        f"{current} batch(es) does not smooth out, so the loop waits between them",
        Fix("prefetch_batches", stage.knobs.prefetch_batches, _prefetch_for(producer, c, current), Level.BATCH,
            c.stage),
        Criterion("blocked_share", "<", th.DATA_BOUND_SHARE.value, "the loop rarely waits for data", c.stage),
        0.6,
    )  # fmt: skip
    return _stake(f, c)


def _prefetch_for(producer: Execution | None, c: Consumption, current: int) -> int:
    """Enough batches ahead to cover one output block of the producer (its burst), at least twice today's."""
    stats = producer.stats[-1] if producer is not None and producer.stats else None  # the blocks the loop reads
    per_batch = c.rows / c.batches if c.batches else 0.0
    burst = math.ceil(stats.block_rows.p50 / per_batch) if stats and per_batch > 0 else 0
    return max(2 * max(current, 1), burst)


def _rising(c: Consumption) -> list[Evidence]:
    if c.blocked_early is None or c.blocked_late is None:
        return []
    rise = c.blocked_late - c.blocked_early
    if rise < th.RISING_BLOCKED.value:
        return []
    return [Evidence("blocked share, second half minus first half", 100 * rise, " points",
                     100 * th.RISING_BLOCKED.value, th.RISING_BLOCKED.source)]  # fmt: skip


def _stake(f: Finding, c: Consumption) -> Finding:
    """A consumer's finding is worth the share of the loop's time the data kept it waiting (or all of it)."""
    return replace(f, severity=c.blocked_share if f.rule != "consumer-bound" else 1.0)


def consumer_bound(facts: Facts) -> Finding | None:
    """The consumer-bound finding when the script's loop, not the pipeline, limits the run (the tuner stops)."""
    return next((f for f in check_bound(facts) if f.rule == "consumer-bound"), None)


def check_splits(facts: Facts) -> list[Finding]:
    """One consumer of a streaming_split starves (data-bound) while another almost never waits (it has a queue)."""
    out = []
    by_stage: dict[int, list[Consumption]] = {}
    for c in facts.consumers:
        if c.split is not None:
            by_stage.setdefault(c.stage, []).append(c)
    for stage, splits in by_stage.items():
        starved = max(splits, key=lambda c: c.blocked_share)
        fed = min(splits, key=lambda c: c.blocked_share)
        starving = starved.blocked_share >= th.DATA_BOUND_SHARE.value
        if len(splits) > 1 and starving and fed.blocked_share < th.DATA_BOUND_SHARE.value:
            out.append(_uneven(facts, stage, starved, fed))
    return out


def _uneven(facts: Facts, stage: int, starved: Consumption, fed: Consumption) -> Finding:
    return finding(
        facts, "uneven-splits",
        f"uneven splits: split {starved.split} waited {100 * starved.blocked_share:.3g}% of its time, "
        f"split {fed.split} {100 * fed.blocked_share:.3g}%",
        facts.run.stage(stage),
        [Evidence(f"split {starved.split} blocked", 100 * starved.blocked_share, "%"),
         Evidence(f"split {fed.split} blocked", 100 * fed.blocked_share, "%"),
         Evidence("gap between the splits", 100 * (starved.blocked_share - fed.blocked_share), " points",
                  100 * th.DATA_BOUND_SHARE.value, th.DATA_BOUND_SHARE.source),
         Evidence(f"rows to split {starved.split}", starved.rows, " rows"),
         Evidence(f"rows to split {fed.split}", fed.rows, " rows")],
        "the consumers do not get data at the pace each can take it: the faster one starves while the other "
        "still has batches waiting; with equal=True each split gets the same rows, and the slower consumer "
        "(or its share of the data) is what to even out",
        None,
        Criterion("blocked_share", "<", th.DATA_BOUND_SHARE.value, "every split rarely waits", stage),
        0.5,
    )  # fmt: skip


def check_shuffle(facts: Facts) -> list[Finding]:
    """A local shuffle buffer whose batching keeps the loop waiting longer than its own step takes."""
    out = []
    for c in facts.consumers:
        stage = facts.run.stage(c.stage)
        size = stage.knobs.local_shuffle_buffer_size
        if size and c.from_ray and c.user_s > 0 and c.batching_wait_s / c.user_s > th.SHUFFLE_OVER_STEP.value:
            out.append(_shuffle(facts, c, size))
    return out


def _shuffle(facts: Facts, c: Consumption, size: int) -> Finding:
    return finding(
        facts, "shuffle-buffer",
        "the local shuffle buffer costs the loop more than its own step",
        facts.run.stage(c.stage),
        [Evidence("wait on batching and shuffle over the loop's own time", c.batching_wait_s / c.user_s, "x",
                  th.SHUFFLE_OVER_STEP.value, th.SHUFFLE_OVER_STEP.source),
         Evidence("local_shuffle_buffer_size", float(size), " rows")],
        "each batch is drawn from a buffer of that many rows, and building it keeps the loop waiting; a smaller "
        "buffer (with randomize_block_order upstream for coarse shuffling) costs less",
        Fix("local_shuffle_buffer_size", size, max(1, size // 2), Level.BATCH, c.stage),
        Criterion("blocked_share", "<", th.DATA_BOUND_SHARE.value, "the loop rarely waits for data", c.stage),
        0.6,
    )  # fmt: skip
