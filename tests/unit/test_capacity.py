"""Does an actor pool fit? One judgement, asked by the doctor, the checklist and the tuner alike."""

from __future__ import annotations

import pytest

from pipetune.diagnose.capacity import as_run
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.rules.stalls import check_blocking_pool
from pipetune.lint.checklist import State, checklist
from pipetune.model import Operator, Run, StageKind
from pipetune.settings import Settings
from pipetune.tune.feasible import unschedulable
from tests.unit.builders import op_stats, pipeline, stage


def pool_run(actors: int, actor_cpus: float, cpus: float = 3.0) -> Run:
    """read (a task stage, 1 CPU) -> an actor pool of ``actors`` x ``actor_cpus`` -> write."""
    read = stage(0, "read_parquet", kind=StageKind.READ)
    model = stage(1, "map_batches", "Model", kind=StageKind.ACTOR, concurrency=actors, num_cpus=actor_cpus)
    write = stage(2, "write_parquet", kind=StageKind.WRITE)
    ops = [
        Operator("0/ReadFiles_1", "ReadFiles", (0,)),
        Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), "actors", actors, actor_cpus),
        Operator("0/Write_3", "Write", (2,)),
    ]
    return pipeline([(s, o, op_stats(o.uid, 1000, 5.0, 5.0)) for s, o in zip((read, model, write), ops, strict=True)],
                    cpus=cpus)  # fmt: skip


@pytest.mark.parametrize(("actors", "actor_cpus", "fits"), [(2, 1.0, True), (2, 1.5, False), (3, 1.0, False)])
def test_every_judge_of_pool_fit_agrees(actors: int, actor_cpus: float, fits: bool) -> None:
    run = pool_run(actors, actor_cpus)
    assert as_run(run).fits(3.0) is fits
    assert (unschedulable(run, Settings()) is None) is fits  # the tuner never tries what would hang
    assert (not check_blocking_pool(Facts.of(run))) is fits  # the doctor names the hang
    [item] = [i for i in checklist(run, None) if i.name == "concurrency matches resources"]
    assert (item.state is State.PASSED) is fits  # the checklist agrees


def test_a_blocking_pool_is_shrunk_to_what_leaves_the_tasks_room() -> None:
    [finding] = check_blocking_pool(Facts.of(pool_run(3, 1.0)))
    assert finding.fix is not None and finding.fix.proposed == 2  # 3 CPUs, 1 left for a read or write task
