"""How fast could this pipeline go on this hardware? The floor that knob tuning cannot get under.

Pure. The pipeline's work is what its tasks measurably burnt: CPU-seconds over every operator (spread over all
the cluster's cores at best), GPU-seconds over the GPUs. Time outside the pipeline's execution (imports,
connecting to Ray, the script's own set-up) is fixed: knobs do not change it. A stage that mostly waits (a
download) is limited by the remote side's latency and concurrency, which the run does not reveal: then the
bound is reported as unknown rather than guessed; so it is where a stage runs batches smaller than its tasks'
rows, since part of its CPU time is per-batch cost that larger batches remove.

Where a run is far above its floor, ``Gap`` says where the cores' time went instead, from the run's own samples:
cores held by tasks and actors that did not compute, cores no task held, and what Ray's processes and the
driver burnt meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.diagnose import WAITING_CORES, Facts, capacity
from pipetune.metrics import declared
from pipetune.model import at_each_time


@dataclass(frozen=True)
class Gap:
    """The run's execution above its CPU work, as wall seconds over the cluster's cores (core-seconds divided by
    the cores), split by what the operators' samples say held the cores: ``held_s``, cores reserved by running
    tasks and actors that were not computing (waiting on I/O or a remote service, on the object store, in Ray's
    batching; an idle actor); ``free_s``, cores no task or actor reserved (workers and actors starting,
    backpressure, a stage with fewer tasks than cores, the last tasks' tail). The two add up to the gap.
    ``outside_s``: the CPU the nodes burnt outside the pipeline's tasks meanwhile (Ray's own processes, the
    driver, the recorder, anything else on the nodes), on either kind of core; None without node samples.
    Samples come every ``SAMPLE_INTERVAL_S``: on an execution of a few seconds the split is coarse."""

    held_s: float
    free_s: float
    outside_s: float | None

    def describe(self) -> str:
        burnt = self.outside_s
        outside = "" if burnt is None else f"; CPU outside the tasks (Ray, the driver) came to {burnt:.1f} s of them"
        return (
            f"of the time above it (as seconds of all the cores), {self.free_s:.1f} s no task held the cores "
            f"(start-up, backpressure, too few tasks, the tail) and {self.held_s:.1f} s tasks held them without "
            f"computing (waits, Ray's batching){outside}"
        )


@dataclass(frozen=True)
class Bound:
    wall_s: float  # the run measured
    bound_s: float | None  # the floor; None when a latency-bound stage makes it unknowable from this run
    fixed_s: float  # time outside the pipeline's execution
    work_s: float  # the execution's work spread over the resources
    limiting: str  # the operator with the most work, or the latency-bound one
    resource: str  # "CPU", "GPU", "latency" or "batching" (the last two: bound unknown)
    gap: Gap | None = None  # where the cores' time above the floor went; None where the samples do not say

    @property
    def gap_pct(self) -> float | None:
        """How far above the floor the run is, in percent of the floor."""
        if self.bound_s is None or self.bound_s <= 0:
            return None
        return (self.wall_s / self.bound_s - 1) * 100

    def describe(self) -> str:
        if self.bound_s is None and self.resource == "batching":
            return (
                f"bound unknown: {self.limiting} runs batches smaller than its tasks' rows, and how much of its "
                "CPU time is per-batch cost that larger batches remove is not known from one run"
            )
        if self.bound_s is None:
            return (
                f"bound unknown: {self.limiting} mostly waits (latency-bound); its floor is set by the remote "
                "side's latency and how many requests it serves at once"
            )
        why = f"; {self.gap.describe()}" if self.gap is not None else ""
        return (
            f"bound {self.bound_s:.1f} s ({self.fixed_s:.1f} s outside the pipeline + {self.work_s:.1f} s of "
            f"{self.resource} work, limited by {self.limiting}); this run is {self.gap_pct:+.0f}% above it{why}"
        )


def bound(facts: Facts) -> Bound | None:
    run, execution = facts.run, facts.execution
    if execution is None or execution.ended_t is None or not run.wall_s or facts.cpus <= 0:
        return None
    fixed = max(run.wall_s - (execution.ended_t - execution.started_t), 0.0)
    unique = {op.uid: op for op in execution.operators}.values()
    ops = [(op, run.stats_of(op.uid)) for op in unique]
    measured = [(op, st) for op, st in ops if st is not None and st.busy_s > 0]
    if not measured:
        return None
    waiting = [op for op, st in measured if st.cpu_s / st.busy_s < WAITING_CORES.value and op.num_gpus == 0]
    heaviest = max(measured, key=lambda m: m[1].cpu_s)[0]
    if facts.bottleneck and any(op.uid == facts.bottleneck.rate.uid for op in waiting):
        return Bound(run.wall_s, None, fixed, 0.0, facts.bottleneck.rate.name, "latency")
    batching = capacity.smaller_batches_than_tasks(facts)
    if batching:
        return Bound(run.wall_s, None, fixed, 0.0, batching[0].key, "batching")
    cpu_work = sum(st.cpu_s for _, st in measured) / facts.cpus
    gpu_work = max((st.busy_s * op.num_gpus / facts.gpus for op, st in measured if op.num_gpus), default=0.0)
    resource, work = ("GPU", gpu_work) if gpu_work > cpu_work else ("CPU", cpu_work)
    gap = cpu_gap(facts, cpu_work) if resource == "CPU" else None
    return Bound(run.wall_s, fixed + work, fixed, work, heaviest.name, resource, gap)


def cpu_gap(facts: Facts, work_s: float) -> Gap | None:
    """The execution above ``work_s`` (its CPU work over the cores), split as ``Gap`` says; None where no
    operator sample in the execution carries Ray's CPU reservation."""
    execution = facts.execution
    reserved = _mean_reserved(facts)
    if execution is None or execution.ended_t is None or reserved is None:
        return None
    span = execution.ended_t - execution.started_t
    held = min(reserved / facts.cpus, 1.0) * span  # of the cores, the share reserved, as wall seconds
    node = facts.cpu_pct
    outside = None if node is None else max(node / 100 * span - work_s, 0.0)
    return Gap(max(held - work_s, 0.0), max(span - max(held, work_s), 0.0), outside)


def _mean_reserved(facts: Facts) -> float | None:
    """The cores the execution's operators reserved, summed at each sample time, averaged over the times."""
    metric, uids = declared("cpu_reserved"), {op.uid for op in facts.operators}
    times = at_each_time(facts.during(facts.run.op_samples), uids)
    sums = [
        sum(v[metric] for v in ops.values() if metric in v)
        for _, ops in times
        if any(metric in v for v in ops.values())
    ]
    return sum(sums) / len(sums) if sums else None
