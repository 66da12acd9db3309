"""Data skew: some tasks take far longer than the rest, or some blocks are far larger.

Guide: "Some tasks much slower than others? Use repartition() for better distribution"; verified by even
task durations. A batch larger than the blocks it reads bundles several of them into one task: few long tasks,
and slots idle while they run, even when the tasks take about as long as each other.
"""

from __future__ import annotations

import math

from pipetune.diagnose import capacity
from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import blocks_for, finding, lead_stages
from pipetune.model import OperatorStats, Stage


def check(facts: Facts) -> list[Finding]:
    return [f for stage in lead_stages(facts) if (f := _skewed(facts, stage)) is not None]


def _skewed(facts: Facts, stage: Stage) -> Finding | None:
    stats = facts.stage_stats(stage.index)
    if stats is None or stats.task_s.count < th.MIN_TASKS_FOR_SKEW.value or stats.task_s.p50 <= 0:
        return None
    spread = stats.task_s.p90 / stats.task_s.p50
    uneven = stats.block_rows.max / stats.block_rows.mean if stats.block_rows.mean else 0.0
    bundled = _blocks_per_batch(facts, stage)
    tasks_apart = _uneven_tasks(stats, spread, uneven)
    straggler = _straggler(stats)
    if not tasks_apart and bundled < th.BUNDLED_BLOCKS.value and not straggler:
        return None
    idle, wall = _idle_s(facts, stage), facts.run.wall_s or 0.0
    if idle is None and not tasks_apart:
        return None  # bundling or one straggler shows only in the idle slots, and the run kept no task spans
    upstream = _upstream(facts, stage)
    fix = _fix(facts, stage, upstream)
    saved = None if idle is None else idle - _added_cost(facts, stage, fix)
    if saved is not None and saved < th.MEASURABLE_SHARE.value * wall:
        return None  # the long tasks overlapped the others, or the tasks a balance adds cost what it saves
    return finding(
        facts,
        "skew",
        f"data skew: uneven tasks{f' (each batch bundles {bundled:.3g} blocks)' if _bundles(bundled) else ''}",
        stage,
        [
            Evidence("task time p90 / p50", spread, "x", th.SKEW_P90_OVER_P50.value, th.SKEW_P90_OVER_P50.source),
            Evidence("largest block / mean block (rows)", uneven, "x", th.SKEW_MAX_OVER_MEAN_ROWS.value),
            *(
                [
                    Evidence(
                        "slowest task / median", stats.task_s.max / stats.task_s.p50, "x", th.SKEW_P90_OVER_P50.value
                    )
                ]
                if straggler
                else []
            ),
            *(
                [Evidence("blocks a batch bundles", bundled, "", th.BUNDLED_BLOCKS.value, th.BUNDLED_BLOCKS.source)]
                if _bundles(bundled)
                else []
            ),
            Evidence("slowest task", stats.task_s.max, " s"),
            *([Evidence("time idle slots cost while the tasks ran", idle, " s")] if idle is not None else []),
        ],
        "a few tasks carry much more work than the rest (heavy blocks, or several blocks bundled into one "
        "batch), so they finish long after the others while slots idle",
        fix,
        Criterion(
            "task_skew",
            "<",
            th.SKEW_FIXED_P90_OVER_P50.value,
            "even task durations (p90 under 2x the median)",
            stage.index,
        ),
        0.6,
        gain=capacity.time_saved_speedup(facts, saved) if saved is not None else 1.0,
    )


def _added_cost(facts: Facts, stage: Stage, fix: Fix) -> float:
    """What the tasks the fix adds cost in Ray's per-task overhead (measured on the run): batches of one block
    run a task per block they read; a repartition gives the stage as many tasks as blocks."""
    op, rate = facts.operator_of(stage.index), facts.rate_of(stage.index)
    if op is None or rate is None or not isinstance(fix.proposed, int) or fix.proposed <= 0:
        return 0.0
    tasks = math.ceil(rate.rows / fix.proposed) if fix.knob == "batch_size" else fix.proposed
    return capacity.added_tasks_s(facts, {op.uid: tasks})


def _uneven_tasks(stats: OperatorStats, spread: float, uneven: float) -> bool:
    """Task times or block sizes far apart, with the slowest task long enough for anything to wait on it."""
    far_apart = spread >= th.SKEW_P90_OVER_P50.value or uneven >= th.SKEW_MAX_OVER_MEAN_ROWS.value
    return far_apart and stats.task_s.max - stats.task_s.p50 >= th.MIN_SKEW_GAP_S.value


def _straggler(stats: OperatorStats) -> bool:
    """One task far slower than the median (guide: "some tasks much slower than others"), which the p90 of many
    tasks does not show: only the slots it left idle (measured from the spans) can say whether it cost much."""
    slow = stats.task_s.max / stats.task_s.p50 >= th.SKEW_P90_OVER_P50.value
    return slow and stats.task_s.max - stats.task_s.p50 >= th.MIN_SKEW_GAP_S.value


def _bundles(blocks_per_batch: float) -> bool:
    return blocks_per_batch >= th.BUNDLED_BLOCKS.value


def _blocks_per_batch(facts: Facts, stage: Stage) -> float:
    """How many of the blocks it reads one batch of the stage takes (1 where it takes one, or cannot say)."""
    batch, block = stage.knobs.batch_size, _input_block_rows(facts, stage)
    return batch / block if batch and block and batch > block else 1.0


def _upstream(facts: Facts, stage: Stage) -> Stage:
    """Where to split blocks: the stage just before this one (or itself, for a source)."""
    before = [s for s in facts.run.stages if s.index < stage.index]
    return before[-1] if before else stage


def _idle_s(facts: Facts, stage: Stage) -> float | None:
    """What uneven tasks cost: the slot-seconds the stage's slots sat idle while its tasks ran (first start to
    last end), over its slots: the time a perfect balance would save. None where the run kept no task spans."""
    op, rate = facts.operator_of(stage.index), facts.rate_of(stage.index)
    spans = facts.spans_of(op) if op is not None else []
    if rate is None or len(spans) < 2:
        return None
    slots = min(rate.slots, len(spans))
    span = max(t.finished_t for t in spans) - min(t.submitted_t for t in spans)
    busy = sum(t.finished_t - t.submitted_t for t in spans)
    return max(slots * span - busy, 0.0) / slots


def _fix(facts: Facts, stage: Stage, upstream: Stage) -> Fix:
    """A batch larger than the blocks it reads bundles several blocks into one task, so heavy blocks land in
    one long task whatever the blocks are: batches of one block's rows (at most) undo the bundling. Otherwise
    (guide) repartition upstream so the heavy rows spread over more tasks."""
    batch, block = stage.knobs.batch_size, _input_block_rows(facts, stage)
    if batch and block and _bundles(_blocks_per_batch(facts, stage)):
        return Fix("batch_size", batch, max(1, int(block)), Level.PARALLELISM, stage.index)
    return Fix("repartition", upstream.knobs.repartition, blocks_for(facts.cpus), Level.PARALLELISM, upstream.index)


def _input_block_rows(facts: Facts, stage: Stage) -> float | None:
    """Median rows per block of what the stage reads: the output of the operator before its own."""
    op = facts.operator_of(stage.index)
    ops = list(facts.execution.operators) if facts.execution else []
    if op is None or op not in ops or ops.index(op) == 0:
        return None
    stats = facts.run.stats_of(ops[ops.index(op) - 1].uid)
    return stats.block_rows.p50 if stats and stats.block_rows.count else None
