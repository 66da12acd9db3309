"""The script's loops: recorded figures, what the doctor makes of them, and how tuning judges them. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipetune.capture import ConsumerSamples, ExecutionStarted
from pipetune.diagnose import consumption, diagnose
from pipetune.diagnose.consumers import parse_source
from pipetune.model import Sample
from pipetune.record.consume import ConsumerLog, rows_in, source_of
from pipetune.tune import objective
from tests.unit.builders import looped, two_stage_run, with_


def test_a_loop_is_timed_per_batch_and_stays_one_consumer_over_epochs() -> None:
    sent: list[dict[str, dict[str, float]]] = []
    log = ConsumerLog(sent.append)
    loop = log.wrap([{"x": [1, 2, 3]}, {"x": [4, 5]}], source_of(2, None))
    for _epoch in range(2):
        assert [len(b["x"]) for b in loop] == [3, 2]
    last = sent[-1]["consumer:2"]
    assert (last["batches"], last["rows"], last["ray_stats"]) == (4.0, 10.0, 0.0)
    assert last["blocked_s"] >= last["first_wait_s"] >= 0.0 and last["user_s"] >= 0.0


def test_a_loop_reports_at_1_2_4_8_batches_whatever_the_clock_says() -> None:
    sent: list[dict[str, dict[str, float]]] = []
    assert len(list(ConsumerLog(sent.append).wrap([{"x": [i]} for i in range(9)], "consumer:0"))) == 9
    counts = [v["consumer:0"]["batches"] for v in sent]
    assert {1.0, 2.0, 4.0, 8.0} <= set(counts) and counts[0] == 0.0 and counts[-1] == 9.0


def test_a_break_closes_rays_iterator_and_keeps_what_was_taken() -> None:
    closed: list[bool] = []

    def batches() -> Iterator[dict[str, list[int]]]:
        try:
            yield from ({"x": [i]} for i in range(10))
        finally:
            closed.append(True)

    sent: list[dict[str, dict[str, float]]] = []
    for i, _ in enumerate(ConsumerLog(sent.append).wrap(batches(), "consumer:1")):
        if i == 2:
            break
    assert closed == [True] and sent[-1]["consumer:1"]["batches"] == 3.0


class _Timer:
    def __init__(self, value: float) -> None:
        self.value = value

    def get(self) -> float:
        return self.value


class _RayStats:
    """The few fields of Ray's DatasetStats the adapter reads."""

    iter_batches_total, iter_rows_total = 7, 700
    iter_total_blocked_s, iter_user_s = _Timer(3.0), _Timer(1.0)
    iter_next_batch_s, iter_blocked_batching_s, iter_time_to_first_batch_s = _Timer(0.2), _Timer(0.1), _Timer(0.5)


def test_rays_own_statistics_win_once_its_batch_iterator_reports_them() -> None:
    sent: list[dict[str, dict[str, float]]] = []
    log = ConsumerLog(sent.append)

    def ray_iterable() -> Iterator[int]:
        log.on_stats(_RayStats())  # what Ray's BatchIterator does on the consumer's thread, before batch one
        yield from range(3)

    assert list(log.wrap(ray_iterable(), "consumer:4/1")) == [0, 1, 2]
    last = sent[-1]["consumer:4/1"]
    assert (last["batches"], last["rows"], last["blocked_s"], last["first_wait_s"]) == (7.0, 700.0, 3.0, 0.5)
    assert last["ray_stats"] == 1.0 and parse_source("consumer:4/1") == (4, 1)


@pytest.mark.parametrize(("batch", "rows"), [({"a": [1, 2]}, 2), ([1, 2, 3], 3), (object(), 1)])
def test_rows_of_a_batch_whatever_its_format(batch: Any, rows: int) -> None:
    assert rows_in(batch) == rows


def test_steady_blocked_share_leaves_the_start_up_wait_out() -> None:
    run = looped(two_stage_run(), blocked_s=6.0, user_s=2.0, first_wait_s=1.5)
    (c,) = consumption(run)
    assert c.blocked_s == pytest.approx(6.0) and c.first_wait_s == 1.5
    assert c.blocked_share == pytest.approx(0.75)
    assert c.demand_rows_per_s == pytest.approx(5000.0) and c.from_ray


def test_a_loop_of_too_few_batches_says_nothing() -> None:
    assert consumption(looped(two_stage_run(), blocked_s=6.0, user_s=2.0, batches=3)) == []


def _rules(run: Any) -> dict[str, Any]:
    return {f.rule: f for f in diagnose(run).findings}


def test_a_loop_that_waits_is_data_bound_on_the_producers_slowest_stage() -> None:
    found = _rules(looped(two_stage_run(), blocked_s=6.0, user_s=2.0))  # demand 5,000 rows/s > capacity 1,000
    assert found["data-bound"].stage == 1 and "75%" in found["data-bound"].symptom
    assert "consumer-bound" not in found


def test_a_loop_that_never_waits_is_consumer_bound_first_and_has_no_pipeline_fix() -> None:
    findings = diagnose(looped(two_stage_run(), blocked_s=0.1, user_s=9.0)).findings
    assert findings[0].rule == "consumer-bound" and findings[0].fix is None and findings[0].stage == 2
    assert any(e.metric.startswith("producer capacity") for e in findings[0].evidence)


def test_a_loop_that_waits_on_a_producer_that_keeps_up_on_average_gets_a_deeper_prefetch() -> None:
    # demand 10,000 rows over 12 s of its own time: 833 rows/s, under the producer's 1,000 rows/s capacity
    found = _rules(looped(two_stage_run(), blocked_s=4.0, user_s=12.0))
    fix = found["shallow-prefetch"].fix
    assert fix is not None and (fix.knob, fix.current, fix.stage) == ("prefetch_batches", None, 2)
    assert fix.proposed >= 2  # at least twice Ray's default of 1, and enough batches for one output block


def test_one_split_starving_while_the_other_has_a_queue_is_uneven() -> None:
    run = looped(two_stage_run(), blocked_s=6.0, user_s=2.0, split=0, index=2)
    run = looped(run, blocked_s=0.1, user_s=9.0, split=1, index=2)
    finding = _rules(run)["uneven-splits"]
    assert finding.stage == 2 and "split 0" in finding.symptom


def test_both_splits_waiting_is_not_uneven() -> None:
    run = looped(two_stage_run(), blocked_s=6.0, user_s=2.0, split=0, index=2)
    run = looped(run, blocked_s=4.0, user_s=4.0, split=1, index=2)
    assert "uneven-splits" not in _rules(run)


def _shuffled_loop() -> Any:
    run = looped(two_stage_run(), blocked_s=6.0, user_s=2.0, batch_size=256, local_shuffle_buffer_size=10_000)
    samples = tuple(Sample(s.t, s.source, {**s.values, "batching_wait_s": 3 * s.values["user_s"]})
                    for s in run.consumer_samples)  # the loop waits on its shuffle 3x its own step  # fmt: skip
    return with_(run, consumer_samples=samples)


def test_a_shuffle_buffer_the_loop_waits_on_longer_than_its_step_is_halved() -> None:
    fix = _rules(_shuffled_loop())["shuffle-buffer"].fix
    assert fix is not None and (fix.knob, fix.current, fix.proposed) == ("local_shuffle_buffer_size", 10_000, 5_000)


def test_a_probe_is_judged_by_its_loop_time_predicted_for_the_baselines_batches() -> None:
    probe = looped(two_stage_run(), blocked_s=1.0, user_s=3.0, batches=32, first_wait_s=0.5)
    assert objective.seconds(probe, {}) == pytest.approx(4.5)  # its own loop: start-up + 32 batches
    assert objective.seconds(probe, {"consumer:2": 320.0}) == pytest.approx(0.5 + 4.0 * 10)
    assert objective.consumed(probe) == {"consumer:2": 32.0}
    assert objective.seconds(two_stage_run(), {}) == 11.0  # no loop: the run's wall time


def test_a_probe_stops_once_every_loop_took_its_batches_and_not_before() -> None:
    done = objective.ProbeDone({"consumer:2/0": 100.0, "consumer:2/1": 10.0})
    assert done(ExecutionStarted(0, 1.0)) is None
    assert done(ConsumerSamples(2.0, {"consumer:2/0": {"batches": 40.0}})) is None  # split 1 not seen yet
    assert done(ConsumerSamples(3.0, {"consumer:2/1": {"batches": 10.0}})) == objective.PROBE_REASON
    assert objective.ProbeDone({"consumer:2": 5.0})(ConsumerSamples(1.0, {"consumer:2": {"batches": 5.0}})) is None


def _proposals(run: Any, allow: frozenset[str] = frozenset()) -> list[Any]:
    """Every proposal the policy would make, best first, as the study would see them one by one."""
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided, View

    out, tried = [], frozenset[str]()
    while (p := ModelGuided().propose(View(Settings(), run, tried, allow=allow))) is not None and len(out) < 12:
        out.append(p)
        tried = tried | {Settings().merged(p.settings).collapsed().key()}
    return out


def test_tuning_never_changes_what_the_loop_receives_unless_allowed() -> None:
    run = _shuffled_loop()
    touched = {(s.selector, s.knob) for p in _proposals(run) for s in p.settings.stages}
    assert ("2", "batch_size") not in touched and ("2", "local_shuffle_buffer_size") not in touched
    allowed = _proposals(run, frozenset({"iterator.local_shuffle_buffer_size"}))
    assert ("2", "local_shuffle_buffer_size") in {(s.selector, s.knob) for p in allowed for s in p.settings.stages}


def test_a_probe_that_changed_the_loops_batch_is_predicted_for_the_baselines_rows() -> None:
    probe = looped(two_stage_run(), blocked_s=1.0, user_s=3.0, batches=32, rows=6_400, first_wait_s=0.5)
    assert objective.consumed_rows(probe) == {"consumer:2": 6_400.0}
    # the baseline's loop took 320 batches of 100 rows (32,000 rows); this one takes batches of 200
    assert objective.seconds(probe, {"consumer:2": 320.0}, {"consumer:2": 32_000.0}) == pytest.approx(0.5 + 4.0 * 5)


def test_a_consumer_bound_loop_gets_its_own_batch_doubled_only_when_allowed() -> None:
    run = looped(two_stage_run(), blocked_s=0.1, user_s=9.0, batch_size=64)
    assert not any(s.selector == "2" and s.knob == "batch_size" for p in _proposals(run) for s in p.settings.stages)
    allowed = _proposals(run, frozenset({"iterator.batch_size"}))
    loop = [p for p in allowed if p.rule == "loop-batch"]
    assert [(s.selector, s.knob, s.value) for p in loop for s in p.settings.stages] == [("2", "batch_size", 128)]


def test_a_probe_is_boxed_from_its_loops_start_not_the_scripts() -> None:
    done = objective.ProbeDone({"consumer:2": 100.0}, box_s=10.0)
    assert done(ExecutionStarted(0, 30.0)) is None  # a slow start-up of the script is not held against it
    assert done(ConsumerSamples(31.0, {"consumer:2": {"batches": 0.0}})) is None  # the loop starts
    assert done(ConsumerSamples(40.0, {"consumer:2": {"batches": 4.0}})) is None
    assert done(ConsumerSamples(41.5, {"consumer:2": {"batches": 5.0}})) == objective.boxed_reason(10.0)


def test_a_probe_is_extrapolated_at_its_steady_pace_not_its_ramp_up() -> None:
    """16 batches in 4 s while the pipeline ramps up, then 16 in 1 s: the rest goes at the later pace."""
    run = looped(two_stage_run(), blocked_s=1.0, user_s=4.0, batches=32, rows=3_200, first_wait_s=0.5, steps=2)
    ramp = {"batches": 16.0, "rows": 1_600.0, "blocked_s": 0.5 + 3.2, "user_s": 0.8, "first_wait_s": 0.5}
    samples = list(run.consumer_samples)
    samples[1] = Sample(samples[1].t, samples[1].source, ramp)
    done = samples[-1].values
    samples[-1] = Sample(samples[-1].t, samples[-1].source, {**done, "blocked_s": 0.5 + 3.4, "user_s": 1.6})
    probe = with_(run, consumer_samples=tuple(samples))
    (c,) = consumption(probe)
    assert c.late_s_per_row == pytest.approx(1.0 / 1_600)  # 0.2 s blocked + 0.8 s own over the last 1,600 rows
    # the first wait, 5 s taken for 3,200 rows, the other 28,800 at the steady pace (not 10x the 5 s)
    assert objective.seconds(probe, {}, {"consumer:2": 32_000.0}) == pytest.approx(0.5 + 5.0 + 28_800 / 1_600)
