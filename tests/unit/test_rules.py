"""Every rule of the guide on runs built by hand: it fires on the symptom, stays quiet without it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipetune.diagnose import capacity, gain_tier
from pipetune.diagnose.engine import diagnose, rank_key
from pipetune.diagnose.facts import Facts, Hardware, OpType
from pipetune.diagnose.findings import Level
from pipetune.diagnose.fusion import fuses_at
from pipetune.diagnose.rules import RULES
from pipetune.model import Dist, Event, EventKind, Materialization, Operator, Run, Sample, StageKind, TaskSpan
from tests.unit.builders import (
    DOMINANT_FRAME_S,
    FRAME_PER_BATCH_S,
    node_cpu,
    op_stats,
    pipeline,
    range_run,
    stage,
    two_stage_run,
    with_,
)


def rule(name: str, run):  # type: ignore[no-untyped-def]
    return RULES[name](Facts.of(run))


def download_run(cores: float = 0.03, cpu_pct: float = 12.0):  # type: ignore[no-untyped-def]
    """range -> map(fetch) fused, 60 tasks, each waiting on the network."""
    read, fetch = stage(0, "range", kind=StageKind.READ), stage(1, "map", "fetch", num_cpus=1.0)
    read = replace(read, takes=("override_num_blocks", "concurrency"))  # ray.data.range takes no num_cpus
    op = Operator("0/ReadRange->Map(fetch)_1", "ReadRange->Map(fetch)", (0, 1), num_cpus=1.0)
    stats = op_stats(op.uid, 600, 30.0, 30.0 * cores, tasks=60, stage_time_s=(0.1, 29.9))
    return node_cpu(pipeline([(read, op, stats), (fetch, op, stats)], wall=15.0), cpu_pct)


# -- low CPU ----------------------------------------------------------------------------------------------


def test_low_cpu_on_a_latency_bound_stage_lowers_its_num_cpus() -> None:
    [f] = rule("low-cpu", download_run())
    assert f.stage_key == "1:map:fetch" and f.fix is not None
    assert (f.fix.knob, f.fix.current, f.fix.proposed, f.fix.level) == ("num_cpus", 1.0, 0.1, Level.PARALLELISM)
    assert f.fix.setting == "1.num_cpus=0.1" and f.fix.describe() == "stage 1 num_cpus 1 -> 0.1"
    assert f.verify.metric == "cpu_pct" and f.verify.value == 80
    assert any(e.metric == "cluster CPU use" and e.threshold == 50 for e in f.evidence)


def test_low_cpu_lowers_the_reservation_of_every_stage_fused_with_the_waiting_one() -> None:
    """map(fetch) -> write fused: the operator's tasks wait, and a reservation set on the fetch alone would split
    it from the write, which would keep a whole CPU per task. Both move, so the operator stays one."""
    from pipetune.diagnose.fusion import pieces_after

    fetch, write = stage(1, "map", "fetch", num_cpus=1.0), stage(2, "write_parquet", kind=StageKind.WRITE)
    read = replace(stage(0, "range", kind=StageKind.READ), takes=("override_num_blocks",))
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    op = Operator("0/Map(fetch)->Write_2", "Map(fetch)->Write", (1, 2), num_cpus=1.0)
    stats = op_stats(op.uid, 600, 30.0, 0.9, tasks=60, stage_time_s=(29.9, 0.1))
    run = node_cpu(pipeline([(read, r_op, op_stats(r_op.uid, 600, 0.5, 0.5, tasks=60)), (fetch, op, stats),
                             (write, op, stats)], wall=15.0), 12.0)  # fmt: skip
    [f] = rule("low-cpu", run)
    assert f.fix is not None and f.fix.settings == ("1.num_cpus=0.1", "2.num_cpus=0.1")
    assert f.fix.describe() == "stage 1 num_cpus 1 -> 0.1, stage 2 num_cpus 1 -> 0.1"
    assert pieces_after(op, {1, 2}, 0.1) == 1 and pieces_after(op, 1, 0.1) == 2  # no operator split off


def test_low_cpu_is_quiet_when_cpus_are_busy_or_tasks_compute() -> None:
    assert rule("low-cpu", download_run(cpu_pct=85.0)) == []
    assert rule("low-cpu", download_run(cores=0.95)) == []
    assert rule("low-cpu", with_(download_run(), node_samples=())) == []  # no node samples: no claim


def test_low_cpu_never_proposes_a_knob_the_call_does_not_take() -> None:
    run = download_run()
    no_cpus = replace(run.stages[1], takes=("batch_size", "concurrency"))  # as recorded from the call's signature
    assert rule("low-cpu", with_(run, stages=(run.stages[0], no_cpus))) == []


# -- too few blocks -------------------------------------------------------------------------------------


FRAMES = 300_000 / 64 * DOMINANT_FRAME_S  # fixed costs dominate etl_run's 4,687 batches


def etl_run(tasks: int = 1):  # type: ignore[no-untyped-def]
    read = stage(0, "read_parquet", kind=StageKind.READ)
    enrich = stage(1, "map_batches", "enrich", batch_size=64, num_cpus=1.0)
    r_op = Operator("0/ReadFiles_1", "ReadFiles", (0,))
    m_op = Operator("0/MapBatches(enrich)_2", "MapBatches(enrich)", (1,))
    return pipeline(
        [
            (read, r_op, op_stats(r_op.uid, 300_000, 2.0, 2.0, tasks=1)),
            (enrich, m_op, op_stats(m_op.uid, 300_000, 18.0, 18.0, tasks=tasks, udf_s=3.0, frame_s=FRAMES)),
        ],
        wall=20.0,
    )


def test_one_block_for_a_stage_that_could_run_two_tasks() -> None:
    [f] = rule("few-blocks", etl_run(tasks=1))
    assert f.stage_key == "1:map_batches:enrich"
    assert f.fix is not None and f.fix.knob == "repartition" and f.fix.stage == 0 and f.fix.proposed == 8
    assert f.fix.setting == "0.repartition=8"


def test_one_block_still_running_when_a_probe_stopped_it_is_read_from_its_running_task() -> None:
    """A probe stopped inside the stage's one task: the figures are its running task's (``record.in_task``),
    and Ray's count of output blocks (none yet) is no evidence."""
    run = etl_run(tasks=1)
    running = with_(run.executions[0].stats[1], running=True, blocks=0)
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], running))  # type: ignore[arg-type]
    [f] = rule("few-blocks", with_(run, executions=(execution,)))
    assert f.fix is not None and f.fix.setting == "0.repartition=8"
    assert "blocks it received" not in {e.metric for e in f.evidence}


def test_one_block_of_little_work_is_not_worth_splitting() -> None:
    """More blocks save at most the stage's work spread over its slots: 0.4 s of 21 s is inside the noise."""
    run = etl_run(tasks=1)
    light = with_(run.executions[0].stats[1], busy_s=0.4, cpu_s=0.4)
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], light))  # type: ignore[arg-type]
    assert rule("few-blocks", with_(run, executions=(execution,))) == []


def _one_block_with_spans(work_s: float, first_wait_s: float):  # type: ignore[no-untyped-def]
    """etl_run's one block, with its two tasks kept: the read's (which also waited ``first_wait_s`` for the first
    worker to start) and the enrich stage's, ``work_s`` of work that waited 0.1 s on Ray."""
    run = etl_run(tasks=1)
    heavy = with_(run.executions[0].stats[1], busy_s=work_s, cpu_s=work_s)
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], heavy))  # type: ignore[arg-type]
    r_uid, m_uid = "0/ReadFiles_1", "0/MapBatches(enrich)_2"
    spans = (
        TaskSpan(r_uid, 0, 1.0, 1.0 + first_wait_s + 2.0, worker_s=2.0),
        TaskSpan(m_uid, 0, 3.0 + first_wait_s, 3.1 + first_wait_s + work_s, worker_s=work_s),
    )
    return with_(run, executions=(execution,), tasks=spans)


def test_the_overhead_and_the_worker_start_measured_on_the_run_are_what_more_tasks_cost() -> None:
    from pipetune.diagnose import Facts, capacity

    many = Facts.of(range_run(12, overhead_s=0.17, work_s=0.004))
    assert capacity.task_overhead_s(many) == pytest.approx(0.17)  # the median wait of the tasks after the first
    assert capacity.worker_start_s(many) == pytest.approx(0.0)  # the first waited no longer than the rest
    read = many.operators[0]
    assert capacity.added_tasks_s(many, {read.uid: 16}) == pytest.approx(4 * 0.17 / 2)  # over its 2 slots
    few = Facts.of(_one_block_with_spans(work_s=6.0, first_wait_s=3.0))
    assert capacity.task_overhead_s(few) == 0.0  # two tasks' waits say nothing of Ray's overhead
    assert capacity.worker_start_s(few) == pytest.approx(3.0)  # the first task waited for its worker
    # one more at once: one start (3 s), while the first worker does half the 6 s of work: the work ends 1.5 s later
    assert capacity.added_workers_s(few, few.operators[-1], 8) == pytest.approx(1.5)  # than on 2 slots at once


def test_one_block_is_not_split_where_the_worker_it_needs_costs_what_the_second_core_saves() -> None:
    """8 s of work on 2 cores saves 4 s at most; while the second worker takes 5 s to start, the first does 5 of
    the stage's 6 s, so the split ends the stage 2.5 s sooner than two workers ready at once would: 1.5 s of a
    21 s run, inside the noise. A worker ready at once, or 12 s of work, and the split pays beyond it."""
    assert rule("few-blocks", _one_block_with_spans(work_s=6.0, first_wait_s=5.0)) == []
    assert rule("few-blocks", _one_block_with_spans(work_s=6.0, first_wait_s=0.1))
    [f] = rule("few-blocks", _one_block_with_spans(work_s=12.0, first_wait_s=3.0))
    assert f.fix is not None and f.fix.setting == "0.repartition=8"


def test_enough_tasks_is_not_a_block_problem() -> None:
    assert rule("few-blocks", etl_run(tasks=16)) == []


def test_other_sources_get_override_num_blocks() -> None:
    run = etl_run()
    src = stage(0, "read_csv", kind=StageKind.READ)
    run = with_(run, stages=(src, run.stages[1]))
    [f] = rule("few-blocks", run)
    assert f.fix is not None and f.fix.knob == "override_num_blocks"


# -- batch size -----------------------------------------------------------------------------------------


def test_many_tiny_tasks_that_mostly_wait_on_ray_ask_for_fewer_blocks() -> None:
    run = range_run(60, overhead_s=0.17, work_s=0.004)
    [f] = rule("many-blocks", run)
    assert f.stage_key == "0:range"
    assert f.fix is not None and f.fix.setting == "0.override_num_blocks=8"  # blocks_for(2 CPUs)
    saved = 52 * 0.17  # the overhead of the 52 tasks 8 blocks would not run, one at a time
    assert run.wall_s and f.gain == pytest.approx(run.wall_s / (run.wall_s - saved))


def test_tasks_that_mostly_work_or_are_few_are_not_too_many_blocks() -> None:
    assert rule("many-blocks", range_run(60, overhead_s=0.02, work_s=0.1)) == []  # the work outweighs Ray's share
    assert rule("many-blocks", range_run(8, overhead_s=0.17, work_s=0.004)) == []  # no more than the CPUs need
    assert rule("many-blocks", range_run(12, overhead_s=0.02, work_s=0.004)) == []  # it would save under the noise


def test_tiny_batches_grow_as_far_as_the_pipeline_model_asks_and_at_least_the_guides_step() -> None:
    from pipetune.diagnose import Facts, capacity

    [f] = rule("batch-size", etl_run())
    sized = capacity.sized_batch(Facts.of(etl_run()), 1, 64, floor=128)  # the tuner's own move
    assert f.fix is not None and (f.fix.current, f.fix.proposed, f.fix.level) == (64, sized, Level.BATCH)
    assert sized is not None and sized >= 128


def test_batches_in_range_are_fine_unless_their_fixed_cost_is_more_than_a_fix_could_measurably_save() -> None:
    def at_500(frame_per_batch_s: float) -> Run:  # etl_run at 500-row batches: 600 of them in its 18 s
        run = etl_run()
        enrich = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=500))  # type: ignore[arg-type]
        execution = run.executions[0]
        stats = replace(execution.stats[1], frame_s=600 * frame_per_batch_s)
        executions = (replace(execution, stats=(execution.stats[0], stats)),)
        return with_(run, stages=(run.stages[0], enrich), executions=executions)

    assert rule("batch-size", at_500(FRAME_PER_BATCH_S)) == []  # 1 s of framing in 18 s: under twice the noise
    [f] = rule("batch-size", at_500(6e-3))  # 3.6 s in 18 s: larger batches would save a measurable share
    assert f.fix is not None and f.fix.current == 500 and f.fix.proposed > 500
    assert any(e.metric == "fixed cost's share of a batch" and e.value == pytest.approx(20, rel=0.05)
               for e in f.evidence)  # fmt: skip


# -- memory ---------------------------------------------------------------------------------------------


def test_oom_kills_raise_num_cpus_of_the_stage_named_in_the_log() -> None:
    run = with_(
        two_stage_run(map_cpus=0.5),
        events=(Event(3.0, EventKind.OOM_KILL, "Ray's memory monitor killed 1 worker(s) running MapBatches(work)"),),
    )
    [f] = rule("workers-oom", run)
    assert f.stage_key == "1:map_batches:work"
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("num_cpus", 0.5, 1.0)
    assert f.verify.metric == "oom_kills" and f.verify.holds(0.0) is True
    assert rule("workers-oom", two_stage_run()) == []


def test_oom_with_whole_node_tasks_shrinks_the_batch() -> None:
    run = two_stage_run(map_cpus=2.0)
    work = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=64))  # type: ignore[arg-type]
    run = with_(
        run,
        stages=(run.stages[0], work),
        events=(Event(3.0, EventKind.OOM_KILL, "killed 1 worker(s) running MapBatches(work)"),),
    )
    [f] = rule("workers-oom", run)
    assert f.fix is not None and (f.fix.knob, f.fix.proposed, f.fix.level) == ("batch_size", 32, Level.BATCH)


def test_spilling_points_at_the_stage_holding_the_object_store() -> None:
    samples = (
        Sample(2.0, "0/ReadFiles_1", {"obj_store_bytes": 9e8}),
        Sample(2.0, "0/MapBatches(work)_2", {"obj_store_bytes": 1e6}),
    )
    run = with_(
        two_stage_run(),
        op_samples=samples,
        events=(Event(0.0, EventKind.SPILL, "84 MiB spilled from the object store to disk"),),
    )
    [f] = rule("object-store", run)
    assert f.stage_key == "0:read_parquet" and f.fix is not None and f.fix.proposed == 2.0
    assert f.evidence[0].value == 84
    assert rule("object-store", two_stage_run()) == []


def spilling_run(grow_cpus: float, read_takes: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """range_tensor -> map_batches(grow) -> map_batches(shrink), the read holding the most of a spilled store."""
    read = replace(stage(0, "range_tensor", kind=StageKind.READ), takes=read_takes)
    grow, shrink = stage(1, "map_batches", "grow", num_cpus=grow_cpus), stage(2, "map_batches", "shrink")
    ops = (
        Operator("0/ReadRange_1", "ReadRange", (0,)),
        Operator("0/MapBatches(grow)_2", "MapBatches(grow)", (1,), num_cpus=grow_cpus),
        Operator("0/MapBatches(shrink)_3", "MapBatches(shrink)", (2,)),
    )
    samples = (Sample(2.0, ops[0].uid, {"obj_store_bytes": 3e8}), Sample(2.0, ops[1].uid, {"obj_store_bytes": 2e8}))
    run = pipeline([(s, o, op_stats(o.uid, 2_400, 8.0, 8.0)) for s, o in zip((read, grow, shrink), ops, strict=True)])
    spill = Event(0.0, EventKind.SPILL, "3500 MiB spilled from the object store to disk")
    return with_(run, op_samples=samples, events=(spill,))


def test_spilling_between_operators_kept_apart_by_their_reservations_fuses_them() -> None:
    run = spilling_run(grow_cpus=0.25)
    [f] = rule("object-store", run)
    assert f.stage_key == "1:map_batches:grow" and f.fix is not None
    assert (f.fix.knob, f.fix.current, f.fix.proposed) == ("num_cpus", 0.25, 1.0)
    grow = run.executions[0].operators[1]
    assert fuses_at(run, grow, 1.0) and not fuses_at(run, grow, 0.5)  # the model claims no figure for a fusion
    assert not fuses_at(spilling_run(grow_cpus=1.0), grow, 1.0)  # already fused alike: nothing changes
    assert [e.value for e in f.evidence] == [3500, 3e8 / 2**20]


def test_spilling_from_a_read_that_takes_no_num_cpus_gets_smaller_blocks() -> None:
    run = spilling_run(grow_cpus=1.0, read_takes=("concurrency", "override_num_blocks"))
    [f] = rule("object-store", run)
    assert f.stage_key == "0:range_tensor" and f.fix is not None
    assert (f.fix.knob, f.fix.proposed) == ("ctx.target_max_block_size", "64MiB")


# -- GPU ------------------------------------------------------------------------------------------------


def gpu_run(gpu_pct: float, cpu_pct: float, batch: int = 32):  # type: ignore[no-untyped-def]
    prep = stage(0, "map_batches", "prep", num_cpus=0.5)
    infer = stage(1, "map_batches", "Model", kind=StageKind.ACTOR, num_gpus=1.0, batch_size=batch)
    p_op = Operator("0/MapBatches(prep)_1", "MapBatches(prep)", (0,), num_cpus=0.5)
    m_op = Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), compute="actors", num_gpus=1.0)
    run = pipeline(
        [(prep, p_op, op_stats(p_op.uid, 1000, 9.0, 9.0)), (infer, m_op, op_stats(m_op.uid, 1000, 5.0, 1.0))],
        cpus=8,
        gpus=1,
    )
    return node_cpu(run, cpu_pct, gpu_pct)


def test_low_gpu_with_busy_cpus_is_preprocessing() -> None:
    [f] = rule("low-gpu", gpu_run(gpu_pct=20, cpu_pct=95))
    assert f.stage_key == "0:map_batches:prep"
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("num_cpus", 0.5, 0.25)


def test_low_gpu_with_idle_cpus_is_small_batches() -> None:
    [f] = rule("low-gpu", gpu_run(gpu_pct=20, cpu_pct=30))
    assert f.stage_key == "1:map_batches:Model"
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("batch_size", 32, 64)
    assert rule("low-gpu", gpu_run(gpu_pct=90, cpu_pct=30)) == []
    assert Facts.of(gpu_run(20, 30)).hardware is Hardware.GPU


def test_cuda_oom_halves_the_batch() -> None:
    run = with_(
        gpu_run(90, 30, batch=64),
        events=(Event(2.0, EventKind.UDF_ERROR, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", 1),),
    )
    [f] = rule("gpu-oom", run)
    assert f.fix is not None and (f.fix.current, f.fix.proposed) == (64, 32)
    assert f.verify.metric == "cuda_errors"
    assert rule("gpu-oom", with_(run, events=(Event(2.0, EventKind.UDF_ERROR, "ValueError: x", 1),))) == []


# -- one slow stage, skew, stalls -----------------------------------------------------------------------


def test_one_slow_actor_stage_grows_its_pool_when_resources_allow() -> None:
    read = stage(0, "range", kind=StageKind.READ, num_cpus=0.25)
    model = stage(1, "map_batches", "Model", kind=StageKind.ACTOR, concurrency=1)
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=0.25)
    m_op = Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), compute="actors", max_concurrency=1)
    run = pipeline(
        [(read, r_op, op_stats(r_op.uid, 10_000, 0.5, 0.5)), (model, m_op, op_stats(m_op.uid, 10_000, 9.5, 9.0))],
        cpus=4,
    )
    [f] = rule("slow-stage", run)
    assert f.stage_key == "1:map_batches:Model"
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("concurrency", 1, 2)


def test_a_pool_held_back_by_the_upstream_reservation_gets_more_actors_that_each_reserve_less() -> None:
    """A 1-CPU task stage and a 1-actor pool of 1 CPU on 2 CPUs: a second 1-CPU actor would starve the tasks."""
    read = stage(0, "range", kind=StageKind.READ, num_cpus=1.0)
    model = stage(1, "map_batches", "Model", kind=StageKind.ACTOR, concurrency=1, num_cpus=1.0)
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    m_op = Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), "actors", 1, 1.0)
    run = pipeline(
        [(read, r_op, op_stats(r_op.uid, 10_000, 0.5, 0.5)), (model, m_op, op_stats(m_op.uid, 10_000, 9.5, 4.0))],
        cpus=2,
    )
    [f] = rule("slow-stage", run)
    assert f.fix is not None and f.fix.settings == ("1.concurrency=2", "1.num_cpus=0.5")  # set together
    assert f.fix.describe() == "stage 1 concurrency 1 -> 2, num_cpus 1 -> 0.5"


def test_a_balanced_pipeline_has_no_slow_stage() -> None:
    assert rule("slow-stage", two_stage_run(read_busy=18.0, map_busy=20.0)) == []


def queued_run(filter_cores: float = 0.06, embed_cores: float = 0.99, filter_queue: float = 20.0):  # type: ignore[no-untyped-def]
    """range -> filter(check) fused, then map_batches(embed), each reserving 1 CPU on 2 CPUs over 20 s: the
    filter's input queue holds ``filter_queue`` blocks, the embed stage's 0.2."""
    read = stage(0, "range", kind=StageKind.READ)
    check = stage(1, "filter", "check", StageKind.FILTER, num_cpus=1.0)
    embed = stage(2, "map_batches", "embed", batch_size=50, num_cpus=1.0)
    f_op = Operator("0/ReadRange->Filter(check)_1", "ReadRange->Filter(check)", (0, 1), num_cpus=1.0)
    e_op = Operator("0/MapBatches(embed)_2", "MapBatches(embed)", (2,), num_cpus=1.0)
    f_stats = op_stats(f_op.uid, 2_000, 10.0, 10.0 * filter_cores, tasks=40)
    e_stats = op_stats(e_op.uid, 2_000, 12.0, 12.0 * embed_cores, tasks=40)
    queues = tuple(Sample(float(t), uid, {"inqueue_blocks": q}) for t in range(1, 21)
                   for uid, q in ((f_op.uid, filter_queue), (e_op.uid, 0.2)))  # fmt: skip
    specs = [(read, f_op, f_stats), (check, f_op, f_stats), (embed, e_op, e_stats)]
    return pipeline(specs, wall=20.0, samples=queues)  # type: ignore[list-item]


def test_a_stage_whose_input_queues_and_output_is_empty_lowers_its_reservation_when_its_tasks_wait() -> None:
    """The guide's 'empty output queue: decrease num_cpus', found by the queues where no stage ran near its
    capacity by the rates (each rate counts every CPU, while the two reservations shared them)."""
    [f] = rule("slow-stage", queued_run())
    assert f.stage_key == "1:filter:check" and f.fix is not None
    assert (f.fix.knob, f.fix.stage, f.fix.current, f.fix.proposed) == ("num_cpus", 1, 1.0, 0.1)  # waits: I/O row
    assert f.gain > 1 + 0.1  # the model, reservations included, finds it worth more than the noise
    assert rule("slow-stage", queued_run(filter_queue=0.5)) == []  # nothing waits at its input: not slow


def test_a_slow_stage_that_burns_its_reservation_asks_the_upstream_stage_to_reserve_less() -> None:
    """The guide's 'large input queue: decrease upstream num_cpus': the embed stage burns what it reserves,
    blocks wait at its input, and the filter upstream holds a CPU it does not burn."""
    run = queued_run(filter_queue=0.5)
    samples = tuple(replace(x, values={"inqueue_blocks": 6.0}) if "embed" in x.source else x for x in run.op_samples)
    [f] = rule("slow-stage", with_(run, op_samples=samples))
    assert f.stage_key == "2:map_batches:embed" and f.fix is not None
    assert (f.fix.knob, f.fix.stage, f.fix.proposed) == ("num_cpus", 1, 0.1)
    assert "decrease upstream num_cpus" in f.cause
    busy = queued_run(filter_cores=0.95, filter_queue=0.5)  # the upstream burns what it holds: nothing to free
    samples = tuple(replace(x, values={"inqueue_blocks": 6.0}) if "embed" in x.source else x for x in busy.op_samples)
    assert rule("slow-stage", with_(busy, op_samples=samples)) == []


def test_the_model_counts_what_task_stages_hold_reserved_not_only_what_they_burn() -> None:
    """Two task stages each reserving a whole CPU while one burns almost none: the reservations, not the
    cores, bound the time, so a smaller reservation for the waiting one is predicted to help."""
    from pipetune.diagnose.capacity import config_speedup

    run = queued_run()
    facts = Facts.of(run)
    lowered = {1: run.stages[1].knobs.replace(num_cpus=0.1)}
    assert config_speedup(facts, lowered) > 1.2
    assert config_speedup(facts, {2: run.stages[2].knobs.replace(num_cpus=1.0)}) == pytest.approx(1.0)


def test_a_reservation_that_splits_a_fused_stage_from_its_neighbours_pays_for_the_tasks_it_adds() -> None:
    """range -> map(fetch) -> write fused as one operator of 40 tasks: fetch at 0.1 CPU runs apart from both
    neighbours (three operators, 80 more tasks), at the end of the chain apart from one."""
    from pipetune.diagnose import capacity
    from pipetune.diagnose.fusion import pieces_after

    op = Operator("0/ReadRange->Map(fetch)->Write_1", "ReadRange->Map(fetch)->Write", (0, 1, 2), num_cpus=1.0)
    assert [pieces_after(op, 1, 0.1), pieces_after(op, 2, 0.1), pieces_after(op, 1, 1.0)] == [3, 2, 1]
    run = range_run(40, overhead_s=0.2, work_s=0.5)
    facts = Facts.of(run)
    read = facts.operators[0]
    fused = replace(read, stages=(0, 1, 2))
    assert capacity.reservation_cost_s(facts, fused, 1, replace(fused, num_cpus=1.0)) == 0.0
    split = capacity.reservation_cost_s(facts, fused, 0, replace(fused, num_cpus=0.5))  # the first: one piece off
    assert split >= 40 * 0.2 / 2 - 1e-9  # 40 more tasks, 0.2 s each on Ray, over the 2 slots


def test_skewed_tasks_ask_for_a_repartition_upstream() -> None:
    run = two_stage_run()
    skewed = with_(run.executions[0].stats[1], task_s=Dist.of([0.5] * 8 + [6.0, 7.0]))
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], skewed))  # type: ignore[arg-type]
    [f] = rule("skew", with_(run, executions=(execution,)))
    assert f.stage_key == "1:map_batches:work"
    assert f.fix is not None and (f.fix.knob, f.fix.stage) == ("repartition", 0)
    assert rule("skew", two_stage_run()) == []


def test_skew_in_bundled_blocks_asks_for_batches_of_one_block() -> None:
    """batch_size 4096 over blocks of 1,000 rows bundles four blocks per task: the heavy ones share one task."""
    run = two_stage_run()
    read = with_(run.executions[0].stats[0], block_rows=Dist.of([1000.0] * 10))
    skewed = with_(run.executions[0].stats[1], task_s=Dist.of([0.5] * 8 + [6.0, 7.0]))
    execution = with_(run.executions[0], stats=(read, skewed))  # type: ignore[arg-type]
    bundling = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=4096))  # type: ignore[arg-type]
    [f] = rule("skew", with_(run, executions=(execution,), stages=(run.stages[0], bundling)))
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed, f.fix.stage) == (
        "batch_size",
        4096,
        1000,
        1,
    )


def test_batches_that_bundle_blocks_into_few_long_tasks_that_leave_a_slot_idle_are_skew() -> None:
    """Four tasks of 4,096 rows over blocks of 1,000 on 2 slots, three as long as each other, yet the first ran
    alone for 4 s while the blocks of the next were read: 2.15 s of idle slot time in an 11 s run."""
    run = two_stage_run()
    read = with_(run.executions[0].stats[0], block_rows=Dist.of([1000.0] * 10))
    even = with_(run.executions[0].stats[1], task_s=Dist.of([4.0, 4.0, 4.0, 0.3]))
    execution = with_(run.executions[0], stats=(read, even))  # type: ignore[arg-type]
    bundling = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=4096))  # type: ignore[arg-type]
    uid = "0/MapBatches(work)_2"
    spans = (
        TaskSpan(uid, 0, 1.0, 5.0),
        TaskSpan(uid, 1, 5.0, 9.0),
        TaskSpan(uid, 2, 5.2, 9.2),
        TaskSpan(uid, 3, 9.0, 9.3),
    )
    bundled = with_(run, executions=(execution,), stages=(run.stages[0], bundling), tasks=spans)
    [f] = rule("skew", bundled)
    assert f.fix is not None and (f.fix.knob, f.fix.proposed) == ("batch_size", 1000)
    assert "bundles 4.1 blocks" in f.symptom
    assert f.gain == pytest.approx(11.0 / (11.0 - 2.15))  # the idle slot time it measured, recovered
    assert rule("skew", with_(bundled, tasks=())) == []  # no spans: bundling alone shows nothing to go by
    unbundled = with_(bundled, stages=run.stages)  # the same tasks with batches of one block: not skew
    assert rule("skew", unbundled) == []


def test_a_batch_of_one_block_and_a_few_rows_of_the_next_bundles_nothing() -> None:
    """batch_size 50 over blocks of 45 rows (a filter dropped a tenth): even tasks, and idle slots that come
    from something else (a reservation upstream), are not skew."""
    run = two_stage_run()
    read = with_(run.executions[0].stats[0], block_rows=Dist.of([45.0] * 10))
    even = with_(run.executions[0].stats[1], task_s=Dist.of([0.65] * 10))
    execution = with_(run.executions[0], stats=(read, even))  # type: ignore[arg-type]
    fifty = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=50))  # type: ignore[arg-type]
    uid = "0/MapBatches(work)_2"
    spans = tuple(TaskSpan(uid, i, 1.0 + i, 1.65 + i) for i in range(10))  # one at a time: a slot idle
    assert rule("skew", with_(run, executions=(execution,), stages=(run.stages[0], fifty), tasks=spans)) == []


def test_one_straggler_among_many_tasks_is_skew_when_the_slots_it_left_idle_cost_time() -> None:
    """Sixteen tasks, one of 6 s and fifteen of 0.1 s on 2 slots: the p90 of the tasks shows nothing, the
    slowest against the median does, and the other slot sat idle for most of the 6 s."""
    run = two_stage_run()
    times = [6.0] + [0.1] * 15
    straggling = with_(run.executions[0].stats[1], task_s=Dist.of(times))
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], straggling))  # type: ignore[arg-type]
    uid = "0/MapBatches(work)_2"
    spans = (TaskSpan(uid, 0, 1.0, 7.0), *(TaskSpan(uid, i, 1.0 + 0.3 * i, 1.2 + 0.3 * i) for i in range(1, 16)))
    [f] = rule("skew", with_(run, executions=(execution,), tasks=spans))
    assert f.fix is not None and f.fix.knob == "repartition"
    assert any(e.metric == "slowest task / median" for e in f.evidence)
    assert rule("skew", with_(run, executions=(execution,))) == []  # no spans: no idle time to go by


def _pool_run(replicas: int, cores_each: float, read_cores: float = 0.05 / 15):  # type: ignore[no-untyped-def]
    """range -> an actor pool of ``replicas`` (0.25 CPU each) -> write, on 2 CPUs; each replica burnt
    ``cores_each`` cores per busy second, the read ``read_cores`` over the 15 s run."""
    read, model = stage(0, "range", kind=StageKind.READ), stage(1, "map_batches", "Model", StageKind.ACTOR,
                                                                  num_cpus=0.25, concurrency=replicas)  # fmt: skip
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,))
    m_op = Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), compute="actors", max_concurrency=replicas,
                    num_cpus=0.25)  # fmt: skip
    busy = op_stats(m_op.uid, 60_000, 40.0, 40.0 * cores_each, tasks=20)
    read_stats = op_stats(r_op.uid, 60_000, 0.1, read_cores * 15.0, tasks=20)
    return pipeline([(read, r_op, read_stats), (model, m_op, busy)], wall=15.0)


def test_more_compute_bound_replicas_than_cores_is_a_pool_too_large() -> None:
    [f] = rule("oversized-pool", _pool_run(4, 0.48))  # four replicas sharing two cores
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("concurrency", 4, 2)
    assert rule("oversized-pool", _pool_run(4, 0.1)) == []  # they wait (a service), not compute: no claim
    assert rule("oversized-pool", _pool_run(2, 0.95)) == []  # one replica per core


def test_a_pool_that_fills_the_cores_a_busy_reader_leaves_is_too_large_too() -> None:
    """The reader burns 0.4 of the 2 cores; four replicas share the other 1.6 (0.38 each, 1.52 in all): short
    of 80% of 2 cores, but every core the pool could have."""
    [f] = rule("oversized-pool", _pool_run(4, 0.38, read_cores=0.4))
    burnt = next(e for e in f.evidence if e.metric == "cores the replicas kept busy together")
    assert burnt.value == pytest.approx(1.52) and burnt.threshold == pytest.approx(0.8 * 1.6)
    assert f.fix is not None and f.fix.proposed == 2
    assert rule("oversized-pool", _pool_run(4, 0.1, read_cores=1.5)) == []  # a busy reader, a pool that waits


def test_count_in_the_middle_names_its_line() -> None:
    run = with_(two_stage_run(), materializations=(Materialization(1.0, "count", "pipe.py:12", 1),))
    [f] = rule("materialize-mid-pipeline", run)
    assert "pipe.py:12" in f.symptom and f.fix is not None and f.fix.knob == "remove .count()"
    at_the_end = with_(two_stage_run(), materializations=(Materialization(1.0, "count", "pipe.py:20", 2),))
    assert rule("materialize-mid-pipeline", at_the_end) == []


def progress(rows: list[float], running: float = 1.0) -> tuple[Sample, ...]:
    return tuple(
        Sample(float(t), "0/MapBatches(work)_2", {"rows_out": r, "tasks_running": running}) for t, r in enumerate(rows)
    )


def test_no_progress_for_a_long_time_is_a_stall() -> None:
    run = with_(two_stage_run(), op_samples=progress([0, 10, 20] + [20] * 40 + [30]))
    [f] = rule("stall", run)
    assert f.stage_key == "1:map_batches:work" and f.evidence[0].value >= 30
    assert rule("stall", with_(two_stage_run(), op_samples=progress(list(range(50))))) == []


def test_a_pause_the_watchdog_caught_is_a_stall_at_the_users_threshold() -> None:
    short = with_(two_stage_run(), op_samples=progress([0, 10] + [10] * 12))  # 12 s without progress
    assert rule("stall", short) == []  # under the guide's 30 s
    caught = Event(8.0, EventKind.STALL, "no rows moved for 6 s; workers of MapBatches(work) are in work (p.py:3)")
    [f] = rule("stall", with_(short, events=(caught,)))
    assert f.evidence[0].value == 12 and "work (p.py:3)" in f.cause


def test_pauses_that_resume_are_intermittent() -> None:
    rows = [0, 1] + [1] * 8 + [2, 3] + [3] * 8 + [4, 5]
    [f] = rule("intermittent-stall", with_(two_stage_run(), op_samples=progress([float(r) for r in rows])))
    assert f.evidence[0].value == 2
    assert rule("intermittent-stall", with_(two_stage_run(), op_samples=progress([0.0, 1.0, 2.0]))) == []


def test_an_actor_pool_reserving_every_cpu_blocks_its_feeders() -> None:
    read = stage(0, "read_parquet", kind=StageKind.READ)
    model = stage(1, "map_batches", "Model", kind=StageKind.ACTOR, concurrency=2, num_cpus=1.0)
    r_op = Operator("0/ReadFiles_1", "ReadFiles", (0,))
    m_op = Operator("0/MapBatches(Model)_2", "MapBatches(Model)", (1,), compute="actors", max_concurrency=2)
    run = pipeline([(read, r_op, op_stats(r_op.uid, 100, 1.0, 1.0)), (model, m_op, op_stats(m_op.uid, 100, 1, 1))])
    [f] = rule("blocking-actor-pool", run)
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("concurrency", 2, 1)
    roomy = pipeline(
        [(read, r_op, op_stats(r_op.uid, 100, 1.0, 1.0)), (model, m_op, op_stats(m_op.uid, 100, 1, 1))], cpus=8
    )
    assert rule("blocking-actor-pool", roomy) == []


# -- the engine -----------------------------------------------------------------------------------------


def test_a_fix_predicted_to_gain_several_times_more_ranks_first_whatever_its_level() -> None:
    found = {f.rule: f for f in diagnose(node_cpu(etl_run(), 45.0)).findings}
    batch, blocks = found["batch-size"], found["few-blocks"]  # 4,687 batches of 64 paying 3.3 ms each, 2 cores
    assert batch.gain > 3.0 and 1.5 < blocks.gain < 2.0  # the capacity model's figures, as the tuner sees them
    assert list(found)[:2] == ["batch-size", "few-blocks"]


def test_similar_predicted_gains_rank_by_the_guides_hierarchy_then_stake() -> None:
    found = {f.rule: f for f in diagnose(node_cpu(etl_run(), 45.0)).findings}
    batch, blocks = replace(found["batch-size"], gain=1.8), replace(found["few-blocks"], gain=1.2)
    assert [f.rule for f in sorted([batch, blocks], key=rank_key)] == ["few-blocks", "batch-size"]
    assert blocks.fix is not None and blocks.fix.level is Level.PARALLELISM
    unsure, sure = replace(blocks, gain=1.0), replace(batch, gain=2.5)  # 1.0: the model cannot say, the last tier
    assert sorted([unsure, sure], key=rank_key)[0] is sure


def test_within_a_tier_and_a_level_the_larger_predicted_gain_ranks_first() -> None:
    found = {f.rule: f for f in diagnose(node_cpu(etl_run(), 45.0)).findings}
    blocks = found["few-blocks"]
    small, large = replace(blocks, gain=1.2, confidence=0.9), replace(blocks, rule="other", gain=1.46, confidence=0.5)
    assert sorted([small, large], key=rank_key)[0] is large


def test_a_fix_two_branches_reach_is_offered_once_by_the_better_ranked_finding() -> None:
    from pipetune.diagnose.engine import once_per_fix

    found = {f.rule: f for f in diagnose(node_cpu(etl_run(), 45.0)).findings}
    first, other = found["few-blocks"], replace(found["few-blocks"], rule="slow-stage", gain=1.1)
    unfixed = replace(found["batch-size"], fix=None)
    assert once_per_fix([first, other, unfixed, replace(unfixed, rule="stall")]) == (
        first, unfixed, replace(unfixed, rule="stall"))  # fmt: skip


def test_gains_fall_in_fixed_tiers_of_a_factor_of_two() -> None:
    assert [gain_tier(g) for g in (0.5, 1.0, 1.99, 2.0, 3.9, 4.0, 9.0)] == [0, 0, 0, -1, -1, -2, -3]


def test_stages_are_classified_by_what_they_are_and_cost() -> None:
    types = {s.key: s.op_type for s in diagnose(download_run()).stages}
    assert types == {"0:range": OpType.DATA_LOADING, "1:map:fetch": OpType.DATA_LOADING}
    etl = {s.key: (s.op_type, s.num_cpus, s.batch_size) for s in diagnose(etl_run()).stages}
    assert etl["1:map_batches:enrich"] == (OpType.CPU_PREPROCESSING, (0.25, 0.5), (100, 1000))
    assert diagnose(gpu_run(50, 50)).stages[1].op_type is OpType.GPU_INFERENCE


def test_a_healthy_run_has_no_finding() -> None:
    assert diagnose(node_cpu(two_stage_run(read_busy=18.0, map_busy=20.0), 90.0)).findings == ()


def test_uneven_but_tiny_tasks_are_not_skew() -> None:
    run = two_stage_run()
    tiny = with_(run.executions[0].stats[1], task_s=Dist.of([0.01] * 8 + [0.03, 0.04]))
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], tiny))  # type: ignore[arg-type]
    assert rule("skew", with_(run, executions=(execution,))) == []


def test_low_cpu_ignores_stages_that_keep_up_anyway() -> None:
    run = download_run()
    stats = with_(run.executions[0].stats[0], busy_s=1.0, cpu_s=0.03)  # 30x faster than it needed to be
    execution = with_(run.executions[0], stats=(stats,))  # type: ignore[arg-type]
    assert rule("low-cpu", with_(run, executions=(execution,))) == []


def test_spilled_mib_holds_mebibytes_not_a_count_of_events() -> None:
    from pipetune.diagnose.facts import Facts
    from pipetune.diagnose.measure import measure
    from pipetune.model import Event, EventKind

    run = with_(two_stage_run(), events=(Event(0.0, EventKind.SPILL, "512 MiB spilled from the object store to disk"),))
    assert measure(Facts.of(run), "spilled_mib") == 512.0


def test_low_cpu_proposes_nothing_a_fixed_pool_of_one_actor_cannot_use() -> None:
    """A one-replica pool calling a slow service stays one replica whatever it reserves: lowering its
    num_cpus cannot add a slot, so the rule does not offer it (the capacity model says the gain is none)."""
    read, call = stage(0, "range", kind=StageKind.READ), stage(1, "map_batches", "Call", kind=StageKind.ACTOR)
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    a_op = Operator("0/MapBatches(Call)_2", "MapBatches(Call)", (1,), "actors", 1, 1.0)
    run = pipeline(
        [
            (read, r_op, op_stats(r_op.uid, 600, 0.5, 0.5, tasks=6)),
            (call, a_op, op_stats(a_op.uid, 600, 30.0, 0.9, tasks=60)),
        ],
        wall=15.0,
    )
    assert [f for f in rule("low-cpu", node_cpu(run, 12.0)) if f.stage_key == "1:map_batches:Call"] == []


def _one_replica_model(cores_each: float, cpu_pct: float, cpus: float = 4):  # type: ignore[no-untyped-def]
    """range -> a one-replica CPU model pool reserving 1 CPU, which burnt ``cores_each`` cores per busy second."""
    read = stage(0, "range", kind=StageKind.READ)
    model = stage(1, "map_batches", "Encoder", StageKind.ACTOR, num_cpus=1.0, concurrency=1)
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    m_op = Operator("0/MapBatches(Encoder)_2", "MapBatches(Encoder)", (1,), "actors", 1, 1.0)
    run = pipeline(
        [
            (read, r_op, op_stats(r_op.uid, 4000, 0.2, 0.2, tasks=16)),
            (model, m_op, op_stats(m_op.uid, 4000, 30.0, 30.0 * cores_each, tasks=16)),
        ],
        wall=32.0,
        cpus=cpus,
    )
    return node_cpu(run, cpu_pct)


def test_low_cpu_on_cpu_inference_that_fills_its_one_thread_doubles_its_reservation() -> None:
    """Ray sets OMP_NUM_THREADS from the whole CPUs an actor reserves: a replica burning its one thread while
    three cores idle gets two threads from num_cpus 2 (the guide's heavy-compute leaf), predicted at most 2x."""
    facts = Facts.of(_one_replica_model(0.97, 26.0))
    [f] = [f for f in RULES["low-cpu"](facts) if f.stage_key == "1:map_batches:Encoder"]
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.proposed) == ("num_cpus", 1.0, 2.0)
    assert f.symptom == "low CPU utilisation (CPU inference stage)"
    assert any(e.metric.startswith("threads Ray lets") and e.value == 1 for e in f.evidence)
    assert 1.5 < capacity.fix_speedup(facts, f.fix) <= 2.0


def test_low_cpu_leaves_cpu_inference_alone_when_its_thread_waits_or_no_node_has_room() -> None:
    assert [f for f in rule("low-cpu", _one_replica_model(0.4, 26.0)) if f.fix and f.fix.stage == 1] == []
    assert [f for f in rule("low-cpu", _one_replica_model(0.97, 45.0, cpus=1)) if f.fix and f.fix.stage == 1] == []


def test_a_threads_gain_is_bounded_by_the_cores_left_idle() -> None:
    facts = Facts.of(_one_replica_model(0.97, 40.0, cpus=2))  # 1.2 cores idle: one more thread, at most
    op = facts.operator_of(1)
    assert op is not None
    assert capacity.threads_speedup(facts, op, 2.0) == pytest.approx(2.0)
    assert capacity.threads_speedup(facts, op, 1.5) == 1.0  # floor(1.5) = 1 thread: no more than before
    assert capacity.threads_speedup(Facts.of(_one_replica_model(0.97, 80.0, cpus=2)), op, 2.0) == pytest.approx(1.4)
