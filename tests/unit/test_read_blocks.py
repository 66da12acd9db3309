"""Ray Data's own block count for a read, and what the model predicts of a read's block count changing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipetune.diagnose import Facts, capacity, ray_default_blocks
from pipetune.model import Dist, Event, EventKind, NodeInfo, Run
from pipetune.tune.policy import candidates
from tests.unit.builders import range_run, with_

MIB = 1024**2


def test_a_small_read_gets_twice_the_cpus_a_large_one_200_a_huge_one_blocks_under_128_mib() -> None:
    small, large, huge = (range_run(60, 0.17, 0.004, planned_bytes=b) for b in (64e3, 2048 * MIB, 256e3 * MIB))
    assert ray_default_blocks(Facts.of(small), 0) == 4  # 2 CPUs: Ray's "at least twice the available CPUs"
    assert ray_default_blocks(Facts.of(large), 0) == 200  # read_op_min_num_blocks, blocks of over 1 MiB
    assert ray_default_blocks(Facts.of(huge), 0) == 2000  # blocks of at most target_max_block_size (128 MiB)
    medium = range_run(60, 0.17, 0.004, planned_bytes=50 * MIB)
    assert ray_default_blocks(Facts.of(medium), 0) == 50  # blocks of at least target_min_block_size (1 MiB)


def test_the_runs_own_data_context_settings_replace_rays_defaults() -> None:
    run = with_(range_run(60, 0.17, 0.004, planned_bytes=2048 * MIB), overrides=("ctx.read_op_min_num_blocks=64",))
    assert ray_default_blocks(Facts.of(run), 0) == 64
    sized = with_(run, overrides=("ctx.target_min_block_size=512MiB", "ctx.target_max_block_size=1GiB"))
    assert ray_default_blocks(Facts.of(sized), 0) == 4  # blocks of 512 MiB to 1 GiB: 2 GiB in 4


def test_no_planned_bytes_no_default_block_count() -> None:
    assert ray_default_blocks(Facts.of(range_run(60, 0.17, 0.004)), 0) is None


def test_fewer_blocks_save_the_overhead_of_the_tasks_they_do_not_run() -> None:
    run = range_run(60, overhead_s=0.17, work_s=0.004)
    facts = Facts.of(run)
    saved = (60 - 4) * 0.17  # one at a time
    assert run.wall_s and capacity.block_count_speedup(facts, 0, 4) == pytest.approx(run.wall_s / (run.wall_s - saved))
    working = Facts.of(range_run(60, overhead_s=0.02, work_s=0.1))  # tasks that mostly work: nothing to save
    assert capacity.block_count_speedup(working, 0, 4) == pytest.approx(1.0)


def test_rays_own_block_count_is_weighed_beside_the_doctors() -> None:
    run = range_run(60, overhead_s=0.17, work_s=0.004, planned_bytes=64e3)
    proposals = {p.change: p for p in candidates(Facts.of(run))}
    default = proposals["stage 0 override_num_blocks 60 -> default"]
    doctor = next(p for p in proposals.values() if p.rule == "many-blocks")  # 8 blocks: blocks_for(2 CPUs)
    assert default.predicted == pytest.approx(capacity.block_count_speedup(Facts.of(run), 0, 4))
    assert default.predicted > doctor.predicted  # 4 blocks save the overhead of 4 more tasks
    unplanned = range_run(60, overhead_s=0.17, work_s=0.004)  # Ray's count unknown: not predicted, not proposed
    assert all("-> default" not in p.change for p in candidates(Facts.of(unplanned)) if p.rule != "ray-default")


def test_rays_count_equal_to_the_runs_own_predicts_nothing() -> None:
    facts = Facts.of(range_run(4, overhead_s=0.02, work_s=0.1, planned_bytes=64e3))  # 4 blocks: Ray's own count
    assert capacity.block_count_speedup(facts, 0, 4) == 1.0
    assert not [p for p in candidates(facts) if p.change == "stage 0 override_num_blocks 4 -> default"]


def test_fewer_blocks_than_the_slots_an_operator_used_lose_them() -> None:
    facts = Facts.of(range_run(60, overhead_s=0.02, work_s=0.1))  # the read ran 2 slots: one block leaves it one
    assert capacity.block_count_speedup(facts, 0, 1) == pytest.approx(
        capacity.run_speedup(facts, facts.operators[0], 0.5)
    )
    assert capacity.block_count_speedup(facts, 0, 1) < 1.0


def test_fewer_blocks_are_not_proposed_where_whole_block_batches_would_outgrow_memory_or_tasks_were_killed() -> None:
    run = range_run(60, overhead_s=0.17, work_s=0.004, planned_bytes=64e3)  # 30,000 rows: 500 a block now
    per_row = 32 * 1024  # the read's blocks: 32 KiB a row; 1 GiB of memory a CPU: whole blocks fit 4,915 rows
    [execution] = run.executions
    read = replace(execution.stats[0], block_bytes=Dist.of([500.0 * per_row]), block_rows=Dist.of([500.0]))
    nodes = (NodeInfo("n1", "127.0.0.1", {"CPU": 2.0, "memory": 2.0 * 1024**3}),)
    tight = with_(run, executions=(replace(execution, stats=(read, *execution.stats[1:])),),
                  env=replace(run.env, nodes=nodes))  # fmt: skip
    assert _defaults(tight) == []  # 4 blocks of 7,500 rows would not fit
    killed = with_(run, events=(Event(3.0, EventKind.OOM_KILL, "Ray's memory monitor killed 1 worker(s)"),))
    assert _defaults(killed) == []
    assert _defaults(run) == ["stage 0 override_num_blocks 60 -> default"]


def _defaults(run: Run) -> list[str]:
    return [p.change for p in candidates(Facts.of(run)) if p.rule == "ray-default (model)"]
