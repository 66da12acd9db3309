"""How the policy chooses among moves the model cannot tell apart, and what a joint change may carry."""

from __future__ import annotations

import dataclasses

from pipetune.diagnose import Facts, Level
from pipetune.model import Calls, Operator, StageKind
from pipetune.settings import Settings
from pipetune.tune.policy import (
    ModelGuided,
    Proposal,
    View,
    _joint,
    _rank,
    _weighed,
    _without_lost,
    bisections,
    candidates,
    measure_calls,
    smallest_batches,
)
from tests.unit.builders import calls, op_stats, pipeline, small_batches_run, stage, with_


def small_batches() -> Facts:
    """read -> map_batches(work) at 8 rows a batch: fixed per-batch costs weigh."""
    return Facts.of(small_batches_run())


def batch(value: str, predicted: float) -> Proposal:
    return Proposal(Settings.from_args([f"1.batch_size={value}"]), value, "batch", "", Level.BATCH, predicted)


def test_of_batch_sizes_predicted_within_the_noise_of_each_other_the_smallest_is_kept() -> None:
    facts = small_batches()
    small, large, whole = batch("32", 2.0), batch("128", 2.05), batch("default", 2.5)
    assert smallest_batches(facts, [large, small, whole], noise_pct=5.0) == [small, whole]
    assert smallest_batches(facts, [large, small, whole], noise_pct=0.0) == [large, small, whole]
    assert smallest_batches(facts, [large, small, whole], noise_pct=30.0) == [small]  # whole blocks: every row


def test_a_joint_change_carries_only_the_parts_the_model_of_the_whole_credits() -> None:
    """The model of the whole pipeline does not weigh block knobs (how Ray then splits and fuses is not in one
    run): a repartition beside a batch size adds nothing to its prediction, so it is left out, to be proposed
    alone from the next run, where its own gain is predicted."""
    facts = small_batches()
    joint = Settings.from_args(["1.batch_size=1024", "0.repartition=8"])
    kept, left_out = _weighed(facts, joint, noise_pct=0.0)
    assert kept.to_args() == ("1.batch_size=1024",) and left_out == ["0.repartition=8"]
    split = Proposal(Settings.from_args(["0.repartition=8"]), "8 blocks", "few-blocks", "", Level.PARALLELISM, 1.9)
    assert _joint(facts, [batch("1024", 1.2), split]) is None  # one stage left: its move goes on its own


def scorer_run(cpu_s: float, counted: tuple[Calls, ...] = ()) -> Facts:
    """read -> an actor pool of one that calls a service with 25-row batches out of 200-row blocks (1,000 rows,
    5 tasks), busy 5 s, burning ``cpu_s`` of it; ``counted``: what the workers counted of its function."""
    read = stage(0, "read_parquet", kind=StageKind.READ)
    scorer = stage(1, "map_batches", "Scorer", kind=StageKind.ACTOR, concurrency=1, num_cpus=1.0, batch_size=25)
    ops = [Operator("0/ReadFiles_1", "ReadFiles", (0,)),
           Operator("0/MapBatches(Scorer)_2", "MapBatches(Scorer)", (1,), "actors", 1, 1.0)]  # fmt: skip
    stats = [op_stats(ops[0].uid, 1000, 0.5, 0.5, tasks=5),
             op_stats(ops[1].uid, 1000, 5.0, cpu_s, tasks=5, calls=counted)]  # fmt: skip
    return Facts.of(pipeline(list(zip((read, scorer), ops, stats, strict=True))))


EVEN_CALLS = calls([(25, 0.125)] * 40)  # every call 25 rows: no line to fit


def slots_of(proposals: list[Proposal], stage: str) -> list[str]:
    """The slot knobs (any but the batch) the proposals size for ``stage``; Ray's defaults are measured, not sized."""
    sized = [p for p in proposals if not p.rule.startswith("ray-default")]
    return [s.arg for p in sized for s in p.settings.stages if s.selector == stage and s.knob != "batch_size"]


def test_a_waiting_stage_whose_cost_per_call_one_run_cannot_tell_is_measured_before_its_pool_moves() -> None:
    """Every call had 25 rows: a wait per call and a wait per row look the same, and a pool sized on the per-row
    reading is sized on a rate a larger batch would change. Ray's default batch (whole blocks) goes first,
    predicted at most what a wait paid per call would gain; the pool's moves wait for that run, and come back
    once it ran from the incumbent."""
    facts = scorer_run(cpu_s=0.5, counted=(EVEN_CALLS,))
    measure = measure_calls(facts)
    assert measure is not None and measure.settings.to_args() == ("1.batch_size=default",)
    assert measure.predicted > 2.0 and "up to" in measure.reason  # 25-row calls, 200-row blocks, 90% waits
    first = list(candidates(facts, measure=measure))
    assert first[0] is measure and slots_of(first, "1") == []
    assert slots_of(list(candidates(facts)), "1")  # without a measurement pending, the pool moves are there
    proposed = ModelGuided().propose(View(Settings(), facts.run, frozenset()))
    assert proposed is not None and proposed.rule == "measure (model)"
    after = ModelGuided().propose(View(Settings(), facts.run, frozenset({measure.settings.key()})))
    assert after is not None and after.rule != "measure (model)" and slots_of([after], "1")  # the pool is back


def test_no_batch_is_measured_where_the_run_measured_the_call_or_the_stage_computes() -> None:
    two_sizes = calls([(25, 0.07)] * 20 + [(13, 0.07)] * 20)  # 70 ms a call at either size
    assert measure_calls(scorer_run(cpu_s=0.5, counted=(two_sizes,))) is None  # fitted: the batch move says
    assert measure_calls(scorer_run(cpu_s=4.5, counted=(EVEN_CALLS,))) is None  # CPU per row: measured


def test_a_pool_and_its_batch_that_lost_together_are_bisected_apart() -> None:
    facts = scorer_run(cpu_s=0.5, counted=(EVEN_CALLS,))
    lost = Settings.from_args(["1.concurrency=4", "1.num_cpus=0.25", "1.batch_size=default"])
    view = View(Settings(), facts.run, frozenset({lost.key()}), lost_configs=(lost,))
    halves = {p.settings.to_args() for p in bisections(facts, view)}
    assert halves == {("1.concurrency=4", "1.num_cpus=0.25"), ("1.batch_size=default",)}


def waiting_read() -> Facts:
    """A read that waits (3 s of CPU in 30 s) feeding 8-row batches whose cost the run cannot measure (no framing
    timed, calls of one size)."""
    run = small_batches_run(frame_s=None)
    execution = run.executions[0]
    waits = dataclasses.replace(execution.stats[0], busy_s=30.0, wall_s=30.0, cpu_s=3.0)
    return Facts.of(with_(run, executions=(dataclasses.replace(execution, stats=(waits, execution.stats[1])),)))


def test_a_lost_change_is_bisected_first_only_where_the_model_predicts_its_halves() -> None:
    """Halves the model predicts nothing for (Ray's defaults for several knobs, say) rank among the candidates,
    after the moves it backs; a half it predicts a gain for is still tried first, to tell which half hurt."""
    facts = waiting_read()
    blind = Settings.from_args(["0.override_num_blocks=4", "1.batch_size=default"])
    view = View(Settings(), facts.run, frozenset({blind.key()}), lost_configs=(blind,), noise_pct=5.0)
    assert {h.predicted for h in bisections(facts, view)} == {1.0}
    proposed = ModelGuided().propose(view)
    assert proposed is not None and proposed.rule == "joint (model)"
    told = Settings.from_args(["0.num_cpus=0.5", "1.num_cpus=2"])
    view = View(Settings(), facts.run, frozenset({told.key()}), lost_configs=(told,), noise_pct=5.0)
    proposed = ModelGuided().propose(view)
    assert proposed is not None and proposed.rule == "bisect (model)"
    assert proposed.settings.to_args() == ("0.num_cpus=0.5",) and proposed.predicted > 1.05


def test_the_model_optimum_carries_the_guides_batch_where_the_run_cannot_size_one() -> None:
    """A read that waits (3 s of CPU in 30 s) feeding 8-row batches whose cost the run cannot measure (no framing
    timed, calls of one size): the doctor's num_cpus for the read and the guide's batch for the map go in one
    change, rather than leave the batch a trial of its own. Its gain is the model's for the part it weighs, a
    floor; at that same gain it goes before that part alone."""
    facts = waiting_read()
    ranked = {p.rule: p for p in candidates(facts, noise_pct=5.0)}
    read, guided, joint = ranked["slow-stage"], ranked["batch-size"], ranked["joint (model)"]
    assert guided.settings.to_args() == ("1.batch_size=100",) and guided.at_least  # the guide's CPU range
    assert joint.settings.to_args() == (*read.settings.to_args(), "1.batch_size=100")
    assert joint.at_least and joint.predicted >= read.predicted > 1.5  # a floor: at least the read's move alone
    assert "guide's 1.batch_size=100" in joint.reason
    proposed = ModelGuided().propose(View(Settings(), facts.run, frozenset(), noise_pct=5.0))
    assert proposed is not None and proposed.rule == "joint (model)"
    assert min([read, dataclasses.replace(joint, predicted=read.predicted)], key=_rank).rule == "joint (model)"
    assert _joint(facts, [], 5.0, [guided]) is None  # the guide's batch alone is proposed on its own already
    assert _joint(facts, [read], 200.0, [guided]) is None  # the read's move inside the noise: nothing to carry it
    lost = View(Settings(), facts.run, frozenset(), lost=frozenset(guided.settings.stages), noise_pct=5.0)
    without = _without_lost(facts, joint, lost)
    assert without is not None and without.settings == read.settings and not without.at_least
