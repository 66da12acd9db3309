"""One stage slow (imbalanced): the bottleneck ran near its capacity while other stages had plenty spare.

Guide: adjust that stage's num_cpus; an empty output queue -> lower num_cpus (more parallelism); a large
input queue -> more parallelism for it, or less for the upstream. Verified by balanced progress.
Here the choice is made from measured service rates: which limit binds the stage's slots.
"""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate
from pipetune.diagnose.capacity import size_pool
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import finding, throughput_criterion
from pipetune.model import Operator, Stage


def check(facts: Facts) -> list[Finding]:
    stage, b = facts.bottleneck_stage(), facts.bottleneck
    if stage is None or b is None or b.rate.headroom >= th.SATURATED_HEADROOM.value:
        return []
    others = [r.headroom for r in facts.rates.values() if r.uid != b.rate.uid]
    if not others or min(others) < 2 * th.SATURATED_HEADROOM.value:
        return []  # nothing much faster: the pipeline is balanced, not one stage slow
    op = facts.operator_of(stage.index)
    if op is None:
        return []
    evidence = [
        Evidence(
            "headroom (capacity / achieved)",
            b.rate.headroom,
            "x",
            th.SATURATED_HEADROOM.value,
            th.SATURATED_HEADROOM.source,
        ),
        Evidence("next stage's headroom", min(others), "x"),
        Evidence("blocks queued at its input", b.rate.mean_inqueue, "", th.LARGE_INQUEUE_BLOCKS.value),
        Evidence("cores burnt per running task", b.rate.cores_per_task),
    ]
    fix, cause = _choose(facts, stage, op, b.rate)
    return [
        finding(
            facts,
            "slow-stage",
            "one stage slow: the others wait for it",
            stage,
            evidence,
            cause,
            fix,
            throughput_criterion(stage, b.rate.achieved),
            0.75 if fix else 0.5,
        )
    ]


def _choose(facts: Facts, stage: Stage, op: Operator, rate: OperatorRate) -> tuple[Fix | None, str]:
    reserved_slots = facts.cpus / op.num_cpus if op.num_cpus else math.inf
    full = reserved_slots <= rate.slots + th.SLOT_SLACK.value
    over = op.num_cpus > 0 and rate.cores_per_task < op.num_cpus * th.USES_RESERVATION.value and full
    if over and stage.accepts("num_cpus"):
        step = th.CPU_STEP.value
        proposed = max(step, math.ceil(rate.cores_per_task / step) * step)
        if proposed < op.num_cpus:
            return (
                Fix("num_cpus", op.num_cpus, proposed, Level.PARALLELISM, stage.index),
                f"each task reserves {op.num_cpus:g} CPU but burns {rate.cores_per_task:.2f}: fewer run than fit",
            )
    if op.compute == "actors" and op.max_concurrency and op.max_concurrency <= rate.slots + th.SLOT_SLACK.value:
        return _resized(facts, stage, op)
    return (
        None,
        f"it burns {rate.cores_per_task:.2f} cores per task on every slot it can get: the hardware is the "
        "limit (the tune command searches the rest)",
    )


def _resized(facts: Facts, stage: Stage, op: Operator) -> tuple[Fix | None, str]:
    """The pool at the size the pool model finds fastest, with the smaller reservation that lets it fit."""
    sized = size_pool(facts)
    if sized is None or sized.stage != stage.index:
        return (None, f"its pool of {op.max_concurrency} actor(s) is as large as the model finds worth it")
    also = (Fix("num_cpus", sized.current, sized.share, Level.PARALLELISM, stage.index),)
    fix = Fix("concurrency", sized.now, sized.actors, Level.PARALLELISM, stage.index,
              also if sized.share < sized.current else ())  # fmt: skip
    return fix, sized.why
