"""One stage slow (imbalanced): the bottleneck ran near its capacity while other stages had plenty spare.

Guide: adjust that stage's num_cpus; an empty output queue -> lower num_cpus (more parallelism); a large
input queue -> more parallelism for it, or less for the upstream. Verified by balanced progress.
Here the choice is made from measured service rates: which limit binds the stage's slots. Where no stage ran
near its capacity by the rates (each was counted on every CPU, yet the stages' reservations shared them), the
queues name the slow stage as the guide reads them: blocks waiting at its input, none at its output. Its fix
is then a smaller reservation, for it if its tasks wait rather than burn, else for the stages upstream that
hold CPUs they do not burn; the pipeline model weighs each (reservations included) and the best one is
offered.
"""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.bottleneck import OperatorRate
from pipetune.diagnose.capacity import fix_speedup, size_pool
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Evidence, Finding, Fix, Level
from pipetune.diagnose.fusion import downstream_of
from pipetune.diagnose.rules._common import (
    finding,
    lead_stages,
    lowered_fix,
    over_reserving,
    throughput_criterion,
)
from pipetune.model import Operator, Stage


def check(facts: Facts) -> list[Finding]:
    return _by_rates(facts) or _by_queues(facts)


def _by_rates(facts: Facts) -> list[Finding]:
    stage, b = facts.bottleneck_stage(), facts.bottleneck
    if stage is None or b is None or b.rate.headroom >= th.SATURATED_HEADROOM.value:
        return []
    others = [r.headroom for r in facts.rates.values() if r.uid != b.rate.uid]
    if not others or min(others) < th.LIMITING_HEADROOM.value:
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
    over = op.num_cpus > 0 and over_reserving(facts, stage) and full
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


def _by_queues(facts: Facts) -> list[Finding]:
    """The task stage with blocks queued at its input and none at its output whose smaller reservation (its
    own, or an upstream stage's) the model finds worth the most, if that is beyond the noise."""
    best: tuple[float, Stage, Fix, str] | None = None
    for stage in lead_stages(facts):
        choice = _queued_fix(facts, stage)
        if choice is not None and (best is None or choice[0] > best[0]):
            best = (*choice[:1], stage, *choice[1:])
    if best is None or best[0] < 1 + th.MEASURABLE_SHARE.value:
        return []
    gain, stage, fix, cause = best
    rate = facts.rate_of(stage.index)
    assert rate is not None  # a lead stage has its rate
    evidence = [
        Evidence("blocks queued at its input", rate.mean_inqueue, "", th.LARGE_INQUEUE_BLOCKS.value,
                 th.LARGE_INQUEUE_BLOCKS.source),
        Evidence("blocks queued at its output", _out_queue(facts, stage), "", 1.0, "an empty queue"),
        Evidence("cores burnt per running task", rate.cores_per_task),
        Evidence("tasks it ran at once", _at_once(facts, stage)),
    ]  # fmt: skip
    return [finding(facts, "slow-stage", "one stage slow: blocks wait at its input, none at its output", stage,
                    evidence, cause, fix, throughput_criterion(stage, rate.achieved), 0.6, gain=gain)]  # fmt: skip


def _queued_fix(facts: Facts, stage: Stage) -> tuple[float, Fix, str] | None:
    op, rate = facts.operator_of(stage.index), facts.rate_of(stage.index)
    if op is None or rate is None or op.compute == "actors" or rate.mean_inqueue < th.LARGE_INQUEUE_BLOCKS.value:
        return None
    if _out_queue(facts, stage) >= 1.0:
        return None  # its output waits too: what limits is further down
    candidates = [stage] if over_reserving(facts, stage) else _upstream_holders(facts, stage)
    fixes = [(fix_speedup(facts, fix), fix, s) for s in candidates if (fix := lowered_fix(facts, s)) is not None]
    if not fixes:
        return None
    gain, fix, holder = max(fixes, key=lambda f: f[0])
    return gain, fix, _cause(facts, stage, holder)


def _upstream_holders(facts: Facts, stage: Stage) -> list[Stage]:
    """The task stages before this one whose tasks burn under the share of their reservation they use."""
    mine = facts.operator_of(stage.index)
    before = [(s, facts.operator_of(s.index)) for s in lead_stages(facts) if s.index < stage.index]
    tasks = [s for s, op in before if op is not None and op != mine and op.compute != "actors"]
    return [s for s in tasks if over_reserving(facts, s)]


def _cause(facts: Facts, slow: Stage, holder: Stage) -> str:
    op, rate = facts.operator_of(holder.index), facts.rate_of(holder.index)
    burn = f"reserve {op.num_cpus:g} CPU and burn {rate.cores_per_task:.2f}" if op and rate else "wait"
    if holder == slow:
        return f"its tasks {burn}: the reservation, not the work, keeps it to {_at_once(facts, slow):.2g} at once"
    return (f"{holder.key}'s tasks {burn} while they run beside it: they hold CPUs this stage's tasks could use "
            "(the guide: decrease upstream num_cpus)")  # fmt: skip


def _out_queue(facts: Facts, stage: Stage) -> float:
    """Blocks waiting at the input of the operator after this stage's (0 for the last)."""
    op = facts.operator_of(stage.index)
    after = downstream_of(facts.run, op) if op is not None else None
    rate = facts.rates.get(after.uid) if after is not None else None
    return rate.mean_inqueue if rate is not None else 0.0


def _at_once(facts: Facts, stage: Stage) -> float:
    """Its tasks in flight on average while it ran (from the spans), else the slots the rates give it."""
    op, rate = facts.operator_of(stage.index), facts.rate_of(stage.index)
    spans = facts.spans_of(op) if op is not None else []
    if len(spans) < 2:
        return rate.slots if rate is not None else 0.0
    first, last = min(t.submitted_t for t in spans), max(t.finished_t for t in spans)
    return sum(t.finished_t - t.submitted_t for t in spans) / max(last - first, 1e-9)
