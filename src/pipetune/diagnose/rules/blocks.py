"""Block sizing: too few blocks (the slowest stage ran fewer tasks than it had slots, so CPUs sat idle), or too
many (an operator's tasks were mostly Ray's own per-task overhead, dispatched about one slot-ful at a time).

Ray Data 2.60's parquet reader packs small files into one block (it ignores override_num_blocks), so a
whole pipeline can run as a single task. Guide: "check the dataset.stats() to see if the block sizing
looks right", "use repartition() for better distribution", and for heavy work "minimize scheduling overhead".
"""

from __future__ import annotations

from pipetune.diagnose import capacity
from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import blocks_for, finding
from pipetune.model import Operator, Stage, StageKind


def check(facts: Facts) -> list[Finding]:
    stage = facts.bottleneck_stage()
    rate = facts.bottleneck.rate if facts.bottleneck else None
    if stage is None or rate is None:
        return []
    op = facts.operator_of(stage.index)
    stats = facts.run.stats_of(op.uid) if op else None
    if op is None or stats is None:
        return []
    by_resources = min(facts.cpus / op.num_cpus if op.num_cpus else facts.cpus, op.max_concurrency or 1e9)
    if stats.task_s.count >= min(by_resources, 2 * max(facts.cpus, 1)) or by_resources < 2:
        return []
    source, blocks = _source_of(facts, stage), blocks_for(facts.cpus)
    if not _worth_it(facts, source, blocks, min(by_resources, blocks)):
        return []
    return [
        finding(
            facts,
            "few-blocks",
            "too few blocks: the slowest stage could not run in parallel",
            stage,
            [
                Evidence("tasks the stage ran", float(stats.task_s.count)),
                Evidence("tasks its resources allow at once", by_resources),
                *([] if stats.running else [Evidence("blocks it received", float(stats.blocks))]),
            ],
            f"{source.label} produced {stats.task_s.count} task(s) of work for a stage that could run "
            f"{by_resources:.0f} at once",
            _fix(source, blocks),
            Criterion(
                "tasks", ">=", min(by_resources, blocks), "as many tasks as the stage can run at once", stage.index
            ),
            0.9,
        )
    ]


def _worth_it(facts: Facts, source: Stage, blocks: int, slots: float) -> bool:
    """The most more blocks can save is the work downstream of the source spread over the slots the stage could
    use, less what the tasks they add cost in Ray's per-task overhead and the workers they need started (both
    measured on the run: on this machine a 3.9 s stage read as one block ran no faster as 8 blocks, its 14 added
    tasks and its second worker costing what the second core saved).
    Below twice the noise (NOISE_PCT) of the run, no measurement could tell the fix from noise."""
    downstream = _downstream(facts, source)
    busy = sum(s.busy_s for s in facts.execution.stats if s.uid in downstream) if facts.execution else 0.0
    cost = capacity.added_tasks_s(facts, {uid: blocks for uid in downstream})
    workers = (capacity.added_workers_s(facts, o, blocks) for o in facts.operators if o.uid in downstream)
    cost += max(workers, default=0.0)  # the operators share the workers: the one that needs most starts them
    saved = busy * (1 - 1 / max(slots, 1.0)) - cost
    return bool(facts.run.wall_s) and saved > th.MEASURABLE_SHARE.value * (facts.run.wall_s or 0.0)


def _downstream(facts: Facts, source: Stage) -> set[str]:
    """The operators more blocks from ``source`` would give more tasks: every one that runs it or a later stage."""
    return {o.uid for o in facts.operators if any(i >= source.index for i in o.stages)}


def _source_of(facts: Facts, stage: Stage) -> Stage:
    """The read that feeds the stage: the last read built before it."""
    reads = [s for s in facts.run.stages if s.kind is StageKind.READ and s.index <= stage.index]
    return reads[-1] if reads else stage


def _fix(source: Stage, blocks: int) -> Fix:
    if _settable(source):
        return Fix("override_num_blocks", source.knobs.override_num_blocks, blocks, Level.PARALLELISM, source.index)
    # read_parquet (V2) ignores override_num_blocks: split its output instead
    return Fix("repartition", source.knobs.repartition, blocks, Level.PARALLELISM, source.index)


def check_many(facts: Facts) -> list[Finding]:
    """Operators whose tasks spent most of their time on Ray's side (submitted to finished, less the task's own
    time on its worker), one after another: what fewer, larger blocks at the source would save."""
    tasks = (_overhead_bound(facts, op) for op in facts.operators if op.compute == "tasks")
    found = [f for f in tasks if f is not None]
    by_fix = {f.fix.setting if f.fix else "": f for f in sorted(found, key=lambda f: f.gain)}
    return list(by_fix.values())  # one source's blocks, one finding: where fewer blocks save the most


def _overhead_bound(facts: Facts, op: Operator) -> Finding | None:
    spans = [t for t in facts.spans_of(op) if t.worker_s is not None]
    fewer, lead = blocks_for(facts.cpus), facts.lead_of(op)
    saved = capacity.fewer_blocks_saved_s(facts, op, fewer)  # the overhead of the tasks fewer blocks would not run
    wall = facts.run.wall_s or 0.0
    if lead is None or saved <= 0 or saved < th.MEASURABLE_SHARE.value * wall:
        return None
    stage = facts.run.stage(lead)
    source = _source_of(facts, stage)
    if not _settable(source):
        return None
    worked, overhead = capacity.work_share(spans), capacity.task_overhead_s(facts, op)
    at_once = capacity.most_at_once(spans)
    return finding(
        facts, "many-blocks", "too many blocks: Ray's per-task overhead outweighs the work of each task", stage,
        [Evidence("tasks the operator ran", float(len(spans)), "", float(fewer), "blocks_for: several per CPU"),
         Evidence("share of task time spent working", worked * 100, "%", th.TASK_WORK_SHARE.value * 100,
                  th.TASK_WORK_SHARE.source),
         Evidence("Ray's overhead per task (submitted to finished, less worker time)", overhead, " s"),
         Evidence("most of its tasks at once", float(at_once)),
         Evidence("overhead fewer blocks would save", saved, " s", th.MEASURABLE_SHARE.value * wall,
                  th.MEASURABLE_SHARE.source)],
        f"{source.label} made {len(spans)} blocks; each task of {op.name} did {worked:.0%} of its time's work and "
        f"waited {overhead * 1000:,.0f} ms on Ray, about {at_once} at a time",
        Fix("override_num_blocks", source.knobs.override_num_blocks, fewer, Level.PARALLELISM, source.index),
        Criterion("tasks", "<=", float(fewer), "no more tasks than the CPUs need", stage.index),
        0.6,
        gain=capacity.time_saved_speedup(facts, saved),
    )  # fmt: skip


def _settable(source: Stage) -> bool:
    """A source whose block count a knob sets: read_parquet (V2) packs files and ignores override_num_blocks."""
    return source.kind is StageKind.READ and source.method != "read_parquet"
