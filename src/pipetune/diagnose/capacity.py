"""The pipeline's capacity model: how much faster would the run be with one change? First order, over the measured
service rates; the planner, the tuner and the doctor's ranking all ask it here.

Pure. The limiting operator's speed-up is predicted from what the change does to it (more usable slots, or
fewer batches each paying a fixed cost); the pipeline then speeds up until the next operator limits it, and
the time outside the execution does not change. The figures rank candidate changes; the trial run decides.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate, usable_slots
from pipetune.diagnose.facts import BatchCost, Facts
from pipetune.diagnose.findings import Fix
from pipetune.diagnose.fusion import cpus_of, fused_into_pool, fuses_at, pieces_after, stage_times
from pipetune.diagnose.progress import inputs_held
from pipetune.model import Calls, Knobs, Operator, OperatorStats, Run, Stage, StageKind, TaskSpan


def run_speedup(facts: Facts, op: Operator, op_speedup: float) -> float:
    """The whole run's speed-up when ``op`` gets ``op_speedup`` times faster."""
    run, execution, rate = facts.run, facts.execution, facts.rates.get(op.uid)
    if execution is None or execution.ended_t is None or rate is None or not run.wall_s:
        return 1.0
    exec_s = execution.ended_t - execution.started_t
    fixed = max(run.wall_s - exec_s, 0.0)
    bottleneck = min(r.headroom for r in facts.rates.values())
    if rate.headroom > th.LIMITING_BESIDE_BOTTLENECK.value * bottleneck:
        return 1.0  # not what the pipeline waits for: speeding it up changes nothing
    others = [r.headroom for r in facts.rates.values() if r.uid != op.uid]
    cap = max(min(others) / rate.headroom, 1.0) if others else math.inf  # until the next operator limits it
    return run.wall_s / (fixed + exec_s / max(min(op_speedup, cap), 1e-9))


def slots_speedup(
    facts: Facts,
    op: Operator,
    *,
    num_cpus: float | None = None,
    concurrency: int | None = None,
    blocks: int | None = None,
) -> float:
    """More tasks at once: the ratio of usable slots after and before (capped by the cores the tasks burn)."""
    rate = facts.rates.get(op.uid)
    if rate is None:
        return 1.0
    changed = _with(op, num_cpus, concurrency)
    slots = usable_slots(changed, facts.cpus, facts.gpus, rate.cores_per_task)
    tasks = blocks if blocks is not None else _tasks(facts, op)
    return min(slots, max(tasks, 1)) / max(rate.slots, 1e-9)


def _with(op: Operator, num_cpus: float | None, concurrency: int | None) -> Operator:
    changes: dict[str, float | int] = {}
    if num_cpus is not None:
        changes["num_cpus"] = num_cpus
    if concurrency is not None:
        changes["max_concurrency"] = concurrency
    return replace(op, **changes) if changes else op  # type: ignore[arg-type]


def _tasks(facts: Facts, op: Operator) -> int:
    """The tasks the operator runs: Ray's count of its finished ones; for one a probe stopped inside its tasks
    (``running``), the inputs it had been given (``_inputs_seen``): its few running tasks would say 1 where a
    pool of four actors has four blocks to share."""
    stats = facts.run.stats_of(op.uid)
    if stats is not None and stats.running:
        return max(_inputs_seen(facts, op), stats.task_s.count, 1)
    return stats.task_s.count if stats and stats.task_s.count else 1


def _inputs_seen(facts: Facts, op: Operator) -> int:
    """The most inputs the operator held at once in its samples: tasks finished, running, and blocks waiting at
    its input (one block an input where each block fills a batch; more where Ray bundles small ones)."""
    return int(max((inputs_held(s.values) for s in facts.run.samples_of(op.uid)), default=0.0))


def batch_model(facts: Facts, stage: int, batch: int) -> tuple[float, float, float] | None:
    """(stage seconds, fixed seconds per batch, seconds per row) of a stage run at ``batch`` rows per batch. The
    fixed part is the one fitted on runs at several batch sizes where the study has them (``fit_batch_cost``),
    else this run's own (``_fixed_per_batch``: Ray's framing, and the function's fixed cost per call where its
    calls measure one); either way at most the stage's measured time per batch. None where none is known."""
    measured = _batch_time(facts, stage, batch)
    if measured is None or measured.prior_s is None:
        return None
    fixed = min(measured.per_batch_s, measured.prior_s)
    return measured.stage_s, fixed, (measured.per_batch_s - fixed) / batch


class _BatchTime(NamedTuple):
    stage_s: float  # the stage's busy seconds in the run
    per_batch_s: float  # ... over its batches at ``batch`` rows each
    prior_s: float | None  # the fixed seconds per batch known: fitted across runs, else this run's own; None: none


def _batch_time(facts: Facts, stage: int, batch: int) -> _BatchTime | None:
    op, rate, stats = facts.operator_of(stage), facts.rate_of(stage), facts.stage_stats(stage)
    if op is None or rate is None or stats is None or rate.rows <= 0:
        return None
    stage_s = _stage_s(op, stats, stage)
    cost = facts.batch_costs.get(stage)
    prior = cost.fixed_s if cost is not None else _fixed_per_batch(facts.run, op, stats, stage, rate.rows)
    return _BatchTime(stage_s, stage_s / max(rate.rows / batch, 1.0), prior)


def _fixed_per_batch(run: Run, op: Operator, stats: OperatorStats, stage: int, rows: float) -> float | None:
    """One run's fixed seconds per batch: Ray's framing (``framing_per_batch``) and the function's own fixed
    cost per call where the run's calls measure one (``_stage_call_cost``)."""
    framing, own = framing_per_batch(run, op, stats, rows), _stage_call_cost(stats, stage)
    if framing is None and own is None:
        return None
    return (framing or 0.0) + (own or 0.0)


def own_call_cost(facts: Facts, stage: int) -> float | None:
    """The stage's batch function's fixed seconds per call, fitted on the run's calls (``call_cost``)."""
    stats = facts.stage_stats(stage)
    return _stage_call_cost(stats, stage) if stats else None


def call_cost_unknown(facts: Facts, stage: int) -> bool:
    """Whether the model cannot tell how much of the stage's batch time is paid once per call: no fit across
    runs at several batch sizes (``facts.batch_costs``) and none on this run's own calls (every call had the
    same rows, or the workers could not count them), while the stage's tasks wait for part of their time
    (under ``COMPUTING_CORES``). A wait is outside the model: one request per batch (larger batches pay in
    proportion) and one per row (they change nothing) look the same at one batch size. A stage that computes
    for nearly all its time pays per row in its own CPU, which the rates measure."""
    rate = facts.rate_of(stage)
    if call_cost_measured(facts, stage) or rate is None:
        return False
    return rate.cores_per_task < th.COMPUTING_CORES.value


def waits_per_call(facts: Facts, stage: int, batch: int) -> Facts:
    """The facts as they would be if the stage's whole wait per batch (its time off the CPU, ``cores_per_task``)
    were a fixed cost per call: the most a larger batch could gain where that cost is unknown
    (``call_cost_unknown``)."""
    measured, rate = _batch_time(facts, stage, batch), facts.rate_of(stage)
    if measured is None or rate is None:
        return facts
    per_batch, prior = measured.per_batch_s, measured.prior_s
    known = min(per_batch, prior) if prior is not None else 0.0  # batch_model's fixed part
    fixed = max(per_batch * max(1.0 - rate.cores_per_task, 0.0), known)
    return replace(facts, batch_costs={**facts.batch_costs, stage: BatchCost(fixed, 0.0, (batch,))})


def call_cost_measured(facts: Facts, stage: int) -> bool:
    """Whether the model knows the stage's fixed cost per call: fitted across runs at several batch sizes
    (``facts.batch_costs``) or on this run's own calls of several sizes (``own_call_cost``)."""
    return stage in facts.batch_costs or own_call_cost(facts, stage) is not None


def _stage_call_cost(stats: OperatorStats, stage: int) -> float | None:
    calls = next((c for c in stats.calls if c.stage == stage), None)
    return call_cost(calls) if calls is not None else None


CALL_COST_SES = 2  # the rule for a gain kept on one run, applied to a fitted intercept: twice its error


def call_cost(calls: Calls) -> float | None:
    """The batch function's own fixed seconds per call, from one run: the intercept of a least-squares line of
    each call's seconds on its rows. Blocks that the batch size does not divide leave a smaller last batch, so
    one run holds calls of several sizes. The intercept less ``CALL_COST_SES`` standard errors, at least zero:
    a fixed cost the calls' own scatter cannot tell from none counts as none. None where every call had the
    same rows (no line to fit) or there were too few calls to say how far they scatter."""
    n = calls.count
    if n < 3:
        return None
    mean_r, mean_s = calls.rows / n, calls.seconds / n
    sxx = calls.rows_sq - n * mean_r**2
    if sxx <= 1e-9 * calls.rows_sq:  # every call the same size, to rounding
        return None
    sxy = calls.rows_seconds - n * mean_r * mean_s
    slope = sxy / sxx
    scatter = max(calls.seconds_sq - n * mean_s**2 - slope * sxy, 0.0) / (n - 2)
    error = math.sqrt(scatter * (1 / n + mean_r**2 / sxx))
    return max(mean_s - slope * mean_r - CALL_COST_SES * error, 0.0)


def framing_per_batch(run: Run, op: Operator, stats: OperatorStats, rows: float) -> float | None:
    """Ray's time per batch to cut input blocks into batches and build the outputs back into blocks, measured on
    the run (``frame_s``) and shared evenly by every batch of the operator's batching stages. At small batches
    it is nearly all fixed cost (measured: a pandas map_batches spent 0.80-0.87 ms a batch on it at 16 to 256
    rows, 200k rows); at large ones it also holds per-row conversion, where a fixed cost barely weighs. A UDF's
    own per-call cost is not in it: that the run's calls of several sizes measure (``own_call_cost``), or a second
    batch size (``fit_batch_cost``). Where no task had finished (``_running_framing``), from inside the tasks."""
    if stats.frame_s is None:
        return _running_framing(op, stats)
    sizes = [run.stage(i).knobs.batch_size for i in op.stages if run.stage(i).method == "map_batches"]
    batches = sum(max(rows / b, 1.0) for b in sizes if isinstance(b, int) and b > 0)
    return stats.frame_s / batches if batches else None


def _running_framing(op: Operator, stats: OperatorStats) -> float | None:
    """Ray's time per batch where a probe stopped the run before any of the operator's tasks ended, so Ray
    measured none: each worker's time outside the batch function per call, from its first batch's end to its
    last count (``record.in_task``), and no more than the CPU it burnt in that window less the time inside the
    function: a task held back by backpressure waits without framing anything. None where nothing is left (a
    function that waits itself leaves no CPU to tell framing by). Only where the one stage with call figures
    (only ``map_batches`` functions have them; a per-row ``map`` is counted, never timed) is the operator's
    first: there the time around the calls is Ray's batching and the building of output blocks, while a read
    or a row-based stage in front of it would add its own work. Checked against Ray's own figure: a probed ETL
    baseline's enrich operator spent 3.2 ms a call outside its function; run in full at the same batch size,
    Ray measured 3.8 ms a batch of framing and the in-task figure was 3.8 ms too."""
    if not stats.running or len(stats.calls) != 1:
        return None
    (counted,), outside = stats.calls, min(stats.busy_s, stats.cpu_s) - stats.udf_s
    if op.stages[:1] != (counted.stage,) or counted.count == 0 or outside <= 0:
        return None
    return outside / counted.count


def _stage_s(op: Operator, stats: OperatorStats, stage: int) -> float:
    times = stage_times(op, stats)
    return times[op.stages.index(stage)] if times else stats.busy_s


def batch_point(facts: Facts, stage: int) -> tuple[int, float] | None:
    """(rows per batch, stage seconds per row) as run: the batch a task really made (at most its rows), for a
    stage given an explicit batch size. What ``fit_batch_cost`` fits across runs."""
    batch, rows, rate = facts.run.stage(stage).knobs.batch_size, rows_per_task(facts, stage), facts.rate_of(stage)
    op, stats = facts.operator_of(stage), facts.stage_stats(stage)
    if not isinstance(batch, int) or batch <= 0 or not rows or rate is None or rate.rows <= 0 or not (op and stats):
        return None
    return min(batch, math.ceil(rows)), _stage_s(op, stats, stage) / rate.rows


def fit_batch_cost(points: Sequence[tuple[int, float]]) -> BatchCost | None:
    """Seconds per row against one over the batch size, a least-squares line over runs at two or more batch
    sizes: its slope is the fixed cost per batch, its intercept the cost per row. A slope under zero (larger
    batches were no cheaper per row, within the runs' noise) is no fixed cost."""
    sizes = sorted({b for b, _ in points})
    if len(sizes) < 2:
        return None
    xs, ys = [1 / b for b, _ in points], [y for _, y in points]
    slope, _ = statistics.linear_regression(xs, ys)
    fixed = max(slope, 0.0)
    return BatchCost(fixed, max(statistics.fmean(ys) - fixed * statistics.fmean(xs), 0.0), tuple(sizes))


def rows_per_task(facts: Facts, stage: int) -> float | None:
    """Rows a task of the stage got: the most a batch can hold (a larger batch only bundles blocks)."""
    stats, rate = facts.stage_stats(stage), facts.rate_of(stage)
    if stats is None or rate is None or not stats.task_s.count:
        return None
    return rate.rows / stats.task_s.count


def smaller_batches_than_tasks(facts: Facts) -> list[Stage]:
    """The batching stages whose batches are smaller than their tasks' rows and whose fixed per-batch costs are
    more than the tuning aim's share of their time: that is work larger batches remove, so it is no floor."""
    return [s for s in facts.run.stages if _batches_weigh(facts, s)]


def _batches_weigh(facts: Facts, stage: Stage) -> bool:
    rows, batch = rows_per_task(facts, stage.index), stage.knobs.batch_size
    if stage.method != "map_batches" or not batch or not rows or batch >= rows:
        return False
    share = fixed_share(facts, stage.index, batch)
    return share is not None and share > th.BATCH_OVERHEAD_TARGET.value


def fixed_share(facts: Facts, stage: int, batch: int) -> float | None:
    """The share of a batch's time its fixed cost takes (``batch_model``); None where the model has none."""
    model = batch_model(facts, stage, batch)
    if model is None:
        return None
    _, fixed, per_row = model
    whole = fixed + per_row * batch
    return fixed / whole if whole > 0 else None


def batch_speedup(facts: Facts, stage: int, batch: int, proposed: int) -> float:
    model, stats = batch_model(facts, stage, batch), facts.stage_stats(stage)
    if model is None or stats is None or stats.busy_s <= 0:
        return 1.0
    stage_s, fixed, per_row = model
    ratio = (fixed / proposed + per_row) / (fixed / batch + per_row)
    return stats.busy_s / (stats.busy_s - stage_s + stage_s * ratio)


def batch_for(facts: Facts, stage: int, batch: int) -> int | None:
    """The batch size at which fixed per-batch costs fall under the target share: a power of two, at least
    double the batch. Unbounded where the run measured no cost per row: what bounds a batch is a task's rows and
    the memory a worker has, which ``sized_batch`` applies."""
    model = batch_model(facts, stage, batch)
    if model is None:
        return None
    _, fixed, per_row = model
    if per_row <= 0:
        return UNBOUNDED_BATCH
    wanted = fixed / (th.BATCH_OVERHEAD_TARGET.value * per_row)
    return max(int(2 ** math.ceil(math.log2(max(wanted, 1)))), batch * 2)


UNBOUNDED_BATCH = 1 << 30  # no bound: larger than any block's rows


BATCH_MEMORY_SHARE = th.MEMORY_TARGET[0]  # guide: batches should keep worker memory within 60-80%
BATCH_COPIES = 4  # assumed, not measured: a UDF holds a few copies of its batch (input, intermediates, output)


def sized_batch(facts: Facts, stage: int, batch: int, floor: int = 0) -> int | None:
    """The batch size the model asks for (fixed per-batch costs under the tuning aim), at least ``floor``, and
    never more than a task's rows or the guide's memory share allow; None where nothing measured bounds it. The
    doctor's fix, the tuner's move and the plan's batch."""
    proposed = batch_for(facts, stage, batch)
    if proposed is None:
        return None
    sized = min(max(proposed, floor), batch_cap(facts, stage, batch))
    return sized if sized < UNBOUNDED_BATCH else None


def batch_cap(facts: Facts, stage: int, batch: int) -> int:
    """The most rows a batch of the stage may take, whoever sizes it: a task's rows (``block_cap``) and the
    guide's memory share (``memory_cap``)."""
    return min(memory_cap(facts, stage), block_cap(facts, stage, batch))


def block_cap(facts: Facts, stage: int, batch: int) -> int:
    """No more rows than a task gets: a larger batch bundles blocks and leaves fewer tasks to run at once."""
    rows = rows_per_task(facts, stage)
    return UNBOUNDED_BATCH if rows is None else max(int(rows), batch)


def whole_block(facts: Facts, stage: int, batch: int) -> int | None:
    """The rows of a whole block as one batch (Ray Data's default, ``batch_size=None``), or None where that
    would not fit the guide's memory share (``memory_cap``)."""
    whole = block_cap(facts, stage, batch)
    return whole if whole <= memory_cap(facts, stage) else None


def memory_cap(facts: Facts, stage: int) -> int:
    """The most rows per batch that keep a worker's share of node memory under the guide's 60%: of the nodes
    whose ``memory`` Ray reports (no cap where none does: nothing is assumed in its place)."""
    per_row = input_bytes_per_row(facts, stage)
    shares = [n.resources["memory"] / n.resources["CPU"] for n in facts.run.env.nodes
              if n.resources.get("CPU") and n.resources.get("memory")]  # fmt: skip
    if per_row is None or not shares:
        return UNBOUNDED_BATCH
    return max(1, int(BATCH_MEMORY_SHARE * min(shares) / (BATCH_COPIES * per_row)))


def input_bytes_per_row(facts: Facts, stage: int) -> float | None:
    """Bytes per row of the blocks the stage reads: the upstream operator's output (its own may be a write's)."""
    op = facts.operator_of(stage)
    ops = facts.operators
    if op is None or op not in ops or ops.index(op) == 0:
        return None
    upstream = facts.run.stats_of(ops[ops.index(op) - 1].uid)
    if upstream is None or upstream.block_rows.mean <= 0 or upstream.block_bytes.mean <= 0:
        return None
    return upstream.block_bytes.mean / upstream.block_rows.mean


# -- what one fix gains ---------------------------------------------------------------------------------------

BLOCK_KNOBS = ("repartition", "override_num_blocks")


def fix_speedup(facts: Facts, fix: Fix) -> float:
    """The run's predicted speed-up from ``fix`` with the changes it comes with (a pool size and its
    reservation). 1.0 where the model cannot say: a DataContext field, a removed call, a loop's own knob, a
    reservation that fuses two operators (their measured rates are of the two apart)."""
    stage = fix.stage
    op = facts.operator_of(stage) if stage is not None else None
    if stage is None or op is None or fix.knob.startswith("ctx."):
        return 1.0
    if fix.knob in BLOCK_KNOBS and isinstance(fix.proposed, int):
        return blocks_speedup(facts, stage, fix.proposed)
    if fix.knob == "batch_size" and isinstance(fix.current, int) and isinstance(fix.proposed, int):
        return run_speedup(facts, op, batch_speedup(facts, stage, fix.current, fix.proposed))
    values = {f.knob: f.proposed for f in (fix, *fix.also)}
    cpus, size = values.get("num_cpus"), values.get("concurrency")
    cpus = float(cpus) if isinstance(cpus, (int, float)) else None
    size = size if isinstance(size, int) else None
    if (cpus is None and size is None) or (cpus is not None and fuses_at(facts.run, op, cpus)):
        return 1.0
    if op.compute == "actors":
        return pool_run_speedup(facts, op, cpus, size)
    knobs = facts.run.stage(stage).knobs
    changed = knobs.replace(num_cpus=knobs.num_cpus if cpus is None else cpus, concurrency=size or knobs.concurrency)
    gain = config_speedup(facts, {stage: changed})  # reservations shared with the other task stages included
    together = {f.stage for f in (fix, *fix.also) if f.knob == "num_cpus" and f.stage is not None} or {stage}
    return with_cost(facts, gain, reservation_cost_s(facts, op, together, _with(op, cpus, size)))


def pool_run_speedup(facts: Facts, op: Operator, num_cpus: float | None, size: int | None) -> float:
    """The run's speed-up with the pool at another size and reservation (``pool_speedup``), at most what the
    seconds the pool model saves the pool (start-ups and rows, ``PoolModel.seconds``) take off the run's wall:
    a pool that sat idle part of the execution, waiting on something else, saves the run only its own time
    (two-nodes bench pipeline after whole-block batches: one Scorer's 6.3 s by the pool model in a 12.4 s run
    behind 40 read tasks that waited on Ray one at a time; three Scorers, predicted 4.4 s, ran no faster)."""
    model, execution = pool_model(facts, op) if size is not None else None, facts.execution
    ratio = _pool_ratio(facts, op, model, num_cpus, size)
    gain = run_speedup(facts, op, ratio)
    if model is None or execution is None or execution.ended_t is None or ratio <= 1:
        return gain
    share = min(model.seconds(op.max_concurrency or 1), execution.ended_t - execution.started_t)  # the pool's part
    return min(gain, time_saved_speedup(facts, share * (1 - 1 / ratio)))


def pool_speedup(facts: Facts, op: Operator, num_cpus: float | None, size: int | None) -> float:
    """The actor pool's own speed-up with another reservation per actor and another size: a new size by the
    pool model where it has its figures (the one ``size_pool`` picks sizes by), else by the usable slots;
    times what more threads per actor bring (``threads_speedup``)."""
    return _pool_ratio(facts, op, pool_model(facts, op) if size is not None else None, num_cpus, size)


def _pool_ratio(facts: Facts, op: Operator, model: PoolModel | None, num_cpus: float | None, size: int | None) -> float:
    threads = threads_speedup(facts, op, num_cpus) if num_cpus is not None else 1.0
    if model is None or size is None:
        return slots_speedup(facts, op, num_cpus=num_cpus, concurrency=size) * threads
    return model.seconds(op.max_concurrency or 1) / model.seconds(size) * threads


def omp_threads(num_cpus: float) -> int:
    """The threads a worker's OpenMP, BLAS and torch pools may run: Ray sets its ``OMP_NUM_THREADS``, where the
    script left it unset, to the whole CPUs the task or actor reserves, at least 1
    (``ray._private.utils.set_omp_num_threads_if_unset``)."""
    return max(math.floor(num_cpus + 1e-9), 1)


def threads_speedup(facts: Facts, op: Operator, num_cpus: float) -> float:
    """The most ``op``'s tasks gain from the threads a reservation of ``num_cpus`` lets them run
    (``omp_threads``): where each burnt about all the threads it had (``USES_RESERVATION`` of them), at best
    it speeds up with its thread count, limited by the cores the run left idle, shared by the tasks that ran at
    once. An upper bound: how well the UDF's library spreads one batch over threads is not measured by one
    run. 1.0 where the reservation adds no thread or the tasks did not fill the threads they had."""
    rate, before, after = facts.rates.get(op.uid), omp_threads(op.num_cpus), omp_threads(num_cpus)
    if rate is None or facts.cpu_pct is None or after <= before:
        return 1.0
    if rate.cores_per_task < before * th.USES_RESERVATION.value:
        return 1.0
    return (before + min(after - before, idle_cores(facts) / max(rate.slots, 1.0))) / before


def idle_cores(facts: Facts) -> float:
    """The cores the run left idle on average: the cluster's CPUs less the share its nodes kept busy."""
    return facts.cpus * max(1 - (facts.cpu_pct or 0.0) / 100, 0.0)


def reservation_cost_s(facts: Facts, op: Operator, stage: int | Collection[int], moved: Operator) -> float:
    """What running a task stage as ``moved`` (another reservation or cap) costs: the worker starts more tasks
    at once need (``added_workers_s``), and where the reservation splits the stage from the stages Ray fused it
    with, a task per block for each operator split off, at Ray's per-task overhead over the operator's slots
    (measured on the run). ``stage`` may be several stages that move together (none splits off when all do)."""
    rate, tasks = facts.rates.get(op.uid), _tasks(facts, op)
    extra = (pieces_after(op, stage, moved.num_cpus) - 1) * tasks
    split = extra * task_overhead_s(facts) / max(rate.slots, 1.0) if rate is not None else 0.0
    return added_workers_s(facts, op, tasks, moved) + split


def time_saved_speedup(facts: Facts, saved_s: float) -> float:
    """The run's speed-up when a change removes ``saved_s`` seconds of its wall, measured by the rule that
    proposes it where the rates above cannot see the mechanism (the idle slots of uneven tasks, Ray's overhead
    for tasks fewer blocks would not run)."""
    wall = facts.run.wall_s or 0.0
    return wall / (wall - saved_s) if 0 < saved_s < wall else 1.0


def blocks_speedup(facts: Facts, stage: int | None, blocks: int) -> float:
    """More blocks from ``stage`` help the operators downstream of it, which now get more tasks, and each task
    they add costs Ray's per-task overhead as this run measured it."""
    downstream = [op for op in facts.operators if stage is not None and op.stages and min(op.stages) >= stage]
    gains = {op.uid: run_speedup(facts, op, slots_speedup(facts, op, blocks=blocks)) for op in downstream}
    if not gains or max(gains.values()) <= 1.0:
        return 1.0
    limiting = next(op for op in downstream if gains[op.uid] == max(gains.values()))
    cost = added_tasks_s(facts, {op.uid: blocks for op in downstream}) + added_workers_s(facts, limiting, blocks)
    return with_cost(facts, max(gains.values()), cost)


def block_count_speedup(facts: Facts, stage: int, blocks: int) -> float:
    """The run's speed-up when the read ``stage`` makes ``blocks`` blocks. More than its operators ran tasks:
    ``blocks_speedup``. Fewer: the Ray overhead of the tasks they would no longer run (``fewer_blocks_saved_s``,
    the most any one of them saves: they run side by side), less what the operators lose where they used more
    slots at once than there would be blocks."""
    if blocks == facts.run.stage(stage).knobs.override_num_blocks:
        return 1.0  # the blocks the run made: nothing changes
    downstream = [op for op in facts.operators if op.stages and min(op.stages) >= stage]
    ran = max((len(facts.spans_of(op)) for op in downstream), default=0)
    if blocks >= ran:
        return blocks_speedup(facts, stage, blocks)
    saved = max((fewer_blocks_saved_s(facts, op, blocks) for op in downstream), default=0.0)
    lost = min((run_speedup(facts, op, min(slots_speedup(facts, op, blocks=blocks), 1.0)) for op in downstream),
               default=1.0)  # fmt: skip
    return with_cost(facts, lost, -saved)


def fewer_blocks_saved_s(facts: Facts, op: Operator, blocks: int) -> float:
    """What ``blocks`` blocks save ``op`` (a task operator whose tasks spent most of their time on Ray's side,
    submitted to finished less their time on the worker: ``TASK_WORK_SHARE``): its tasks past ``blocks``, each
    Ray's overhead (``task_overhead_s``), about as many at a time as ran at once. 0.0 for any other operator."""
    spans = [t for t in facts.spans_of(op) if t.worker_s is not None]
    if op.compute != "tasks" or len(spans) <= blocks or work_share(spans) >= th.TASK_WORK_SHARE.value:
        return 0.0
    return (len(spans) - blocks) * task_overhead_s(facts, op) / most_at_once(spans)


def work_share(spans: Sequence[TaskSpan]) -> float:
    """Of the tasks' time, submitted to finished, the share they worked on their workers."""
    taken = sum(t.finished_t - t.submitted_t for t in spans)
    return sum(t.worker_s or 0.0 for t in spans) / taken if taken > 0 else 1.0


def _waits(facts: Facts, op: Operator | None = None) -> list[tuple[float, float]]:
    """(submitted, seconds the task waited on Ray: submitted to finished less its own time on its worker) of the
    main execution's tasks (or ``op``'s) that kept their worker time, in the order they were submitted."""
    spans = [t for o in ([op] if op else facts.operators) for t in facts.spans_of(o) if t.worker_s is not None]
    return sorted((t.submitted_t, t.finished_t - t.submitted_t - (t.worker_s or 0.0)) for t in spans)


def task_overhead_s(facts: Facts, op: Operator | None = None) -> float:
    """Ray's own seconds per task on this cluster, measured on the run: the median, over the main execution's
    tasks (or ``op``'s), of submitted-to-finished less the task's own time on its worker (scheduling it, leasing
    a worker, returning its result; on this 2-core machine about 0.2 s a task). The execution's first task is
    left out: it also waited for the first worker to start (``worker_start_s``). 0.0 where too few tasks were
    measured to say (``MIN_TASKS_FOR_OVERHEAD``): the model then charges added tasks nothing."""
    first = _waits(facts)[:1]
    spent = [wait for t, wait in _waits(facts, op) if (t, wait) not in first]
    return max(statistics.median(spent), 0.0) if len(spent) >= th.MIN_TASKS_FOR_OVERHEAD.value else 0.0


def worker_start_s(facts: Facts) -> float:
    """Seconds the execution's first task waited on Ray beyond the others' overhead: starting a worker process
    for it (measured on the run; on this machine 1.8-3.5 s). 0.0 where the run kept no worker times."""
    waits = _waits(facts)
    return max(waits[0][1] - task_overhead_s(facts), 0.0) if waits else 0.0


def added_workers_s(facts: Facts, op: Operator, tasks: int, moved: Operator | None = None) -> float:
    """What the workers cost that ``op`` (run as ``moved``: another reservation) needs to run more tasks at once
    than it did: each one more at once is a worker process to start (``worker_start_s``). A raylet starts as
    many at a time as its node has CPUs (Ray's ``maximum_startup_concurrency``, which defaults to the node's CPU
    count), so they come online in rounds of the cluster's CPUs while the ones already up keep working: the
    cost is how much later the operator's work (its busy slot-seconds) ends on that ramp than on all the slots
    at once."""
    spans, rate, stats = facts.spans_of(op), facts.rates.get(op.uid), facts.run.stats_of(op.uid)
    if not spans or rate is None or stats is None:
        return 0.0
    want = min(usable_slots(moved or op, facts.cpus, facts.gpus, rate.cores_per_task), tasks)
    have = most_at_once(spans)
    if want <= have:
        return 0.0
    ramp = _ramp_s(stats.busy_s, have, want, max(facts.cpus, 1.0), worker_start_s(facts))
    return max(ramp - stats.busy_s / want, 0.0)


def _ramp_s(work_s: float, have: float, want: float, per_round: float, start_s: float) -> float:
    """Seconds to do ``work_s`` slot-seconds starting on ``have`` slots, ``per_round`` more coming online every
    ``start_s`` until there are ``want``."""
    t, slots = 0.0, have
    while slots < want and start_s > 0:
        if work_s <= slots * start_s:
            return t + work_s / slots
        work_s, t, slots = work_s - slots * start_s, t + start_s, min(want, slots + per_round)
    return t + work_s / slots


def added_tasks_s(facts: Facts, tasks: Mapping[str, int]) -> float:
    """What running ``tasks[uid]`` tasks instead of the ones each operator ran costs the run: each added task
    holds one of the slots its operator can use for Ray's per-task overhead (``task_overhead_s``)."""
    overhead, cost = task_overhead_s(facts), 0.0
    for op in facts.operators:
        ran, rate = len(facts.spans_of(op)), facts.rates.get(op.uid)
        added = tasks.get(op.uid, ran) - ran
        if added > 0 and ran and rate is not None:
            slots = min(usable_slots(op, facts.cpus, facts.gpus, rate.cores_per_task), tasks[op.uid])
            cost += added * overhead / max(slots, 1.0)
    return cost


def with_cost(facts: Facts, speedup: float, cost_s: float) -> float:
    """The run's speed-up ``speedup`` once a change also adds ``cost_s`` seconds to it."""
    wall = facts.run.wall_s or 0.0
    return wall / (wall / speedup + cost_s) if wall > 0 and speedup > 0 else speedup


def most_at_once(spans: Sequence[TaskSpan]) -> int:
    """The most of these tasks that were in flight at one time (submitted and not yet finished)."""
    edges = sorted([(t.submitted_t, 1) for t in spans] + [(t.finished_t, -1) for t in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return max(most, 1)


# -- a whole configuration at once ---------------------------------------------------------------------------


def config_speedup(facts: Facts, changed: Mapping[int, Knobs]) -> float:
    """The run's speed-up with these stages' knobs (by stage index) all changed at once.

    Every operator of the main execution takes its rows over its capacity (rows per busy slot-second, changed
    by its batch sizes, times the slots its reservation, pool and blocks allow); all of them share the
    cluster's cores (their CPU-seconds, changed by the batch sizes, over the CPUs). The slowest of those sets
    the execution's time; the time outside it does not change. Both sides are the model's, so its errors on
    the measured run cancel to first order."""
    run, execution = facts.run, facts.execution
    if execution is None or execution.ended_t is None or not run.wall_s:
        return 1.0
    before, after = _model_seconds(facts, {}), _model_seconds(facts, changed)
    if before <= 0 or after <= 0:
        return 1.0
    exec_s = execution.ended_t - execution.started_t
    fixed = max(run.wall_s - exec_s, 0.0)
    return run.wall_s / (fixed + exec_s * after / before)


def _model_seconds(facts: Facts, changed: Mapping[int, Knobs]) -> float:
    """The execution's time by the model: the slowest operator on the slots it can get, the CPU-seconds all of
    them burn over the CPUs, and the CPU-seconds the task stages hold reserved (a task holds its ``num_cpus``
    while it runs, burning or waiting) over the CPUs the actor pools leave them, whichever is longest."""
    times, cpu_s, reserved_s, pools = [0.0], 0.0, 0.0, 0.0
    for op in facts.operators:
        rate, stats = facts.rates.get(op.uid), facts.run.stats_of(op.uid)
        if rate is None or stats is None or rate.per_slot <= 0:
            continue
        ratio = _busy_ratio(facts, op, changed)
        moved = _changed_op(facts, op, changed)
        slots = min(usable_slots(moved, facts.cpus, facts.gpus, rate.cores_per_task), max(_tasks(facts, op), 1))
        times.append(rate.rows / (rate.per_slot / ratio * max(slots, 1.0)))
        cpu_s += stats.cpu_s * ratio
        if op.compute == "actors":
            pools += moved.num_cpus * (moved.max_concurrency or 1)  # held for the whole execution
        else:
            reserved_s += stats.busy_s * ratio * moved.num_cpus
    free = facts.cpus - pools
    held = reserved_s / free if free > 0 else 0.0
    return max(*times, cpu_s / facts.cpus if facts.cpus > 0 else 0.0, held)


def _busy_ratio(facts: Facts, op: Operator, changed: Mapping[int, Knobs]) -> float:
    """The operator's busy time per row with its stages' batch sizes changed, over what it measured."""
    stats = facts.run.stats_of(op.uid)
    if stats is None or stats.busy_s <= 0:
        return 1.0
    saved = 0.0
    for index in op.stages:
        old, new = facts.run.stage(index).knobs.batch_size, changed.get(index)
        if old is None or new is None or new.batch_size == old:
            continue
        model = batch_model(facts, index, old)
        if model is None:
            continue
        stage_s, fixed, per_row = model
        whole = rows_per_task(facts, index) or old  # a batch never holds more than its task's rows
        proposed = min(new.batch_size or whole, whole)  # None: Ray's whole blocks
        saved += stage_s * (1 - (fixed / proposed + per_row) / (fixed / old + per_row))
    return max(stats.busy_s - saved, 1e-9) / stats.busy_s


def _changed_op(facts: Facts, op: Operator, changed: Mapping[int, Knobs]) -> Operator:
    """The operator as its stages' changed reservations and pool would run it (fused stages share one)."""
    mine = [changed[i] for i in op.stages if i in changed]
    if not mine:
        return op
    cpus = max(cpus_of(k) for k in mine)
    if op.compute == "actors":
        size: int | None = None if mine[-1].concurrency is None else pool_size(mine[-1])  # None: Ray scales it
    else:
        size = mine[-1].concurrency if isinstance(mine[-1].concurrency, int) else None
    return replace(op, num_cpus=cpus, max_concurrency=size)


# -- how large should an actor pool be? -------------------------------------------------------------------------


def actor_startup_s(facts: Facts, op: Operator) -> float | None:
    """Seconds from the execution's start until the pool's first actor was alive (its ``__init__`` included),
    from the recorded samples; None where the samples never show the pool."""
    execution = facts.execution
    if execution is None:
        return None
    alive = sorted(s.t for s in facts.run.op_samples if s.source == op.uid and s.values.get("actors_alive", 0) >= 1)
    return max(alive[0] - execution.started_t, 0.0) if alive else None


@dataclass(frozen=True)
class PoolModel:
    """How long the pool's share of the execution takes with ``n`` actors, every figure measured on the run.

    Rows go through at ``per_actor`` rows per busy actor-second on as many actors as the cores can keep busy
    (each burns ``cores_per_actor``; the other operators burn ``others_cpu_per_row`` CPU-seconds a row, at the
    same rate), never faster than the rest of the pipeline carries (``ceiling``). Starting
    an actor is a process start plus its ``__init__``, which burns a core: ``n`` of them on ``cpus`` cores take
    ``n / cpus`` times as long as one once they outnumber the cores. So more actors are not always faster: the
    start-up they add is weighed against the rows they share (an actor pool calling a slow service on this
    machine ran 19.8 s with 1 actor, 8.1 s with 4, 9.6 s with 8 and 31 s with 32)."""

    rows: float
    per_actor: float
    cores_per_actor: float
    startup_s: float
    cpus: float
    ceiling: float = math.inf
    others_cpu_per_row: float = 0.0

    def seconds(self, n: int) -> float:
        starting = self.startup_s * max(1.0, n / self.cpus) if self.cpus > 0 else self.startup_s
        return starting + self.rows / self.rate(n)

    def rate(self, n: int) -> float:
        """Rows/s through ``n`` actors: each at ``per_actor`` while it has a core; when the cores run out,
        the rate at which the pool and the other operators together burn exactly ``cpus``."""
        rate = min(self.per_actor * n, self.ceiling)
        if self.cpus <= 0:
            return rate
        per_row = self.cores_per_actor / self.per_actor + self.others_cpu_per_row  # CPU-seconds a row costs
        return min(rate, self.cpus / per_row) if per_row > 0 else rate

    def best(self, sizes: Iterable[int]) -> int:
        """The pool size among ``sizes`` the model says is fastest (the smaller of two that tie)."""
        return min(sizes, key=lambda n: (round(self.seconds(n), 6), n))


def pool_model(facts: Facts, op: Operator) -> PoolModel | None:
    """The model of ``op``'s pool from the run, or None when a figure it needs was not measured (its start-up
    included: without it the model cannot tell where more actors stop paying). Replicas that shared the cores
    (``shares_cores``) are modelled as each would run alone: on the threads Ray lets it run (``omp_threads``),
    at the rows per core-second they measured."""
    rate, startup = facts.rates.get(op.uid), actor_startup_s(facts, op)
    if rate is None or startup is None or rate.per_slot <= 0:
        return None
    others = [r for r in facts.rates.values() if r.uid != op.uid]
    burn = sum(s.cpu_s / r.rows for r in others if (s := facts.run.stats_of(r.uid)) is not None and r.rows > 0)
    ceiling = min((r.capacity for r in others), default=math.inf)
    per_actor, cores = rate.per_slot, rate.cores_per_task
    if shares_cores(facts, op) and cores > 0:
        threads = omp_threads(op.num_cpus)
        per_actor, cores = per_actor * threads / cores, float(threads)
    return PoolModel(rate.rows, per_actor, cores, startup, facts.cpus, ceiling, burn)


def shares_cores(facts: Facts, op: Operator) -> bool:
    """The one answer to "did this pool's replicas fight for the cores": more of them than the cores the other
    operators left (each wanting its ``omp_threads``), and together they kept ``BUSY_CPU_PCT`` of those cores
    busy, and more than the others did (else a full machine says nothing about the pool: it may wait)."""
    rate = facts.rates.get(op.uid)
    if rate is None or op.compute != "actors" or facts.cpus <= 0:
        return False
    replicas, others = op.max_concurrency or 1, others_cores(facts, op)
    burnt, left = replicas * rate.cores_per_task, max(facts.cpus - others, 0.0)
    wanted = replicas * omp_threads(op.num_cpus)
    return wanted > left and burnt >= busy_gate(facts, op) and burnt >= others


def busy_gate(facts: Facts, op: Operator) -> float:
    """The cores a pool's replicas must keep busy between them to count as fighting for the cores:
    ``BUSY_CPU_PCT`` of those the other operators left them (``others_cores``)."""
    return max(facts.cpus - others_cores(facts, op), 0.0) * th.BUSY_CPU_PCT.value / 100


def others_cores(facts: Facts, op: Operator) -> float:
    """The cores the main execution's other operators burnt on average while it ran (their CPU-seconds over
    its wall): what is left is what replicas fighting for the cores could have had."""
    execution = facts.execution
    wall = (execution.ended_t or execution.started_t) - execution.started_t if execution else 0.0
    if execution is None or wall <= 0:
        return 0.0
    return sum(s.cpu_s for s in execution.stats if s.uid != op.uid) / wall


@dataclass(frozen=True)
class PoolSize:
    """A limiting pool resized: ``actors`` instead of ``now``, each reserving ``share`` CPUs instead of
    ``current`` where the larger pool needs that to fit. The doctor's fix and the tuner's move alike."""

    stage: int
    now: int
    actors: int
    current: float
    share: float
    gain: float  # predicted speed-up of the whole run
    why: str

    def knobs(self) -> list[tuple[str, float | int]]:
        out: list[tuple[str, float | int]] = [("concurrency", self.actors)]
        return out + ([("num_cpus", self.share)] if self.share < self.current else [])

    def describe(self) -> str:
        text = f"concurrency {self.now} -> {self.actors}"
        return text + (f", num_cpus {self.current:g} -> {self.share:g}" if self.share < self.current else "")


def size_pool(facts: Facts) -> PoolSize | None:
    """The limiting actor pool at the size the pool model finds fastest among those that fit the nodes as Ray
    places them, in one step (1 -> 12 if 12 is fastest, or fewer where start-ups cost more than they bring),
    each actor reserving the most that still fits (never more than it does now)."""
    stage = facts.bottleneck_stage()
    if stage is None or stage.kind is not StageKind.ACTOR or facts.cpus <= 0:
        return None
    op, rate, knobs = facts.operator_of(stage.index), facts.rate_of(stage.index), stage.knobs
    if op is None or rate is None or isinstance(knobs.concurrency, tuple):
        return None
    now, current = pool_size(knobs), cpus_of(knobs)
    held = as_run(facts.run)
    room = held.left_for_pools(facts.cpus) - (held.pool_cpus - now * current)  # on one node; checked per node
    most = min(int(room / th.NUM_CPUS_IO[0] + 1e-9), max(_tasks(facts, op), 1))  # more actors than tasks idle
    if most < 1:
        return None  # the pool cannot hold even the guide's smallest reservation per actor
    sized = _sized(facts, op, rate, now, most, lambda n: _share_that_fits(facts, stage, n, current, room))
    if sized is None or sized[0] == now:
        return None
    actors, share, gain, why = sized
    return PoolSize(stage.index, now, actors, current, share, gain, why)


def _share_that_fits(facts: Facts, stage: Stage, actors: int, current: float, room: float) -> float | None:
    """The largest reservation per actor, in the guide's smallest steps and at most ``current``, with which
    ``actors`` actors fit the nodes and leave the task stages room; None when none does. (A smaller share
    never fits worse, so the steps are bisected.)"""
    step = th.NUM_CPUS_IO[0]

    def fits(k: int) -> bool:
        changed = {stage.index: stage.knobs.replace(concurrency=actors, num_cpus=round(k * step, 3))}
        return as_run(facts.run, changed).fits(rooms(facts.run))

    lo, hi = 0, int(min(current, room / actors) / step + 1e-9)  # fits(lo) is the sentinel, hi the most asked
    if hi < 1 or not fits(1):
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return current if lo * step >= current - 1e-9 else round(lo * step, 3)


Fitting = Callable[[int], float | None]


def _why(rate: OperatorRate, model: PoolModel, now: int, actors: int) -> str:
    return (
        f"{rate.per_slot:,.0f} rows/s per actor, {model.startup_s:.1f} s to start one: {actors} actors finish "
        f"soonest ({model.seconds(actors):.1f} s against {model.seconds(now):.1f} s)"
    )


def _sized(facts: Facts, op: Operator, rate: OperatorRate, now: int, most: int,
           share_of: Fitting) -> tuple[int, float, float, str] | None:  # fmt: skip
    """(actors, their share, predicted run speed-up, why): the fastest pool size by the pool model that fits;
    without a measured start-up cost the model cannot see where more actors stop paying, so the pool at most
    doubles, and only while cores are idle."""
    model = pool_model(facts, op)
    if model is not None:
        for actors in sorted(range(1, most + 1), key=lambda n: (round(model.seconds(n), 6), n)):
            if actors == now:
                return None  # what runs now is already the fastest that fits
            share = share_of(actors)
            if share is not None:
                gain = pool_run_speedup(facts, replace(op, max_concurrency=now), None, actors)
                return actors, share, gain, _why(rate, model, now, actors)
        return None
    for actors in range(min(2 * now, most), now, -1):
        share = share_of(actors)
        busy = min(actors, facts.cpus / max(rate.cores_per_task, 0.1))  # actors beyond the cores share them
        if share is not None and busy > rate.slots + th.SLOT_SLACK.value:  # more busy actors than ran, not rounding
            why = f"the pool of {now} limits the pipeline and its start-up cost was not measured: at most x2"
            return actors, share, run_speedup(facts, op, busy / max(rate.slots, 1.0)), why
    return None


# -- does an actor pool fit? The one home of that judgement (doctor rules, checklist, feasibility, policy) ----


@dataclass(frozen=True)
class Room:
    """What one node offers Ray's scheduler (its logical CPUs and GPUs)."""

    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class Pool:
    actors: int  # kept for the whole execution: the fixed size, or the minimum
    cpus: float  # per actor
    gpus: float = 0.0


@dataclass(frozen=True)
class Reservations:
    """What a pipeline's settings hold: actor pools keep their CPUs and GPUs for the whole execution; every task
    stage then needs room for at least one of its tasks on some node, or the pipeline waits forever."""

    pools: tuple[Pool, ...]
    tasks: tuple[Room, ...]  # one task of each task stage

    @property
    def pool_cpus(self) -> float:
        return sum(p.actors * p.cpus for p in self.pools)

    @property
    def pool_gpus(self) -> float:
        return sum(p.actors * p.gpus for p in self.pools)

    @property
    def task_cpus(self) -> float:
        """One task of the task stage that reserves the most."""
        return max((t.cpus for t in self.tasks), default=0.0)

    def fits(self, nodes: Sequence[Room]) -> bool:
        return self.why_not(nodes) is None

    def why_not(self, nodes: Sequence[Room]) -> str | None:
        """Why these reservations cannot all run on ``nodes``, or None when they can."""
        free = place(self.pools, nodes)
        if free is None:
            held = f"{self.pool_cpus:g} CPUs and {self.pool_gpus:g} GPUs"
            return f"actor pools hold {held}: not every actor finds a node with room for it"
        for task in self.tasks:
            if not any(_holds(room, task) for room in free):
                left = max((room.cpus for room in free), default=0.0)
                return (f"the actor pools leave at most {left:g} CPUs on a node and a task needs {task.cpus:g} CPUs"
                        f"{f' and {task.gpus:g} GPUs' if task.gpus else ''}: the pipeline would hang")  # fmt: skip
        return None

    def left_for_pools(self, cpus: float) -> float:
        """CPUs the actor pools may hold between them and still leave the task stages room (on one node)."""
        return cpus - self.task_cpus


def _holds(room: Room, need: Room) -> bool:
    return room.cpus + 1e-9 >= need.cpus and room.gpus + 1e-9 >= need.gpus


def place(pools: Iterable[Pool], nodes: Sequence[Room]) -> list[Room] | None:
    """The room left on each node once every actor is placed, or None when some actor finds no node.

    Ray Data schedules with ``DataContext.scheduling_strategy``, "SPREAD" by default (Ray's docs): each actor goes
    to the node with the most room left that can hold it, so a pool spreads across nodes rather than packing one
    and leaving the other whole. Largest actors first."""
    free = list(nodes)
    actors = sorted((Room(p.cpus, p.gpus) for p in pools for _ in range(p.actors)), key=lambda a: (-a.gpus, -a.cpus))
    for actor in actors:
        fitting = [i for i, room in enumerate(free) if _holds(room, actor)]
        if not fitting:
            return None
        i = max(fitting, key=lambda j: (free[j].cpus, free[j].gpus, -j))
        free[i] = Room(free[i].cpus - actor.cpus, free[i].gpus - actor.gpus)
    return free


def rooms(run: Run) -> tuple[Room, ...]:
    """The run's nodes as the scheduler sees them; the cluster's totals as one node where nodes were not recorded."""
    nodes = tuple(Room(n.resources.get("CPU", 0.0), n.resources.get("GPU", 0.0)) for n in run.env.nodes)
    nodes = tuple(n for n in nodes if n.cpus or n.gpus)
    if nodes:
        return nodes
    total = run.env.cluster_resources
    return (Room(total.get("CPU", 0.0), total.get("GPU", 0.0)),)


def pool_size(knobs: Knobs) -> int:
    """Actors a pool keeps for the whole execution: its fixed size, or its minimum."""
    c = knobs.concurrency
    if isinstance(c, tuple):
        return int(c[0])
    return int(c) if c else 1


def concurrency_cap(knobs: Knobs) -> int | None:
    """The most tasks or actors the stage's ``concurrency`` lets run at once: its fixed size, or an autoscaling
    pool's maximum; None where it sets none."""
    c = knobs.concurrency
    return int(max(c)) if isinstance(c, tuple) else c


def reservations(stages: Iterable[tuple[Stage, Knobs]]) -> Reservations:
    """Reservations of these stages run with these knobs (a stage Ray fused into an actor needs no room)."""
    staged = list(stages)
    return Reservations(
        pools=tuple(Pool(pool_size(k), cpus_of(k), k.num_gpus or 0.0) for s, k in staged if s.kind is StageKind.ACTOR),
        tasks=tuple(Room(cpus_of(k), k.num_gpus or 0.0) for s, k in staged if s.kind is not StageKind.ACTOR),
    )


def as_run(run: Run, changed: Mapping[int, Knobs] | None = None) -> Reservations:
    """The reservations of the recorded run (with some stages' knobs ``changed``), leaving out the stages Ray
    fused into an actor pool and still would with those knobs (``fused_into_pool``)."""
    knobs = {s.index: (changed or {}).get(s.index, s.knobs) for s in run.stages}
    in_pools = {i for _, op in run.operators() if op.compute == "actors" for i in fused_into_pool(run, op, knobs)}
    kept = [s for s in run.stages if s.kind is StageKind.ACTOR or s.index not in in_pools]
    return reservations((s, knobs[s.index]) for s in kept)
