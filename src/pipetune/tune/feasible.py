"""Can Ray schedule these settings at all? Checked before a trial runs, never learnt by running it.

Pure. An actor pool holds its CPUs (and GPUs) for the whole execution; task stages need at least one task's
worth of what is left, or the pipeline waits forever. That is the classic hang on a small machine: a pool of
actors reserving every CPU while the read tasks that feed it cannot start. A task or actor that asks for more
than the largest node has never starts either. The one home of "does it fit" is ``diagnose.capacity``; of
"does its memory fit", where a run's OOM kills measured it, ``diagnose.task_memory``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipetune.diagnose import MEMORY_SHRINK_ABOVE, Limit, concurrency_cap, cpus_of, reservations, rooms, usable_slots
from pipetune.model import Knobs, Operator, Run, Stage
from pipetune.settings import Settings


@dataclass(frozen=True)
class Resources:
    cpus: float
    gpus: float
    largest_node_cpus: float
    largest_node_gpus: float

    @staticmethod
    def of(run: Run) -> Resources:
        nodes = run.env.nodes
        return Resources(
            cpus=run.env.cluster_resources.get("CPU", 0.0),
            gpus=run.env.cluster_resources.get("GPU", 0.0),
            largest_node_cpus=max((n.resources.get("CPU", 0.0) for n in nodes), default=0.0),
            largest_node_gpus=max((n.resources.get("GPU", 0.0) for n in nodes), default=0.0),
        )


def unschedulable(run: Run, overrides: Settings) -> str | None:
    """Why Ray could not run the pipeline with these settings, or None when it can."""
    res = Resources.of(run)
    if res.cpus <= 0:
        return None  # nothing known about the cluster: do not guess
    stages = [(s, overrides.knobs_of(s)) for s in run.stages]
    for stage, knobs in stages:
        too_big = _too_big(stage, knobs, res)
        if too_big:
            return too_big
    return _starved(run, stages)


def _too_big(stage: Stage, knobs: Knobs, res: Resources) -> str | None:
    cpus = cpus_of(knobs)
    if res.largest_node_cpus and cpus > res.largest_node_cpus:
        return f"stage {stage.key} asks {cpus:g} CPUs per task; the largest node has {res.largest_node_cpus:g}"
    gpus = knobs.num_gpus or 0.0
    if gpus > res.largest_node_gpus:
        return f"stage {stage.key} asks {gpus:g} GPUs per task; the largest node has {res.largest_node_gpus:g}"
    return None


def _starved(run: Run, stages: list[tuple[Stage, Knobs]]) -> str | None:
    """Placed node by node, as Ray's scheduler would: cluster totals hide a pool spread so thin that no node
    has a whole CPU left for a read task."""
    return reservations(stages).why_not(rooms(run))


def over_memory(run: Run, overrides: Settings, limits: Mapping[int, Limit]) -> str | None:
    """Why these settings would have Ray's memory monitor kill the stage's tasks again, by what earlier kills
    measured (``limits``, by stage), or None: as many tasks at once as the largest node holds (``_at_once``),
    each at its batch's rows, held to the guide's 85% (above it, the guide halves the batch): the room is where
    kills start, and a run near it is killed as its neighbours' memory moves."""
    res = Resources.of(run)
    for stage in run.stages:
        limit, knobs = limits.get(stage.index), overrides.knobs_of(stage)
        if limit is None:
            continue
        at_once = _at_once(knobs, res)
        if not limit.holds(at_once, knobs.batch_size, MEMORY_SHRINK_ABOVE.value):
            return f"stage {stage.key}: {at_once:g} tasks at once would hold more memory than the kills measured"
    return None


def _at_once(knobs: Knobs, res: Resources) -> float:
    """The stage's tasks at once on the largest node, as the capacity model counts slots (``usable_slots``:
    its reservation, GPUs included, and its concurrency; an autoscaling pool at its largest); unbounded where it
    reserves nothing and sets no concurrency."""
    cap = concurrency_cap(knobs)
    cpus, gpus = cpus_of(knobs), knobs.num_gpus or 0.0
    if cpus <= 0 and gpus <= 0 and cap is None:
        return math.inf
    slots = Operator("", "", (), max_concurrency=cap, num_cpus=cpus, num_gpus=gpus)
    node_cpus = res.largest_node_cpus or res.cpus  # a run stored without its nodes: the cluster as one
    return usable_slots(slots, node_cpus, res.largest_node_gpus or res.gpus, 0.0)
