"""How Ray fuses stages into operators, and which of a fused operator's stages its time went to. Pure."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping

from pipetune.model import Knobs, Operator, OperatorStats, Run, StageKind

DEFAULT_NUM_CPUS = 1.0  # Ray Data reserves 1 CPU per map task and per actor unless told otherwise (Ray's docs)


def cpus_of(knobs: Knobs) -> float:
    return DEFAULT_NUM_CPUS if knobs.num_cpus is None else knobs.num_cpus


def lead_stage(run: Run, op: Operator) -> int | None:
    """Of a fused operator's stages, the one its time went to (measured), else its last UDF stage."""
    if not op.stages:
        return None
    stats = run.stats_of(op.uid)
    times = stage_times(op, stats) if stats else None
    if times:
        return max(zip(times, op.stages, strict=True))[1]
    kinds = {s.index: s.kind for s in run.stages}
    udf_stages = [i for i in op.stages if kinds.get(i) not in (StageKind.READ, StageKind.WRITE)]
    return (udf_stages or list(op.stages))[-1]


def stage_times(op: Operator, stats: OperatorStats) -> tuple[float, ...] | None:
    """Busy seconds per stage of a fused operator, or None when Ray did not split them.

    Ray times each function of the chain; a write adds a step of its own at the end (block conversion),
    so surplus steps belong to the last stage.
    """
    n, times = len(op.stages), stats.stage_time_s
    if n == 0 or len(times) < n or sum(times) <= 0:
        return None
    return (*times[: n - 1], sum(times[n - 1 :]))


_MAP_KINDS = (StageKind.READ, StageKind.FILTER, StageKind.TRANSFORM, StageKind.ACTOR, StageKind.WRITE)


def pieces_after(op: Operator, stage: int | Collection[int], num_cpus: float) -> int:
    """How many operators the fused ``op`` becomes when its ``stage`` (or stages) reserve ``num_cpus``: Ray fuses
    only stages whose remote arguments are equal (``are_remote_args_compatible``), so the stages that move split
    from the neighbours that do not (1 when they keep the operator's reservation, or move all together)."""
    moved = {stage} if isinstance(stage, int) else set(stage)
    if not moved & set(op.stages) or num_cpus == op.num_cpus:
        return 1
    sides = [i in moved for i in op.stages]
    return 1 + sum(a != b for a, b in itertools.pairwise(sides))


def downstream_of(run: Run, op: Operator) -> Operator | None:
    """The operator of the same execution that takes ``op``'s output (the one holding the next stage)."""
    return _next_to(run, op, lambda o: o.stages[0] == op.stages[-1] + 1)


def upstream_of(run: Run, op: Operator) -> Operator | None:
    """The operator of the same execution whose output ``op`` takes (the one holding the stage before)."""
    return _next_to(run, op, lambda o: o.stages[-1] == op.stages[0] - 1)


def _next_to(run: Run, op: Operator, adjacent: Callable[[Operator], bool]) -> Operator | None:
    execution = next((e for e in run.executions if op in e.operators), None)
    if execution is None or not op.stages:
        return None
    return next((o for o in execution.operators if o.stages and adjacent(o)), None)


def fuses_at(run: Run, op: Operator, num_cpus: float) -> bool:
    """Whether reserving ``num_cpus`` for ``op`` would fuse it with a neighbour that only its reservation keeps
    apart today (a change whose effect the operators' measured rates cannot predict: the two become one)."""
    up, down = upstream_of(run, op), downstream_of(run, op)
    before = up is not None and up.num_cpus == num_cpus and split_by_reservation(run, up, op)
    after = down is not None and down.num_cpus == num_cpus and split_by_reservation(run, op, down)
    return before or after


def split_by_reservation(run: Run, up: Operator, down: Operator) -> bool:
    """Whether only their reservations keep two neighbouring map operators apart.

    Ray fuses a task operator into the map operator after it (tasks or actors) when their remote arguments are
    equal, an unset ``num_cpus`` counting as 1 (Ray: ``OperatorFusionRule._can_fuse``,
    ``are_remote_args_compatible``); apart, every block between them goes through the object store.
    """
    kinds = {s.index: s.kind for s in run.stages}
    maps = all(kinds.get(i) in _MAP_KINDS for i in (*up.stages, *down.stages))
    return maps and up.compute == "tasks" and (up.num_cpus, up.num_gpus) != (down.num_cpus, down.num_gpus)


def fused_into_pool(run: Run, op: Operator, knobs: Mapping[int, Knobs]) -> set[int]:
    """The stages of the actor pool's operator ``op`` that stay fused into it with ``knobs``: Ray fuses a stage
    into the one after it only while their reservations are equal (``are_remote_args_compatible``), so from
    the first one upstream of the actor stage that reserves otherwise, the stages before it run as tasks."""
    kinds = {s.index: s.kind for s in run.stages}
    actor = next((i for i in reversed(op.stages) if kinds.get(i) is StageKind.ACTOR), None)
    if actor is None:
        return set(op.stages)
    fused = {i for i in op.stages if i >= actor}
    for i in reversed([i for i in op.stages if i < actor]):
        if not _fuse_still(run, knobs, i, actor):
            break
        fused.add(i)
    return fused


def _fuse_still(run: Run, knobs: Mapping[int, Knobs], stage: int, actor: int) -> bool:
    """As recorded where neither changed (Ray fused them); else whether their reservations are equal."""
    if knobs[stage] == run.stage(stage).knobs and knobs[actor] == run.stage(actor).knobs:
        return True
    held = [(cpus_of(knobs[i]), knobs[i].num_gpus or 0.0) for i in (stage, actor)]
    return held[0] == held[1]
