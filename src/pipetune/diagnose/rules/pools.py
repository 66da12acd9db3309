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
    others = _others_cores(facts, stage)
    gate = max(facts.cpus - others, 0.0) * th.BUSY_CPU_PCT.value / 100
    if replicas <= facts.cpus or burnt < gate or burnt < others:
        # no more replicas than cores; or they did not fill the cores left to them (they wait); or the other
        # stages burn more than the pool, so a full machine says nothing about the pool (it may be waiting)
        return None
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


def _others_cores(facts: Facts, stage: Stage) -> float:
    """What the other stages burnt over the execution, in cores. Replicas that contend for the cores fill the
    rest, so the pool's gate is measured against what is left, not against all the cores (a pool sharing 2
    cores with a busy reader can never burn 80% of both)."""
    execution = facts.execution
    wall = (execution.ended_t or execution.started_t) - execution.started_t if execution else 0.0
    if execution is None or wall <= 0:
        return 0.0
    others = [s for s in execution.stats if stage.index not in next((o.stages for o in execution.operators
                                                                      if o.uid == s.uid), ())]  # fmt: skip
    return sum(s.cpu_s for s in others) / wall
