"""A stage's fixed cost per batch is measured, not assumed, once the study has run it at two batch sizes."""

from __future__ import annotations

import pytest

from pipetune.diagnose import BatchCost, Facts
from pipetune.diagnose import capacity as predict
from pipetune.diagnose import thresholds as th
from pipetune.settings import Settings
from pipetune.tune.policy import Proposal, candidates
from pipetune.tune.steps import batch_costs
from pipetune.tune.study import Role, Spec, Study, Trial, Verdict
from tests.unit.builders import stage, two_stage_run, with_

FIXED_S, PER_ROW_S = 0.03, 1e-5  # a UDF that calls out once per batch: ten times the assumed fixed cost


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


def small_batches() -> Facts:
    """read -> map_batches(work) at 8 rows a batch: 10,000 rows, 20 s of stage time (2 ms a row)."""
    run = two_stage_run()
    return Facts.of(with_(run, stages=(run.stages[0], stage(1, "map_batches", "work", batch_size=8))))


def test_the_batch_model_uses_the_measured_cost_and_says_so_in_the_proposal() -> None:
    facts = small_batches()
    assumed = predict.batch_model(facts, 1, 8)
    assert assumed is not None and assumed[1] == pytest.approx(th.PER_BATCH_FIXED_MS.value / 1000)
    measured = Facts.of(facts.run, {1: BatchCost(0.012, 5e-4, (8, 32))})
    model = predict.batch_model(measured, 1, 8)
    assert model is not None and model[1] == pytest.approx(0.012)  # 12 ms of the 16 ms a batch takes
    grown = [p for p in _batch_moves(measured) if "measured at batch sizes 8, 32" in p.reason]
    guessed = [p for p in _batch_moves(facts) if "assumed until a second batch size" in p.reason]
    assert grown and guessed
    assert _size(grown[0]) > _size(guessed[0])  # a larger fixed share asks for larger batches


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
