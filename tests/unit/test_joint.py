"""How the policy chooses among moves the model cannot tell apart, and what a joint change may carry."""

from __future__ import annotations

from pipetune.diagnose import Facts, Level
from pipetune.model import Calls, Operator, StageKind
from pipetune.settings import Settings
from pipetune.tune.policy import (
    Proposal,
    View,
    _joint,
    _weighed,
    bisections,
    change_parts,
    measuring_batches,
    smallest_batches,
)
from tests.unit.builders import calls, op_stats, pipeline, small_batches_run, stage


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
POOL = Proposal(Settings.from_args(["1.concurrency=4", "1.num_cpus=0.25"]), "pool", "", "", Level.PARALLELISM, 3.0)


def test_a_waiting_stage_whose_cost_per_call_one_run_cannot_tell_goes_to_whole_blocks_with_its_pool() -> None:
    """Every call had 25 rows: a wait per call and a wait per row look the same. The joint change carries Ray's
    default batch (whole blocks) beside the pool, a part of its own, so its trial measures which it was."""
    facts = scorer_run(cpu_s=0.5, counted=(EVEN_CALLS,))
    joint = _joint(facts, [POOL])
    assert joint is not None and joint.at_least  # the model cannot weigh the batch: a lower bound
    assert sorted(joint.settings.to_args()) == ["1.batch_size=default", "1.concurrency=4", "1.num_cpus=0.25"]
    assert [p.to_args() for p in change_parts(joint.settings)] == [("1.concurrency=4", "1.num_cpus=0.25"),
                                                                  ("1.batch_size=default",)]  # fmt: skip
    assert "to measure" in joint.reason


def test_no_batch_rides_along_where_the_run_measured_the_call_or_the_stage_computes() -> None:
    two_sizes = calls([(25, 0.07)] * 20 + [(13, 0.07)] * 20)  # 70 ms a call at either size
    assert _joint(scorer_run(cpu_s=0.5, counted=(two_sizes,)), [POOL]) is None  # fitted: the batch move says
    assert _joint(scorer_run(cpu_s=4.5, counted=(EVEN_CALLS,)), [POOL]) is None  # CPU per row: measured
    pool_and_batch = Settings.from_args(["1.concurrency=4", "1.num_cpus=0.25", "1.batch_size=50"])
    assert measuring_batches(scorer_run(cpu_s=0.5), pool_and_batch) == []  # its batch is sized already


def test_a_pool_and_its_batch_that_lost_together_are_bisected_apart() -> None:
    facts = scorer_run(cpu_s=0.5, counted=(EVEN_CALLS,))
    lost = Settings.from_args(["1.concurrency=4", "1.num_cpus=0.25", "1.batch_size=default"])
    view = View(Settings(), facts.run, frozenset({lost.key()}), lost_configs=(lost,))
    halves = {p.settings.to_args() for p in bisections(facts, view)}
    assert halves == {("1.concurrency=4", "1.num_cpus=0.25"), ("1.batch_size=default",)}
