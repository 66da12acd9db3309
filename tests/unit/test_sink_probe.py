"""A trial of a pipeline that ends in a sink is a probe: stopped once its sink's steady rate is known within the
noise, and judged by the full-run time that rate predicts."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import cast

import pytest

from pipetune._serde import from_plain, to_plain
from pipetune.capture import ExecutionStarted, OpId, OpSamples
from pipetune.diagnose import rows_done
from pipetune.model import Operator, RunStatus, Sample, StageKind
from pipetune.tune import objective
from pipetune.tune.study import Sink
from tests.unit.builders import stage, two_stage_run, with_

SINK = "0/MapBatches(work)_2"


def progress(t: float, rows_per_s: float = 1_000.0, start: float = 3.0, bytes_per_row: float = 8.0) -> dict[str, float]:
    """The sink's counters at ``t``: it starts finishing rows at ``start`` (a 400-row task a time); 400 rows wait
    in running tasks."""
    done = max(t - start, 0.0) * rows_per_s
    received = done + 400.0
    return {"rows_in": received, "bytes_in": received * bytes_per_row, "bytes_done": done * bytes_per_row,
            "tasks_finished": float(done // 400)}  # fmt: skip


def test_rows_done_are_the_received_rows_in_the_share_of_input_bytes_finished_tasks_processed() -> None:
    assert rows_done(progress(5.0)) == pytest.approx(2_000.0)
    assert rows_done({"rows_in": 100.0}) == 0.0  # nothing finished, or Ray did not say
    assert rows_done({"rows_in": 100.0, "bytes_in": 10.0, "bytes_done": 12.0}) == 100.0  # never past what arrived


def test_a_steady_line_leaves_out_the_ramp_up_and_states_its_error() -> None:
    points = [(float(t), rows_done(progress(float(t)))) for t in range(12)]
    line = objective.steady_line(points)
    assert line is not None and line.slope == pytest.approx(1_000.0) and line.rel_err == pytest.approx(0.0, abs=1e-9)
    assert line.reaches(20_000.0) == pytest.approx(23.0)
    assert objective.steady_line(points[:7]) is None  # 3 points past the ramp-up: too few to state an error
    jitter = random.Random(7)
    noisy = [(t, d * jitter.uniform(0.7, 1.3)) for t, d in points]
    rough = objective.steady_line(noisy)
    assert rough is not None and rough.rel_err > 0.05


def test_progress_that_moves_in_a_few_large_steps_fits_no_line_however_often_it_is_sampled() -> None:
    """Embed's trial of Ray's defaults: four 750-row blocks, each a single batch, two actors; sampled every
    second, the share stood at 0.25 from t=31 and at 0.5 from t=50; a line through those two steps reached
    the whole at 101 s, where those settings run 59-62 s in full. Each repeat is the same step seen again."""
    steps = [(float(t), 0.0 if t < 31 else 0.25 if t < 50 else 0.5) for t in range(2, 62)]
    assert objective.steady_line(steps) is None
    assert not objective.past_box(steps, Sink(1.0, 0.0, 3, read=True), box_s=60.0)
    five = [(float(t), min(t // 10, 5) / 10) for t in range(10, 62)]  # five moves, each held ten samples
    assert objective.steady_line(five) is not None


def _started(sink_stages: tuple[int, ...] = (1,)) -> ExecutionStarted:
    ops = (Operator("0/ReadRange_1", "ReadRange", (0,)), Operator(SINK, "MapBatches(work)", sink_stages))
    return ExecutionStarted(0, 1.0, "ds", ops)


def _sampled(t: float, **kw: float) -> OpSamples:
    return OpSamples(t, {OpId.parse("0/ReadRange_1"): {"rows_out": 1.0}, OpId.parse(SINK): progress(t, **kw)})


def test_a_sink_probe_stops_once_its_rate_is_known_within_the_noise_and_half_the_rows_are_to_come() -> None:
    done = objective.SinkProbeDone(Sink(rows=40_000.0, tail_s=1.0, stage=1), noise_pct=5.0)
    assert done(_started()) is None
    seen = [done(_sampled(float(t))) for t in range(2, 12)]
    assert seen.index(objective.SINK_PROBE_REASON) == 6  # t=8: the fifth sample with rows done (4..8)
    late = objective.SinkProbeDone(
        Sink(rows=8_000.0, tail_s=1.0, stage=1), noise_pct=5.0
    )  # half done by t=8: runs in full
    late(_started())
    assert all(late(_sampled(float(t))) is None for t in range(2, 12))
    fused = objective.SinkProbeDone(Sink(rows=40_000.0, tail_s=1.0, stage=1), noise_pct=5.0)
    fused(_started(sink_stages=(0, 1)))  # the read fused into the last operator: its inputs are read tasks,
    assert all(fused(_sampled(float(t))) is None for t in range(2, 12))  # and this one's share is not known


def test_a_sink_probe_is_still_ended_by_its_time_box() -> None:
    done = objective.SinkProbeDone(Sink(rows=1e9, tail_s=0.0, stage=1), noise_pct=5.0, box_s=4.0)
    done(_started())
    assert done(_sampled(4.0)) is None and done(_sampled(5.0)) == objective.time_boxed(4.0)(_sampled(5.0))
    assert str(done(_sampled(5.0))).startswith("stopped at its time box")


def test_a_sink_probe_known_to_end_past_its_time_box_stops_once_its_rate_is_steady() -> None:
    """At 500 rows/s, 40,000 rows end at t=83 s, far past a 30 s box: stopped at the tenth point past the ramp-up
    (t=13), not at t=30. A box the line may still make, or a rate still climbing, leaves the trial running."""
    sink = Sink(rows=40_000.0, tail_s=1.0, stage=1)
    slow = objective.SinkProbeDone(sink, noise_pct=0.0, box_s=30.0)  # no noise band: only the box can stop it
    slow(_started())
    seen = [slow(_sampled(float(t), rows_per_s=500.0)) for t in range(2, 20)]
    assert seen.index(objective.SINK_PAST_BOX_REASON) == 11  # t=13: rows done at 4..13
    may_make_it = objective.SinkProbeDone(sink, noise_pct=0.0, box_s=45.0)  # ends at t=43 s plus 1 s of tail
    may_make_it(_started())
    assert objective.SINK_PAST_BOX_REASON not in [may_make_it(_sampled(float(t))) for t in range(2, 20)]
    climbing = [(float(t), 50.0 * (t - 3) ** 2 / 40_000) for t in range(3, 16)]  # replicas still coming online
    assert not objective.past_box(climbing, sink, 30.0)
    assert objective.past_box([(t, 500.0 * (t - 3) / 40_000) for t, _ in climbing], sink, 30.0)


@pytest.mark.parametrize("reason", objective.SINK_REASONS)
def test_a_sink_probe_is_judged_by_the_full_run_time_its_line_predicts(reason: str) -> None:
    samples = tuple(Sample(float(t), SINK, progress(float(t))) for t in range(2, 9))
    probe = with_(two_stage_run(), status=RunStatus.STOPPED, error=reason, wall_s=9.0, op_samples=samples)
    assert objective.is_probe(probe)
    assert objective.seconds(probe, {}, None, Sink(rows=20_000.0, tail_s=1.5, stage=1)) == pytest.approx(
        3.0 + 20.0 + 1.5
    )
    assert objective.seconds(probe, {}) is None  # no baseline sink to predict for: not a measurement


def test_the_baselines_sink_is_its_last_operators_rows_and_the_time_after_its_execution() -> None:
    sink = objective.sink_of(two_stage_run())  # wall 11 s, the execution ended at 11 s
    assert sink == Sink(rows=10_000.0, tail_s=0.0, stage=1)
    assert objective.sink_of(with_(two_stage_run(), wall_s=12.5)) == Sink(rows=10_000.0, tail_s=1.5, stage=1)
    assert objective.sink_of(with_(two_stage_run(), status=RunStatus.FAILED)) is None
    run = two_stage_run()
    fused = Operator("0/ReadFiles->MapBatches(work)_1", "ReadFiles->MapBatches(work)", (0, 1))
    stats = dataclasses.replace(run.executions[0].stats[1], uid=fused.uid)
    execution = dataclasses.replace(run.executions[0], operators=(fused,), stats=(stats,))
    assert objective.sink_of(with_(run, executions=(execution,))) is None  # Ray counts its inputs in read tasks


def test_a_trial_is_probed_by_its_sink_once_the_baseline_measured_one() -> None:
    from pipetune.settings import Settings
    from pipetune.tune.loop import _stop_rule
    from pipetune.tune.steps import Step
    from pipetune.tune.study import Role, Spec, Study, Trial, Verdict, trial_of, trial_payload

    baseline = Trial(0, Role.BASELINE, Settings(), "", Settings(), "", "", "r0", "succeeded", 30.0, 100,
                     Verdict.BASELINE, sink=Sink(40_000.0, 0.5, 1))  # fmt: skip
    study = Study("s1", Spec("pipe.py"), (baseline,))
    assert study.sink == Sink(40_000.0, 0.5, 1)
    assert trial_of(json.loads(json.dumps(trial_payload(baseline)))) == baseline  # stored and read back whole
    assert isinstance(_stop_rule(Step(Role.TRIAL, Settings(), time_box_s=40.0), study), objective.SinkProbeDone)
    assert not isinstance(_stop_rule(Step(Role.CONFIRM, Settings()), study), objective.SinkProbeDone)  # in full
    assert isinstance(
        _stop_rule(Step(Role.BASELINE, Settings()), Study("s0", Spec("pipe.py"))), objective.SinkProbeDone
    )
    looped = Study("s2", Spec("pipe.py"), (dataclasses.replace(baseline, consumed={"c": 9.0}),))
    assert looped.sink is None  # a loop's pipeline is probed by its batches instead


def test_a_sink_that_reads_is_measured_by_the_share_of_its_read_tasks_input_done() -> None:
    run = two_stage_run()
    fused = Operator("0/ReadFiles->MapBatches(work)_1", "ReadFiles->MapBatches(work)", (0, 1))
    stats = dataclasses.replace(run.executions[0].stats[1], uid=fused.uid, rows_in=20)  # 20 read tasks, as rows
    execution = dataclasses.replace(run.executions[0], operators=(fused,), stats=(stats,))
    shares = [0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # of 800 bytes of read tasks, from t=2 on
    samples = tuple(Sample(float(t), fused.uid, {"bytes_planned": 800.0, "bytes_done": 800.0 * x})
                    for t, x in enumerate(shares, start=2))  # fmt: skip
    reading = with_(run, executions=(execution,), op_samples=samples)
    sink = objective.sink_of(reading)
    assert sink == Sink(rows=1.0, tail_s=0.0, stage=0, read=True)
    assert objective.sink_points(reading, sink)[-1] == (9.0, pytest.approx(0.6))
    probe = with_(reading, status=RunStatus.STOPPED, error=objective.SINK_PROBE_REASON)
    assert objective.seconds(probe, {}, None, sink) == pytest.approx(13.0)  # 10% a second from t=3: all by t=13
    split = (Operator("0/ReadFiles_1", "ReadFiles", (0,)), Operator("0/MapBatches(work)_2", "MapBatches", (1,)))
    counted = {split[0].uid: {"rows_planned": 4_000.0}, split[1].uid: progress(5.0)}  # Ray expects 4,000 rows
    assert objective.share_done(split, counted, sink) == pytest.approx(0.5)  # a read split off: rows, of Ray's 4,000
    assert objective.share_done(split, {split[1].uid: progress(5.0)}, sink) is None  # no estimate: no probe
    assert objective.share_done((fused,), {fused.uid: samples[-1].values}, sink) == pytest.approx(0.6)


def _write_run(index: int, t: float) -> list[object]:
    """What the baseline's stop rule is told: stages (the last one writes), then an execution of read -> write."""
    from pipetune.capture import StageBuilt

    built = [StageBuilt(stage(0, "read_parquet", kind=StageKind.READ)), StageBuilt(stage(1, "write_parquet",
             kind=StageKind.WRITE))]  # fmt: skip
    ops = (Operator("0/ReadFiles_1", "ReadFiles", (0,)), Operator(f"{index}/Write_2", "Write", (1,)))
    return [*built, ExecutionStarted(index, t, "ds", ops)]


def _estimated(index: int, t: float, planned: float = 40_000.0) -> OpSamples:
    """The write at ``t`` (1,000 rows a second from t=3), its upstream read expecting ``planned`` rows."""
    return OpSamples(t, {OpId.parse("0/ReadFiles_1"): {"rows_planned": planned},
                         OpId.parse(f"{index}/Write_2"): progress(t)})  # fmt: skip


def test_the_baseline_is_probed_against_rays_estimate_of_the_rows_its_write_will_take() -> None:
    done = objective.SinkProbeDone(None, noise_pct=5.0)
    assert all(done(m) is None for m in _write_run(0, 1.0))
    seen = [done(_estimated(0, float(t))) for t in range(2, 12)]
    assert seen.index(objective.SINK_PROBE_REASON) == 6  # t=8: the fifth point with rows done, 5,000 of 40,000
    unknown = objective.SinkProbeDone(None, noise_pct=5.0)
    for m in _write_run(0, 1.0):
        unknown(m)
    assert all(unknown(_estimated(0, float(t), planned=0.0)) is None for t in range(2, 12))  # Ray has no estimate


def test_a_baseline_is_probed_only_in_a_first_execution_that_writes() -> None:
    second = objective.SinkProbeDone(None, noise_pct=5.0)
    for m in [*_write_run(0, 1.0)[:2], *_write_run(0, 1.0)[2:], *_write_run(1, 1.0)[2:]]:
        second(m)  # a .count() ran first, then the write: what follows the first execution is not known
    assert all(second(_estimated(1, float(t))) is None for t in range(2, 12))
    counted = objective.SinkProbeDone(None, noise_pct=5.0)
    ops = (Operator("0/ReadFiles_1", "ReadFiles", (0,)), Operator("0/Count_2", "Count", (1,)))
    counted(ExecutionStarted(0, 1.0, "ds", ops))  # no stage writes: a materialising call, the script goes on
    assert all(counted(_estimated(0, float(t))) is None for t in range(2, 12))


def test_a_probed_baselines_sink_is_the_whole_as_a_share_and_its_time_comes_from_its_line() -> None:
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided
    from pipetune.tune.steps import Finish, Step, conclude, next_step
    from pipetune.tune.study import Role, Spec, Study, Trial, Verdict

    run = two_stage_run(read_busy=0.7, map_busy=7.0)  # what the tasks that finished by t=9 did
    samples = tuple(s for t in range(2, 9) for s in (Sample(float(t), "0/ReadFiles_1", {"rows_planned": 20_000.0}),
                    Sample(float(t), SINK, progress(float(t)))))  # fmt: skip
    stopped = dataclasses.replace(run.executions[0], ended_t=9.0, ok=None)  # ended by the stop, neither way
    probe = with_(run, status=RunStatus.STOPPED, error=objective.SINK_PROBE_REASON, wall_s=9.0, op_samples=samples,
                  executions=(stopped,))  # fmt: skip
    assert objective.sink_of(probe) == Sink(rows=1.0, tail_s=0.0, stage=1, read=True)
    seen = conclude(Study("s1", Spec("pipe.py")), Step(Role.BASELINE, Settings()), probe)
    assert seen.verdict is Verdict.BASELINE and seen.seconds == pytest.approx(3.0 + 20.0)  # 20,000 rows by t=23
    baseline = Trial(0, Role.BASELINE, Settings(), "", Settings(), "", "", "r1", "stopped", 9.0, 5_000,
                     Verdict.BASELINE, measured_s=seen.seconds, probe=True, sink=objective.sink_of(probe))  # fmt: skip
    study = Study("s1", Spec("pipe.py"), (baseline,))
    step = next_step(study, probe, ModelGuided())  # measured, though stopped: not "nothing to tune from"
    assert isinstance(step, Step) or (step.ok and "baseline" not in step.reason)
    failed = dataclasses.replace(baseline, measured_s=None, probe=False, status="failed")
    assert not cast(Finish, next_step(Study("s2", Spec("pipe.py"), (failed,)), probe, ModelGuided())).ok


def _two_phase(t: float) -> OpSamples:
    """A 1-CPU read that runs ahead and ends at t=10, and the write behind it: 1,000 rows a second from t=2 while
    the read holds a CPU, 2,000 once it is done (40,000 rows end at t=26)."""
    done = max(min(t, 10.0) - 2.0, 0.0) * 1_000 + max(t - 10.0, 0.0) * 2_000
    read = {"rows_planned": 40_000.0, "bytes_planned": 100.0, "bytes_done": min(t / 10.0, 1.0) * 100.0}
    write = {"rows_in": done + 400.0, "bytes_in": (done + 400.0) * 8, "bytes_done": done * 8,
             "tasks_finished": float(done // 400)}  # fmt: skip
    return OpSamples(t, {OpId.parse("0/ReadFiles_1"): read, OpId.parse("0/Write_2"): write})


def test_a_probe_waits_for_an_upstream_operator_that_ends_early_and_fits_the_rate_after_it() -> None:
    done = objective.SinkProbeDone(None, noise_pct=5.0)
    for m in _write_run(0, 1.0):
        done(m)
    seen = {t: done(_two_phase(float(t))) for t in range(2, 26)}
    stopped = min(t for t, why in seen.items() if why == objective.SINK_PROBE_REASON)
    assert stopped == 14  # not while the read was still to end (t<10): the fifth point from t=10 on
    samples = tuple(Sample(float(t), uid, v) for t in range(2, stopped + 1)
                    for uid, v in ((str(op), v) for op, v in _two_phase(float(t)).values.items()))  # fmt: skip
    ops = cast(ExecutionStarted, _write_run(0, 1.0)[-1]).operators
    run = two_stage_run()
    execution = dataclasses.replace(run.executions[0], operators=ops, ended_t=float(stopped), ok=None)
    probe = with_(run, status=RunStatus.STOPPED, error=objective.SINK_PROBE_REASON, op_samples=samples,
                  executions=(execution,))  # fmt: skip
    assert objective.sink_probe_s(probe, Sink(1.0, 0.0, 1, read=True)) == pytest.approx(26.0)  # not 42: the first rate


def test_rows_counted_in_a_running_task_stop_a_probe_whose_operator_the_model_can_read() -> None:
    """One long task: its rows counted inside it (``udf_rows``) give a steady line, and the recorder makes the
    operator's figures of them when the probe stops it. Without them a probe waits for a finished task: the
    model reads what the run says its tasks did."""

    def one_task(t: float) -> OpSamples:
        values = {"rows_in": 40_000.0, "udf_rows": max(t - 3.0, 0.0) * 1_000}
        return OpSamples(t, {OpId.parse("0/ReadRange_1"): {"rows_out": 1.0}, OpId.parse(SINK): values})

    done = objective.SinkProbeDone(Sink(rows=40_000.0, tail_s=1.0, stage=1), noise_pct=5.0)
    assert done(_started()) is None
    assert objective.SINK_PROBE_REASON in [done(one_task(float(t))) for t in range(2, 15)]
    assert not objective.has_task_figures({"rows_in": 40_000.0, "bytes_in": 8.0, "bytes_done": 0.0})
    boxed = objective.SinkProbeDone(Sink(rows=40_000.0, tail_s=1.0, stage=1), noise_pct=5.0, box_s=30.0)
    boxed(_started())
    stops = [boxed(one_task(float(t))) for t in range(2, 16)]  # 43 s at this rate: a loser, stopped at once
    assert objective.SINK_PAST_BOX_REASON in stops


def _model_then_write(t: float, queued: float = 0.0) -> OpSamples:
    """A model fed four 750-row blocks (3,000 rows, 40 a second from t=3), counted inside its running tasks,
    then a write that takes each block as it ends: the write moves in 750-row steps."""
    counted = max(t - 3.0, 0.0) * 40.0
    written = counted // 750 * 750
    model = {"rows_in": 3_000.0, "rows_planned": 3_000.0, "udf_rows": counted}
    write = {"rows_in": written, "bytes_in": written * 8, "bytes_done": written * 8, "inqueue_blocks": queued,
             "tasks_finished": written // 750}  # fmt: skip
    return OpSamples(t, {OpId.parse("0/ReadRange_1"): {"rows_planned": 3_000.0, "rows_out": 1.0},
                         OpId.parse("0/MapBatches(model)_2"): model, OpId.parse("0/Write_3"): write})  # fmt: skip


def _model_write_run() -> list[object]:
    from pipetune.capture import StageBuilt

    built = [StageBuilt(stage(0, "range", kind=StageKind.READ)), StageBuilt(stage(1, "map_batches")),
             StageBuilt(stage(2, "write_parquet", kind=StageKind.WRITE))]  # fmt: skip
    ops = (Operator("0/ReadRange_1", "ReadRange", (0,)), Operator("0/MapBatches(model)_2", "MapBatches", (1,)),
           Operator("0/Write_3", "Write", (2,)))  # fmt: skip
    return [*built, ExecutionStarted(0, 1.0, "ds", ops)]


def test_a_sink_that_keeps_up_is_read_at_the_operator_feeding_it_where_that_one_is_counted_inside_its_tasks() -> None:
    """The write ends as its input ends: its progress is the model's, which moves with every batch. A write
    with blocks waiting at its input is the limit itself: read where it is, in its steps, and not probed."""
    done = objective.SinkProbeDone(None, noise_pct=5.0)
    assert all(done(m) is None for m in _model_write_run())
    seen = [done(_model_then_write(float(t))) for t in range(2, 40)]
    assert seen.index(objective.SINK_PROBE_REASON) == 6  # t=8: the fifth point with rows counted, 200 of 3,000
    ops = cast(ExecutionStarted, _model_write_run()[-1]).operators
    at_model = {str(op): v for op, v in _model_then_write(13.0).values.items()}
    assert objective.share_done(ops, at_model, None) == pytest.approx(400.0 / 3_000)  # the model's 400 rows
    assert objective.measured_op(ops, Sink(3_000.0, 0.0, 2), at_model) == ops[1]  # a finished baseline's sink too
    blocked = objective.SinkProbeDone(None, noise_pct=5.0)
    for m in _model_write_run():
        blocked(m)
    assert all(blocked(_model_then_write(float(t), queued=1.0)) is None for t in range(2, 40))
    waiting = {str(op): v for op, v in _model_then_write(13.0, queued=1.0).values.items()}
    assert objective.share_done(ops, waiting, None) == 0.0  # the write's own: no block of 750 written by t=13


def test_an_operator_that_reads_and_is_counted_inside_its_tasks_is_measured_against_the_rows_read() -> None:
    """Ray's defaults fuse the read into the operator after it, whose tasks then end only at the end of the run
    (embed's trial of them: its 3,000 rows in a few long tasks): its read tasks' bytes stand at 0 until they do.
    The baseline, with the read split off, measured the rows out of it once it had read everything."""
    run = two_stage_run()
    read, work = run.executions[0].operators
    reading = {"bytes_planned": 800.0, "bytes_done": 800.0, "rows_out": 4_000.0}
    samples = (Sample(2.0, read.uid, {**reading, "bytes_done": 400.0, "rows_out": 2_000.0}),
               Sample(3.0, read.uid, reading), Sample(3.0, work.uid, progress(3.0)))  # fmt: skip
    stopped = dataclasses.replace(run.executions[0], ended_t=4.0, ok=None)
    probe = with_(run, status=RunStatus.STOPPED, error=objective.SINK_PROBE_REASON, wall_s=4.0, op_samples=samples,
                  executions=(stopped,))  # fmt: skip
    sink = objective.sink_of(probe)
    assert sink == Sink(rows=1.0, tail_s=0.0, stage=1, read=True, read_rows=((0, 4_000.0),))
    assert from_plain(Sink, json.loads(json.dumps(to_plain(sink)))) == sink  # as a study stores it
    fused = Operator("0/ReadFiles->MapBatches(work)_1", "ReadFiles->MapBatches(work)", (0, 1))
    running = {fused.uid: {"bytes_planned": 800.0, "bytes_done": 0.0, "rows_in": 20.0, "udf_rows": 1_000.0}}
    assert objective.share_done((fused,), running, sink) == pytest.approx(0.25)  # 1,000 of the 4,000 rows read
    assert objective.share_done((fused,), running, Sink(1.0, 0.0, 1, read=True)) == 0.0  # no rows measured
    uncounted = {fused.uid: {**running[fused.uid], "udf_rows": 0.0, "bytes_done": 200.0}}
    assert objective.share_done((fused,), uncounted, sink) == pytest.approx(0.25)  # its read tasks' share, as before
    unfinished = with_(probe, op_samples=samples[:1])  # the probe stopped before the read had read everything
    assert objective.sink_of(unfinished) == Sink(rows=1.0, tail_s=0.0, stage=1, read=True)
    filtering = Operator(read.uid, "ReadFiles->Filter", (0, 2))  # a filter fused behind the read: its rows out
    filtered = with_(
        probe,
        executions=(dataclasses.replace(stopped, operators=(filtering, work)),),
        stages=(*run.stages, stage(2, "filter")),
    )  # are not what a count inside tasks stops at
    assert objective.sink_of(filtered) == Sink(rows=1.0, tail_s=0.0, stage=1, read=True)
    listing = Operator(read.uid, "ListFiles", (0,))  # read_parquet as Ray runs it: its rows out are 24 files
    files = Operator("0/ReadFiles_2", "ReadFiles", (0,))
    listed = with_(probe, executions=(dataclasses.replace(stopped, operators=(listing, files, work)),))
    assert objective.sink_of(listed) == Sink(rows=1.0, tail_s=0.0, stage=1, read=True)


def test_a_read_fused_with_a_counted_chain_is_measured_against_the_rows_its_read_tasks_will_output() -> None:
    """The http rows: the baseline runs the read fused with its per-row fetch, so it never sees the read end and
    measures no whole there; a trial of Ray's defaults runs a few long tasks of that one operator. Ray's read
    metadata says how many rows the read tasks will output; the rows counted inside the tasks move against
    it. A whole the baseline measured comes first."""
    fused = Operator("0/ReadRange->Map(fetch)->Write_1", "ReadRange->Map(fetch)->Write", (0, 1, 2))
    values = {"bytes_planned": 16_000.0, "bytes_done": 0.0, "rows_in": 2.0, "udf_rows": 600.0,
              "read_rows_planned": 2_400.0}  # fmt: skip
    unmeasured = Sink(1.0, 0.0, 0, read=True)
    assert objective.share_done((fused,), {fused.uid: values}, unmeasured) == pytest.approx(0.25)
    assert objective.share_done((fused,), {fused.uid: values}, None) == pytest.approx(0.25)  # a baseline's own
    measured = Sink(1.0, 0.0, 0, read=True, read_rows=((0, 1_200.0),))
    assert objective.share_done((fused,), {fused.uid: values}, measured) == pytest.approx(0.5)
    unknown = {**values, "read_rows_planned": 0.0, "bytes_done": 4_000.0}
    assert objective.share_done((fused,), {fused.uid: unknown}, unmeasured) == pytest.approx(0.25)  # bytes, as before
    uncounted = {**values, "udf_rows": 0.0, "bytes_done": 8_000.0}
    assert objective.share_done((fused,), {fused.uid: uncounted}, unmeasured) == pytest.approx(0.5)
    expanding = {**values, "rows_out": 3_000.0}  # a stage after the chain made five rows of each one read
    assert objective.share_done((fused,), {fused.uid: expanding}, unmeasured) == pytest.approx(0.25)
