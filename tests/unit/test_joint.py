"""How the policy chooses among moves the model cannot tell apart, and what a joint change may carry."""

from __future__ import annotations

from pipetune.diagnose import Facts, Level
from pipetune.settings import Settings
from pipetune.tune.policy import Proposal, _joint, _weighed, smallest_batches
from tests.unit.builders import small_batches_run


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
