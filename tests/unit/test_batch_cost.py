"""A stage's fixed cost per batch is measured, not assumed, once the study has run it at two batch sizes."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pipetune.diagnose import BatchCost, Facts
from pipetune.diagnose import capacity as predict
from pipetune.model import Dist, Run
from pipetune.settings import Settings
from pipetune.tune.policy import ModelGuided, Proposal, View, candidates
from pipetune.tune.steps import batch_costs
from pipetune.tune.study import Role, Spec, Study, Trial, Verdict
from tests.unit.builders import FRAME_PER_BATCH_S, calls, small_batches_run, stage, with_

FIXED_S, PER_ROW_S = 0.03, 1e-5  # a UDF that calls out once per batch: far more than Ray's framing of a batch


def per_row(batch: int) -> float:
    return FIXED_S / batch + PER_ROW_S


def test_the_fixed_cost_is_the_slope_over_one_over_the_batch_size() -> None:
    cost = predict.fit_batch_cost([(8, per_row(8)), (32, per_row(32)), (32, per_row(32) * 1.01)])
    assert cost is not None and cost.batches == (8, 32)
    assert cost.fixed_s == pytest.approx(FIXED_S, rel=0.02) and cost.per_row_s == pytest.approx(
        PER_ROW_S, abs=0.01 * per_row(32)
    )
    assert predict.fit_batch_cost([(8, 1e-3), (8, 2e-3)]) is None  # one batch size says nothing
    flat = predict.fit_batch_cost([(8, 1e-3), (64, 1.1e-3)])  # larger batches no cheaper: no fixed cost
    assert flat is not None and flat.fixed_s == 0.0


def small_batches(frame_s: float | None = 1250 * FRAME_PER_BATCH_S) -> Facts:
    return Facts.of(small_batches_run(frame_s))


def test_the_fixed_cost_is_rays_framing_per_batch_until_a_second_batch_size_is_measured() -> None:
    facts = small_batches()
    framed = predict.batch_model(facts, 1, 8)
    assert framed is not None and framed[1] == pytest.approx(FRAME_PER_BATCH_S)
    assert predict.batch_model(small_batches(frame_s=None), 1, 8) is None  # nothing measured: no model
    measured = Facts.of(facts.run, {1: BatchCost(0.012, 5e-4, (8, 32))})
    model = predict.batch_model(measured, 1, 8)
    assert model is not None and model[1] == pytest.approx(0.012)  # 12 ms of the 16 ms a batch takes
    grown = [p for p in _batch_moves(measured) if "measured at batch sizes 8, 32" in p.reason]
    framing = [p for p in _batch_moves(facts) if "framing measured on this run" in p.reason]
    assert grown and framing
    assert _size(grown[0]) > _size(framing[0])  # a larger fixed share asks for larger batches


def test_rays_framing_is_shared_by_every_batch_of_the_operators_batching_stages() -> None:
    facts = small_batches()
    op, stats = facts.operator_of(1), facts.stage_stats(1)
    assert op is not None and stats is not None
    assert predict.framing_per_batch(facts.run, op, stats, 10_000) == pytest.approx(FRAME_PER_BATCH_S)
    fused = dataclasses.replace(op, stages=(0, 1, 2))
    run = with_(facts.run, stages=(*facts.run.stages, stage(2, "map_batches", "more", batch_size=40)))
    per_batch = stats.frame_s / (10_000 / 8 + 10_000 / 40)  # type: ignore[operator]
    assert predict.framing_per_batch(run, fused, stats, 10_000) == pytest.approx(per_batch)


def test_where_no_task_ended_rays_framing_is_the_workers_time_outside_the_function_per_call() -> None:
    facts = small_batches(frame_s=None)
    op, stats = facts.operator_of(1), facts.stage_stats(1)
    assert op is not None and stats is not None
    assert predict.framing_per_batch(facts.run, op, stats, 10_000) is None  # finished tasks Ray did not time
    # a probe stopped the run inside its tasks: 1,000 calls of 8 rows, 3 s in the function, 5 s in the workers
    counted = (calls([(8, 0.003)] * 1000),)
    probed = Facts.of(with_map_stats(facts.run, running=True, busy_s=5.0, cpu_s=5.0, udf_s=3.0, calls=counted))
    inside = probed.stage_stats(1)
    assert inside is not None
    assert predict.framing_per_batch(facts.run, op, inside, 8_000) == pytest.approx(0.002)
    held_back = dataclasses.replace(inside, cpu_s=3.5)  # waited 1.5 s on backpressure: no framing in that
    assert predict.framing_per_batch(facts.run, op, held_back, 8_000) == pytest.approx(0.0005)
    waiting = dataclasses.replace(inside, cpu_s=1.0)  # the function waits itself: no CPU tells framing apart
    assert predict.framing_per_batch(facts.run, op, waiting, 8_000) is None
    model = predict.batch_model(probed, 1, 8)
    assert model is not None and model[1] == pytest.approx(0.002)
    read_first = dataclasses.replace(op, stages=(0, 1))  # a read's own work would be counted as framing
    assert predict.framing_per_batch(facts.run, read_first, inside, 8_000) is None
    two_counted = dataclasses.replace(inside, calls=(*inside.calls, calls([(40, 0.01)] * 200, stage=2)))
    assert predict.framing_per_batch(facts.run, op, two_counted, 8_000) is None  # whose is the time between?


def uneven_calls(fixed_s: float, per_row_s: float, jitter_s: float) -> list[tuple[int, float]]:
    """Blocks of 125 rows cut into batches of 16: seven of 16 rows and one of 13 each, every call off by a normal
    scatter of ``jitter_s`` (seeded)."""
    scatter = random.Random(0)
    return [(r, fixed_s + per_row_s * r + scatter.gauss(0, jitter_s)) for r in ([16] * 7 + [13]) * 40]


# 12 ms a call fixed plus 0.5 ms a row, at 8 rows and 5 (a block's last batch), each call off by 0.1 ms
TWELVE_MS_A_CALL = [(r, 0.012 + 5e-4 * r + 1e-4 * (-1) ** i) for i, r in enumerate(([8] * 4 + [5]) * 250)]


def with_map_stats(run: Run, **changes: object) -> Run:
    """The run with its map stage's figures (``small_batches_run``'s stage 1) changed."""
    execution = run.executions[0]
    stats = (execution.stats[0], dataclasses.replace(execution.stats[1], **changes))  # type: ignore[arg-type]
    return with_(run, executions=(dataclasses.replace(execution, stats=stats),))


def with_calls(run: Run, points: list[tuple[int, float]]) -> Run:
    """The run with its map stage's calls as ``points``."""
    return with_map_stats(run, calls=(calls(points),))


def test_a_runs_calls_of_several_sizes_measure_the_functions_own_fixed_cost_per_call() -> None:
    service = predict.call_cost(calls(uneven_calls(0.040, 1e-6, 2e-4)))  # a 40 ms service call per batch
    assert service is not None and service == pytest.approx(0.040, rel=0.02) and service < 0.040
    per_row_only = predict.call_cost(calls(uneven_calls(0.0, 2e-3, 2e-4)))  # work in proportion to rows
    assert per_row_only is not None and per_row_only < 1e-3
    scattered = predict.call_cost(calls(uneven_calls(0.004, 1e-3, 0.02)))  # the scatter hides 4 ms
    assert scattered == 0.0
    assert predict.call_cost(calls([(16, 0.04)] * 50)) is None  # one size: no line
    assert predict.call_cost(calls([(16, 0.04), (13, 0.04)])) is None  # two calls: no scatter to weigh


def test_the_fixed_cost_per_batch_adds_the_functions_own_cost_per_call_measured_on_the_run() -> None:
    """12 ms a call fixed plus 0.5 ms a row, at 8 rows and 5 (a block's last batch): the 16 ms a batch takes is
    mostly the call's own, which Ray's framing (0.8 ms a batch) does not see."""
    facts = Facts.of(with_calls(small_batches_run(), TWELVE_MS_A_CALL))
    model = predict.batch_model(facts, 1, 8)
    assert model is not None and model[1] == pytest.approx(FRAME_PER_BATCH_S + 0.012, rel=0.02)
    [move] = [p for p in _batch_moves(facts)]
    assert "12.0 ms a call fitted on this run's calls" in move.reason
    assert _size(move) > _size(_batch_moves(small_batches())[0])  # a larger fixed share asks for larger batches


def _batch_moves(facts: Facts) -> list[Proposal]:
    return [p for p in candidates(facts) if p.rule == "batch-size (model)"]


def _size(p: Proposal) -> int:
    return int(next(s.value for s in p.settings.stages if s.knob == "batch_size"))  # type: ignore[arg-type]


def _trial(seq: int, config: Settings, points: dict[str, tuple[int, float]], verdict: Verdict) -> Trial:
    role = Role.BASELINE if seq == 0 else Role.TRIAL
    return Trial(seq, role, config, "", Settings(), "", "", f"r{seq}", "succeeded", 10.0, 100, verdict,
                 batch_points=points)  # fmt: skip


def test_the_study_fits_each_stage_over_runs_that_differ_in_batch_sizes_alone() -> None:
    base = Settings()
    bigger = Settings.from_args(["1.batch_size=32"])
    fewer_cpus = Settings.from_args(["1.batch_size=64", "1.num_cpus=0.5"])  # moves the time per row too
    trials = (
        _trial(0, base, {"1": (8, per_row(8))}, Verdict.BASELINE),
        _trial(1, fewer_cpus, {"1": (64, per_row(8))}, Verdict.SLOWER),
        _trial(2, bigger, {"1": (32, per_row(32))}, Verdict.KEPT),
    )
    costs = batch_costs(Study("s1", Spec("pipe.py"), trials))
    assert set(costs) == {1} and costs[1].batches == (8, 32)
    assert costs[1].fixed_s == pytest.approx(FIXED_S)


def test_below_the_guides_range_a_framing_only_gain_is_a_lower_bound_and_the_trial_decides() -> None:
    """Framing of 0.3 ms a batch predicts a gain inside the noise; the guide's range (CPU preprocessing from 100
    rows) still asks for larger batches, and the UDF's own per-call cost is not measured: the move is proposed,
    as a lower bound. Once two batch sizes measured the fixed cost that small, it is not."""
    facts = small_batches(frame_s=1250 * 0.3e-3)
    [guided] = [p for p in candidates(facts) if p.rule == "batch-size"]
    assert guided.at_least and guided.predicted < 1.05 and _size(guided) >= 100
    view = View(Settings(), facts.run, frozenset(), noise_pct=5.0)
    assert ModelGuided().propose(view) == guided
    fitted = View(Settings(), facts.run, frozenset(), noise_pct=5.0, batch_costs={1: BatchCost(3e-4, 2e-3, (8, 32))})
    assert ModelGuided().propose(fitted) is None


def test_where_a_batch_costs_the_same_at_any_size_it_goes_to_a_tasks_rows_in_one_step() -> None:
    """A service call of 16 ms a batch, whatever its rows: the whole of each batch's time is fixed, so the model
    asks for no bound of its own; a task's rows bound the batch (a larger one would bundle blocks)."""
    points = [(r, 0.016 + 1e-5 * (-1) ** (i // 5)) for i, r in enumerate(([8] * 4 + [5]) * 250)]
    facts = Facts.of(with_calls(small_batches_run(), points))
    rows = predict.rows_per_task(facts, 1)
    assert rows is not None and rows > 8 * 64  # more than the x64 a step was once held to
    assert predict.batch_for(facts, 1, 8) == predict.UNBOUNDED_BATCH
    assert predict.sized_batch(facts, 1, 8) == int(rows)


def test_the_summary_and_the_json_view_show_the_fixed_cost_a_call_the_run_measured() -> None:
    from pipetune.report.figures import run_view
    from pipetune.report.terminal import console, run_summary

    run = small_batches_run()
    measured = with_calls(run, TWELVE_MS_A_CALL)
    terminal = console(width=200)
    with terminal.capture() as shown:
        terminal.print(run_summary(measured))
    assert "fixed cost a call, fitted on the run's calls of several sizes: map_batches(work) 12.0 ms" in shown.get()
    figures = [s["figures"]["call_fixed_s"] for s in run_view(measured)["stages"]]
    assert figures[0] is None and figures[1] == pytest.approx(0.012, rel=0.02)
    with terminal.capture() as plain:
        terminal.print(run_summary(run))
    assert "fixed cost a call" not in plain.get()  # nothing measured: nothing said


def test_where_the_run_cannot_measure_a_batchs_cost_the_guides_batch_is_proposed_and_the_trial_decides() -> None:
    """No framing timed and no calls of several sizes: the model cannot size the batch or weigh the move, so the
    guide's range gives the size and the gain is a floor (1.0) for the trial to decide, not dropped."""
    facts = small_batches(frame_s=None)
    assert predict.batch_model(facts, 1, 8) is None
    [guided] = [p for p in candidates(facts) if p.rule == "batch-size"]
    assert guided.at_least and guided.predicted == 1.0 and _size(guided) == 100  # the guide's CPU range starts at 100
    assert ModelGuided().propose(View(Settings(), facts.run, frozenset(), noise_pct=5.0)) == guided
    execution = facts.run.executions[0]
    small = dataclasses.replace(execution.stats[1], task_s=Dist.of([0.1] * 200))  # 50 rows a task
    tasks = with_(facts.run, executions=(dataclasses.replace(execution, stats=(execution.stats[0], small)),))
    [capped] = [p for p in candidates(Facts.of(tasks)) if p.rule == "batch-size"]
    assert _size(capped) == 50  # a larger batch than a task's rows would only bundle blocks


def test_ray_datas_defaults_nothing_predicts_wait_behind_a_move_the_guide_backs() -> None:
    """Ray Data's defaults for several knobs (fusion changes: the model cannot say) rank after the guide's batch in
    the same tier, whatever the guide's level: the defaults still run before the study ends, the batch needs the
    budget first."""
    run = small_batches_run(frame_s=None)
    staged = (run.stages[0], stage(1, "map_batches", "work", batch_size=8, num_cpus=0.5))
    facts = Facts.of(with_(run, stages=staged))
    ranked = {p.rule: p for p in candidates(facts)}
    assert ranked["ray-default"].predicted == 1.0 and not ranked["ray-default"].at_least  # nothing backs it
    proposed = ModelGuided().propose(View(Settings(), facts.run, frozenset(), noise_pct=5.0))
    assert proposed is not None and proposed.rule == "batch-size"
