"""Workers OOM-killed, and the object store full or spilling.

Guide (memory-issue tree): workers killed -> first raise num_cpus (0.5 -> 1.0 -> 2.0) to run fewer at once,
then batch_size down; object store full -> num_cpus up, then the object-store fraction, then block size.
Verified by "no more crashes" and no spilling.
"""

from __future__ import annotations

from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import doubled, finding, halved_batch
from pipetune.model import EventKind, Run, Stage


def check_oom(facts: Facts) -> list[Finding]:
    kills = [e for e in facts.run.events if e.kind is EventKind.OOM_KILL]
    if not kills:
        return []
    stage = _stage_named(facts, " ".join(e.message for e in kills)) or facts.bottleneck_stage()
    op = facts.operator_of(stage.index) if stage else None
    return [
        finding(
            facts,
            "workers-oom",
            "workers killed: out of memory",
            stage,
            [Evidence("workers OOM-killed (raylet log)", float(len(kills)))],
            "tasks running side by side need more memory than the node has; Ray kills and retries them",
            _oom_fix(facts, stage, op.num_cpus if op else 1.0),
            Criterion("oom_kills", "==", 0, "no more crashes (no OOM kills)"),
            0.9,
        )
    ]


def _oom_fix(facts: Facts, stage: Stage | None, num_cpus: float) -> Fix | None:
    if stage is None:
        return None
    if num_cpus < facts.cpus:
        return Fix("num_cpus", num_cpus, min(doubled(max(num_cpus, 0.5)), facts.cpus), Level.PARALLELISM, stage.index)
    if stage.knobs.batch_size:  # already one task per node: the batch itself must shrink
        return Fix("batch_size", stage.knobs.batch_size, halved_batch(stage.knobs.batch_size), Level.BATCH, stage.index)
    return Fix("ctx.target_max_block_size", "128MiB", "64MiB", Level.CONTEXT)


def _stage_named(facts: Facts, text: str) -> Stage | None:
    """The stage whose operator a log message names (Ray names tasks after their operator)."""
    for _, op in facts.run.operators():
        if op.name in text or any(part in text for part in op.name.split("->")):
            lead = facts.lead_of(op)
            if lead is not None:
                return facts.run.stage(lead)
    return None


def check_spill(facts: Facts) -> list[Finding]:
    spills = [e for e in facts.run.events if e.kind is EventKind.SPILL]
    if not spills:
        return []
    stage = _biggest_holder(facts)
    op = facts.operator_of(stage.index) if stage else None
    fix = Fix("num_cpus", op.num_cpus, doubled(op.num_cpus), Level.PARALLELISM, stage.index) if stage and op else None
    return [
        finding(
            facts,
            "object-store",
            "object store full: blocks spilled to disk",
            stage,
            [Evidence("spilled (raylet log)", spilled_mib(facts.run), " MiB", 0.0)],
            "a stage produces blocks faster than the rest of the pipeline consumes them",
            fix,
            Criterion("spilled_mib", "==", 0, "no spilling"),
            0.7,
        )
    ]


def _biggest_holder(facts: Facts) -> Stage | None:
    """The stage whose operator held the most object-store memory at any sample: the over-producer."""
    peak: dict[str, float] = {}
    for s in facts.run.op_samples:
        peak[s.source] = max(peak.get(s.source, 0.0), s.values.get("obj_store_bytes", 0.0))
    if not peak:
        return facts.bottleneck_stage()
    uid = max(peak, key=lambda u: peak[u])
    op = next((o for _, o in facts.run.operators() if o.uid == uid), None)
    lead = facts.lead_of(op) if op else None
    return facts.run.stage(lead) if lead is not None else None


def spilled_mib(run: Run) -> float:
    """MiB the raylet logged as spilled over the whole run (each spill event's message starts with its MiB)."""
    return sum(_mib(e.message) for e in run.events if e.kind is EventKind.SPILL)


def _mib(message: str) -> float:
    head = message.split(" ", 1)[0]
    return float(head) if head.replace(".", "", 1).isdigit() else 0.0
