"""Too few blocks: the slowest stage ran fewer tasks than it had slots, so CPUs sat idle.

Ray Data 2.60's parquet reader packs small files into one block (it ignores override_num_blocks), so a
whole pipeline can run as a single task. Guide: "check the dataset.stats() to see if the block sizing
looks right" and "use repartition() for better distribution".
"""

from __future__ import annotations

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import blocks_for, finding
from pipetune.model import Stage, StageKind


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
    source = _source_of(facts, stage)
    if not _worth_it(facts, _downstream_busy_s(facts, source), min(by_resources, blocks_for(facts.cpus))):
        return []
    blocks = blocks_for(facts.cpus)
    return [
        finding(
            facts,
            "few-blocks",
            "too few blocks: the slowest stage could not run in parallel",
            stage,
            [
                Evidence("tasks the stage ran", float(stats.task_s.count)),
                Evidence("tasks its resources allow at once", by_resources),
                Evidence("blocks it received", float(stats.blocks)),
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


def _worth_it(facts: Facts, busy_s: float, slots: float) -> bool:
    """The most more blocks can save is the work downstream of the source spread over the slots the stage could
    use: below twice the noise (NOISE_PCT) of the run, no measurement could tell the fix from noise, and each
    extra task costs its own scheduling (measured: a 0.4 s stage in a 3 s run ran 30% slower in 8 blocks)."""
    saved = busy_s * (1 - 1 / max(slots, 1.0))
    return bool(facts.run.wall_s) and saved > th.MEASURABLE_SHARE.value * (facts.run.wall_s or 0.0)


def _downstream_busy_s(facts: Facts, source: Stage) -> float:
    """The work more blocks from ``source`` would spread: every operator that runs a stage after it."""
    execution = facts.execution
    if execution is None:
        return 0.0
    ops = {o.uid for o in execution.operators if any(i > source.index for i in o.stages)}
    return sum(s.busy_s for s in execution.stats if s.uid in ops)


def _source_of(facts: Facts, stage: Stage) -> Stage:
    """The read that feeds the stage: the last read built before it."""
    reads = [s for s in facts.run.stages if s.kind is StageKind.READ and s.index <= stage.index]
    return reads[-1] if reads else stage


def _fix(source: Stage, blocks: int) -> Fix:
    if source.kind is StageKind.READ and source.method != "read_parquet":
        return Fix("override_num_blocks", source.knobs.override_num_blocks, blocks, Level.PARALLELISM, source.index)
    # read_parquet (V2) ignores override_num_blocks: split its output instead
    return Fix("repartition", source.knobs.repartition, blocks, Level.PARALLELISM, source.index)
