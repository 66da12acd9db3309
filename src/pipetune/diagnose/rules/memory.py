"""Workers OOM-killed, and the object store full or spilling.

Guide (memory-issue tree): workers killed -> first raise num_cpus (0.5 -> 1.0 -> 2.0) to run fewer at once,
then batch_size down. Where the kills measured the room on the node and the stage's memory per row
(``task_memory``), the batch that fits as many tasks at once as ran goes first: it keeps every slot, where a
larger reservation gives half of them up. Object store full -> num_cpus up, then the object-store fraction,
then block size. Verified by "no more crashes" and no spilling.
"""

from __future__ import annotations

from pipetune.diagnose import task_memory
from pipetune.diagnose.capacity import BATCH_MEMORY_SHARE
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.fusion import downstream_of, split_by_reservation
from pipetune.diagnose.rules._common import doubled, finding, halved_batch
from pipetune.model import EventKind, Operator, Run, Stage


def check_oom(facts: Facts) -> list[Finding]:
    kills = facts.run.events_of(EventKind.OOM_KILL)
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
            [
                Evidence("workers OOM-killed (raylet log)", float(len(kills))),
                *_room_evidence(facts, _sizing(facts, stage)),
            ],
            "tasks running side by side need more memory than the node has; Ray kills and retries them",
            _oom_fix(facts, stage, op.num_cpus if op else 1.0),
            Criterion("oom_kills", "==", 0, "no more crashes (no OOM kills)"),
            0.9,
        )
    ]


def _sizing(facts: Facts, stage: Stage | None) -> Stage | None:
    """The stage whose batches size the memory of the tasks ``stage`` ran in (``task_memory.sizing_stage``)."""
    op = facts.operator_of(stage.index) if stage else None
    return task_memory.sizing_stage(facts.run, op) if op else stage


def _room_evidence(facts: Facts, stage: Stage | None) -> list[Evidence]:
    limit = task_memory.limit_of(facts, stage) if stage is not None else None
    if limit is None:
        return []
    return [
        Evidence("memory its tasks may hold on the node (threshold less other use)", limit.room / 2**30, " GiB"),
        Evidence("its tasks running at once when killed", float(limit.at_once)),
        Evidence("peak memory per task (USS)", limit.peak / 2**30, " GiB"),
    ]


def _oom_fix(facts: Facts, stage: Stage | None, num_cpus: float) -> Fix | None:
    if stage is None:
        return None
    sizing = _sizing(facts, stage) or stage
    fits = task_memory.batch_that_fits(facts, sizing, BATCH_MEMORY_SHARE)
    if fits is not None:  # as many tasks at once, each with fewer rows
        return Fix("batch_size", sizing.knobs.batch_size, fits, Level.BATCH, sizing.index)
    return guide_oom_fix(facts, stage, num_cpus)


def guide_oom_fix(facts: Facts, stage: Stage, num_cpus: float) -> Fix:
    """The guide's order against kills, without a measured room: a larger reservation (fewer tasks at once)
    while one task does not take the whole node, then half the batch, then smaller blocks."""
    if num_cpus < facts.cpus:
        return Fix("num_cpus", num_cpus, min(doubled(max(num_cpus, 0.5)), facts.cpus), Level.PARALLELISM, stage.index)
    if stage.knobs.batch_size:  # already one task per node: the batch itself must shrink
        return Fix("batch_size", stage.knobs.batch_size, halved_batch(stage.knobs.batch_size), Level.BATCH, stage.index)
    return _smaller_blocks()


def _smaller_blocks() -> Fix:
    """The guide's last memory step: smaller blocks, half of Ray's default ``target_max_block_size`` (128 MiB)."""
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
    spills = facts.run.events_of(EventKind.SPILL)
    if not spills:
        return []
    holder, held = _biggest_holder(facts)
    split = _split_neighbour(facts, holder) if holder else None
    stage = facts.run.stage(split[0].stages[0]) if split else _held_stage(facts, holder)
    evidence = [Evidence("spilled (raylet log)", spilled_mib(facts.run), " MiB", 0.0)]
    if holder and held:
        evidence.append(Evidence(f"object store held by {holder.name} (peak)", held / 2**20, " MiB"))
    return [
        finding(
            facts,
            "object-store",
            "object store full: blocks spilled to disk",
            stage,
            evidence,
            _SPLIT_CAUSE.format(*(op.name for op in split)) if split else _CAUSE,
            _fusing_fix(*split) if split else _throttle_fix(facts, stage),
            Criterion("spilled_mib", "==", 0, "no spilling"),
            0.7,
        )
    ]


_CAUSE = "a stage produces blocks faster than the rest of the pipeline consumes them"
_SPLIT_CAUSE = (
    "{} and {} run apart only because their num_cpus differ (Ray fuses neighbouring map operators with equal "
    "resources), so every block between them goes through the object store; reserved alike, they fuse and those "
    "blocks never leave the task"
)


def _biggest_holder(facts: Facts) -> tuple[Operator | None, float]:
    """The operator that held the most object-store memory at any sample (the over-producer), and that peak."""
    peak: dict[str, float] = {}
    for s in facts.run.op_samples:
        peak[s.source] = max(peak.get(s.source, 0.0), s.values.get("obj_store_bytes", 0.0))
    uid = max(peak, key=lambda u: peak[u]) if peak else None
    return next((o for _, o in facts.run.operators() if o.uid == uid), None), peak.get(uid or "", 0.0)


def _split_neighbour(facts: Facts, holder: Operator) -> tuple[Operator, Operator] | None:
    """(the operator to re-reserve, the one to match) where the holder and the operator after it are kept apart
    only by their reservations and the lower one is a single stage whose call takes num_cpus."""
    down = downstream_of(facts.run, holder)
    if down is None or not split_by_reservation(facts.run, holder, down):
        return None
    low, high = sorted((holder, down), key=lambda o: o.num_cpus)
    settable = len(low.stages) == 1 and facts.run.stage(low.stages[0]).accepts("num_cpus")
    return (low, high) if settable and low.num_cpus < high.num_cpus else None


def _fusing_fix(low: Operator, high: Operator) -> Fix:
    """The guide's "num_cpus up" for spilling, taken to the neighbour's reservation so the two fuse."""
    return Fix("num_cpus", low.num_cpus, high.num_cpus, Level.PARALLELISM, low.stages[0])


def _held_stage(facts: Facts, holder: Operator | None) -> Stage | None:
    lead = facts.lead_of(holder) if holder else None
    return facts.run.stage(lead) if lead is not None else facts.bottleneck_stage()


def _throttle_fix(facts: Facts, stage: Stage | None) -> Fix | None:
    """The guide's spilling fix: num_cpus up, fewer tasks at once; a call that takes no num_cpus (``range``,
    ``from_items`` ...) gets the guide's last step instead, smaller blocks."""
    op = facts.operator_of(stage.index) if stage else None
    if stage is None or op is None:
        return None
    if not stage.accepts("num_cpus"):
        return _smaller_blocks()
    return Fix("num_cpus", op.num_cpus, doubled(op.num_cpus), Level.PARALLELISM, stage.index)


def spilled_mib(run: Run) -> float:
    """MiB the raylet logged as spilled over the whole run (each spill event's message starts with its MiB)."""
    return sum(_mib(e.message) for e in run.events_of(EventKind.SPILL))


def _mib(message: str) -> float:
    head = message.split(" ", 1)[0]
    return float(head) if head.replace(".", "", 1).isdigit() else 0.0
