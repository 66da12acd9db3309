"""Does an actor pool fit? One judgement, asked by the doctor, the checklist and the tuner alike."""

from __future__ import annotations

import pytest

from pipetune.diagnose.capacity import Pool, PoolModel, Room, as_run, place, rooms
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.rules.stalls import check_blocking_pool
from pipetune.lint.checklist import State, checklist
from pipetune.model import Environment, NodeInfo, Operator, Run, StageKind
from pipetune.settings import Settings
from pipetune.tune.feasible import unschedulable
from tests.unit.builders import op_stats, pipeline, stage, with_


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
    assert as_run(run).fits(rooms(run)) is fits
    assert (unschedulable(run, Settings()) is None) is fits  # the tuner never tries what would hang
    assert (not check_blocking_pool(Facts.of(run))) is fits  # the doctor names the hang
    [item] = [i for i in checklist(run, None) if i.name == "concurrency matches resources"]
    assert (item.state is State.PASSED) is fits  # the checklist agrees


def test_a_blocking_pool_is_shrunk_to_what_leaves_the_tasks_room() -> None:
    [finding] = check_blocking_pool(Facts.of(pool_run(3, 1.0)))
    assert finding.fix is not None and finding.fix.proposed == 2  # 3 CPUs, 1 left for a read or write task


def on_nodes(run: Run, *nodes: dict[str, float]) -> Run:
    infos = tuple(NodeInfo(f"n{i}", f"10.0.0.{i}", r) for i, r in enumerate(nodes))
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
    return with_(run, env=Environment(cluster_resources=total, nodes=infos))


def test_a_pool_spread_across_two_nodes_leaves_no_node_a_whole_cpu() -> None:
    """2 nodes x 2 CPUs: 2 actors x 1.5 CPUs + 1-CPU read tasks fit the totals (4 of 4) and hang on the nodes."""
    run = on_nodes(pool_run(2, 1.5), {"CPU": 2.0}, {"CPU": 2.0})
    assert as_run(run).pool_cpus + as_run(run).task_cpus <= 4.0  # what a check on cluster totals accepts
    why = unschedulable(run, Settings())
    assert why is not None and "at most 0.5 CPUs on a node" in why
    assert check_blocking_pool(Facts.of(run))  # the doctor says so too
    assert unschedulable(on_nodes(pool_run(2, 1.0), {"CPU": 2.0}, {"CPU": 2.0}), Settings()) is None


def test_actors_go_where_there_is_most_room_and_a_gpu_task_needs_a_free_gpu() -> None:
    free = place([Pool(2, 1.0, 1.0)], [Room(8.0, 1.0), Room(8.0, 1.0), Room(4.0, 0.0)])
    assert free == [Room(7.0, 0.0), Room(7.0, 0.0), Room(4.0, 0.0)]  # one GPU actor per GPU node
    assert place([Pool(3, 1.0, 1.0)], [Room(8.0, 1.0), Room(8.0, 1.0)]) is None  # a third GPU actor has no GPU
    run = on_nodes(pool_run(1, 1.0), {"CPU": 4.0, "GPU": 1.0})
    gpu_pool = Settings.from_config({"stages": {"1": {"num_gpus": 1}}})  # type: ignore[arg-type]
    assert unschedulable(run, gpu_pool) is None
    gpu_tasks_too = Settings.from_config({"stages": {"1": {"num_gpus": 1}, "0": {"num_gpus": 1}}})  # type: ignore[arg-type]
    why = unschedulable(run, gpu_tasks_too)
    assert why is not None and "1 GPUs" in why  # the pool holds the only GPU a read task would need


# -- how large should a pool be? ---------------------------------------------------------------------------------


def test_the_pool_model_weighs_start_up_against_the_rows_the_actors_share() -> None:
    """Actors that wait (no cores burnt): n of them take startup * n / cores + rows / (per_actor * n), fastest
    at n = sqrt(rows * cores / (per_actor * startup)); fewer and more are both slower."""
    model = PoolModel(rows=100.0, per_actor=1.0, cores_per_actor=0.0, startup_s=2.0, cpus=2.0)
    assert model.best(range(1, 65)) == 10  # sqrt(100 * 2 / (1 * 2))
    times = [model.seconds(n) for n in (10, 20, 40, 64)]
    assert times == sorted(times) and model.seconds(5) > model.seconds(10)
    compute = PoolModel(rows=3000, per_actor=150, cores_per_actor=1.0, startup_s=0.5, cpus=16.0)
    assert compute.best(range(1, 16)) == 15  # a compute-bound pool on 16 cores: as many as fit
    capped = PoolModel(rows=3000, per_actor=150, cores_per_actor=1.0, startup_s=0.5, cpus=16.0, ceiling=600.0)
    assert capped.best(range(1, 16)) == 4  # no faster than the rest of the pipeline: 4 actors carry its 600 rows/s


def sixteen_cpu_pool(startup_s: float | None) -> Run:
    """One 16-CPU node: a cheap read feeding a compute-bound pool of one actor that limits everything."""
    from pipetune.model import Sample

    run = on_nodes(pool_run(1, 1.0, cpus=16.0), {"CPU": 16.0})
    stats = list(run.executions[0].stats)
    stats[1] = op_stats("0/MapBatches(Model)_2", 3000, 20.0, 20.0, tasks=100)
    stats[0] = op_stats("0/ReadFiles_1", 3000, 1.0, 1.0, tasks=100)
    stats[2] = op_stats("0/Write_3", 3000, 1.0, 1.0, tasks=100)
    execution = with_(run.executions[0], stats=tuple(stats))
    alive = () if startup_s is None else (Sample(1.0 + startup_s, "0/MapBatches(Model)_2", {"actors_alive": 1.0}),)
    return with_(run, executions=(execution,), op_samples=alive)


def test_a_pool_goes_to_the_size_the_model_asks_for_in_one_step() -> None:
    from pipetune.tune.policy import ModelGuided, View

    proposal = ModelGuided().propose(View(Settings(), sixteen_cpu_pool(startup_s=0.5), frozenset()))
    assert proposal is not None  # the doctor's slow-stage fix and the tuner's pool move: one sizing, one answer
    assert proposal.settings.to_args() == ("1.concurrency=15",)  # 1 -> 15 at once: 16 CPUs, one left for the tasks
    unmeasured = ModelGuided().propose(View(Settings(), sixteen_cpu_pool(startup_s=None), frozenset()))
    assert unmeasured is not None and unmeasured.settings.to_args() == ("1.concurrency=2",)  # no start-up: x2


def test_a_pool_a_probe_stopped_inside_its_first_task_is_sized_for_the_inputs_it_was_given() -> None:
    """Stopped inside the one actor's first task, the pool has one running task to show, and 99 blocks waiting at
    its input: it has 100 to share, as a run in full would show, not 1."""
    from pipetune.model import Sample
    from pipetune.tune.policy import ModelGuided, View

    run = sixteen_cpu_pool(startup_s=0.5)
    stats = list(run.executions[0].stats)
    stats[1] = op_stats("0/MapBatches(Model)_2", 3000, 20.0, 20.0, tasks=1, running=True)
    held = Sample(2.0, "0/MapBatches(Model)_2", {"tasks_running": 1.0, "inqueue_blocks": 99.0})
    probed = with_(run, executions=(with_(run.executions[0], stats=tuple(stats)),), op_samples=(*run.op_samples, held))
    proposal = ModelGuided().propose(View(Settings(), probed, frozenset()))
    assert proposal is not None and proposal.settings.to_args() == ("1.concurrency=15",)
    alone = with_(probed, op_samples=run.op_samples)  # no sample of its inputs: its one running task is all it shows
    assert ModelGuided().propose(View(Settings(), alone, frozenset())) != proposal


def test_the_whole_pipeline_model_predicts_fewer_batches_and_whole_blocks() -> None:
    from pipetune.diagnose.capacity import config_speedup
    from pipetune.diagnose.facts import Facts as F
    from pipetune.model import Knobs
    from tests.unit.test_tune import etl_run

    facts = F.of(etl_run(batch=64))  # type: ignore[arg-type]
    grown = {1: Knobs(num_cpus=1.0, batch_size=4096)}
    assert config_speedup(facts, {}) == 1.0  # nothing changed: the run as measured
    assert config_speedup(facts, grown) > 1.5  # fixed per-batch costs dominate: fewer batches pay them
    assert config_speedup(facts, grown) < config_speedup(facts, {1: Knobs(num_cpus=1.0, batch_size=None)}) * 1.0001


def test_a_task_stage_that_a_new_reservation_splits_from_its_pool_needs_room_again() -> None:
    """map(texts) fused into a 1-CPU actor on 2 CPUs: doubling the actor's reservation alone splits the map off
    as 1-CPU tasks, with no room left beside a 2-CPU actor (a hang); doubling both keeps them fused and fits."""
    texts = stage(0, "map_batches", "texts")
    model = stage(1, "map_batches", "Encoder", kind=StageKind.ACTOR, concurrency=1, num_cpus=1.0)
    op = Operator("0/MapBatches(texts)->MapBatches(Encoder)_1", "MapBatches(texts)->MapBatches(Encoder)", (0, 1),
                  "actors", 1, 1.0)  # fmt: skip
    run = pipeline([(s, op, op_stats(op.uid, 1000, 5.0, 5.0)) for s in (texts, model)], cpus=2.0)
    assert as_run(run).fits(rooms(run))
    alone = {1: model.knobs.replace(num_cpus=2.0)}
    assert not as_run(run, alone).fits(rooms(run))
    assert as_run(run, {**alone, 0: texts.knobs.replace(num_cpus=2.0)}).fits(rooms(run))


def test_the_memory_cap_comes_from_the_memory_ray_reports_and_nothing_is_assumed_without_it() -> None:
    """A worker's share of its node's ``memory`` over the bytes a batch's copies hold; no figure, no cap."""
    from dataclasses import replace

    from pipetune.diagnose.capacity import BATCH_COPIES, BATCH_MEMORY_SHARE, memory_cap
    from pipetune.model import Dist
    from tests.unit.builders import two_stage_run

    run = two_stage_run()
    read = replace(run.executions[0].stats[0], block_rows=Dist.of([1000.0]), block_bytes=Dist.of([1e6]))
    run = replace(run, executions=(replace(run.executions[0], stats=(read, run.executions[0].stats[1])),))

    def on(resources: dict[str, float]) -> int:
        env = Environment(cluster_resources=resources, nodes=(NodeInfo("n1", "127.0.0.1", resources),))
        return memory_cap(Facts.of(replace(run, env=env)), 1)

    assert on({"CPU": 2.0, "memory": 8e9}) == int(BATCH_MEMORY_SHARE * 4e9 / (BATCH_COPIES * 1000.0))
    assert on({"CPU": 2.0}) == 1 << 30  # Ray reported no memory: no cap rather than a guessed one


def test_a_pool_that_waited_on_something_else_saves_the_run_only_its_own_time() -> None:
    """One actor by the pool model takes 20.5 s (start-up and rows) and fifteen 1.9 s. In a 10 s execution it
    is what the run waits for: the run gains as the pool does. Stretched to 50 s by something else, the run
    loses only the seconds the pool saves itself, whatever the pool's own speed-up."""
    from pipetune.diagnose.capacity import pool_model, pool_run_speedup, pool_speedup, run_speedup

    limiting = Facts.of(sixteen_cpu_pool(startup_s=0.5))
    op = limiting.operator_of(1)
    assert op is not None
    as_pool = run_speedup(limiting, op, pool_speedup(limiting, op, None, 15))
    assert pool_run_speedup(limiting, op, None, 15) == pytest.approx(as_pool)
    run = sixteen_cpu_pool(startup_s=0.5)
    execution = run.executions[0]
    assert execution.ended_t is not None and run.wall_s is not None
    stretched = Facts.of(
        with_(run, wall_s=run.wall_s + 40, executions=(with_(execution, ended_t=execution.ended_t + 40),))
    )
    model = pool_model(stretched, op)
    assert model is not None
    wall, saved = run.wall_s + 40, model.seconds(1) - model.seconds(15)
    assert pool_run_speedup(stretched, op, None, 15) == pytest.approx(wall / (wall - saved))
    assert pool_run_speedup(stretched, op, None, 15) < run_speedup(stretched, op, pool_speedup(stretched, op, None, 15))
