"""How fast could this pipeline go on this hardware? The floor that knob tuning cannot get under.

Pure. The pipeline's work is what its tasks measurably burnt: CPU-seconds over every operator (spread over all
the cluster's cores at best), GPU-seconds over the GPUs. Time outside the pipeline's execution (imports,
connecting to Ray, the script's own set-up) is fixed: knobs do not change it. A stage that mostly waits (a
download) is limited by the remote side's latency and concurrency, which the run does not reveal: then the
bound is reported as unknown rather than guessed; so it is where a stage runs batches smaller than its tasks'
rows, since part of its CPU time is per-batch cost that larger batches remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.diagnose import WAITING_CORES, Facts, capacity


@dataclass(frozen=True)
class Bound:
    wall_s: float  # the run measured
    bound_s: float | None  # the floor; None when a latency-bound stage makes it unknowable from this run
    fixed_s: float  # time outside the pipeline's execution
    work_s: float  # the execution's work spread over the resources
    limiting: str  # the operator with the most work, or the latency-bound one
    resource: str  # "CPU", "GPU", "latency" or "batching" (the last two: bound unknown)

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
        return (
            f"bound {self.bound_s:.1f} s ({self.fixed_s:.1f} s outside the pipeline + {self.work_s:.1f} s of "
            f"{self.resource} work, limited by {self.limiting}); this run is {self.gap_pct:+.0f}% above it"
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
    return Bound(run.wall_s, fixed + work, fixed, work, heaviest.name, resource)
