"""An actor pool larger than the cores can serve: more compute-bound replicas than cores, each paying its own
start-up (a model load) and then sharing the same cores with the others.

Guide: CPU inference actors get whole cores (num_cpus 2-4 per actor, "concurrency = available_cpus /
num_cpus_per_actor"); a pool past the cores adds start-ups and contention, not throughput. The fix is fewer
replicas: one per core the pool can have, keeping each replica's reservation, checked to fit the nodes.
"""

from __future__ import annotations

from pipetune.diagnose import capacity
from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import finding, lead_stages, throughput_criterion
from pipetune.model import Stage, StageKind


def check(facts: Facts) -> list[Finding]:
    return [f for s in lead_stages(facts) if s.kind is StageKind.ACTOR and (f := _oversized(facts, s)) is not None]


def _oversized(facts: Facts, stage: Stage) -> Finding | None:
    rate, op = facts.rate_of(stage.index), facts.operator_of(stage.index)
    replicas = capacity.pool_size(stage.knobs)
    if rate is None or op is None or isinstance(stage.knobs.concurrency, tuple) or facts.cpus <= 0:
        return None
    burnt = replicas * rate.cores_per_task  # the cores the replicas kept busy between them
    others = capacity.others_cores(facts, op)
    gate = capacity.busy_gate(facts, op)
    if replicas <= facts.cpus or not capacity.shares_cores(facts, op):
        return None  # no more replicas than cores, or they did not fight for the cores (they may wait)
    fewer = _fewer(facts, stage, others)
    if fewer is None:
        return None
    startup = capacity.actor_startup_s(facts, op)
    return finding(
        facts, "oversized-pool",
        f"actor pool larger than the cores can serve: {replicas} compute-bound replicas on {facts.cpus:g} CPUs",
        stage,
        [Evidence("replicas", float(replicas), "", facts.cpus, "the cluster's CPUs"),
         Evidence("cores the replicas kept busy together", burnt, " cores", gate,
                  f"{th.BUSY_CPU_PCT.value:g}% of the cores the other stages left free ({th.BUSY_CPU_PCT.source})"),
         *([Evidence("start-up of a replica (first alive)", startup, " s")] if startup is not None else [])],
        "every replica pays its own start-up and then shares the same cores with the others: past one per core, "
        "more replicas add start-ups and contention, not throughput",
        Fix("concurrency", stage.knobs.concurrency, fewer, Level.PARALLELISM, stage.index),
        throughput_criterion(stage, rate.achieved) if rate.achieved else Criterion("tasks", ">", 0, "", stage.index),
        0.7,
    )  # fmt: skip


def _fewer(facts: Facts, stage: Stage, others: float) -> int | None:
    """One replica per core the other stages leave free (the cores they burnt, measured over the execution),
    if that is fewer and still fits the nodes with each replica's reservation kept."""
    wanted = max(1, round(facts.cpus - others))  # a core mostly free counts
    if wanted >= capacity.pool_size(stage.knobs):
        return None
    changed = {stage.index: stage.knobs.replace(concurrency=wanted)}
    return wanted if capacity.as_run(facts.run, changed).fits(capacity.rooms(facts.run)) else None
