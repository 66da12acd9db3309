"""batch_size off the guide's matrix, or so small that per-batch overhead dominates the stage.

Guide: batch sizes by operation type (CPU preprocessing 100-1000, CPU inference 16-32, GPU inference
32-128); level 2 of the hierarchy. A batch inside the guide's range is still too small where its fixed
cost (``capacity.fixed_share``: Ray's framing measured on the run, or a fit over two batch sizes) takes
more of its time than a fix could save and be told from the noise (``MEASURABLE_SHARE``). The fix is at
least the guide's next step, and as large as the pipeline model (``capacity.sized_batch``, the tuner's
own) says fixed per-batch costs need, within a task's rows and the memory share: one model for the doctor
and the tuner.
"""

from __future__ import annotations

from pipetune.diagnose import capacity
from pipetune.diagnose import thresholds as th
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Evidence, Finding, Fix, Level
from pipetune.diagnose.rules._common import BATCH_BY_TYPE, finding, grown_batch, lead_stages, throughput_criterion
from pipetune.model import Stage


def check(facts: Facts) -> list[Finding]:
    """Every stage that batches, not only the one its fused operator's time was charged to: which stage of a
    fused chain carries the most time varies run to run, and a batch of 2 rows is too small whichever it is."""
    return [f for stage in _batching_stages(facts) if (f := _small_batch(facts, stage)) is not None]


def _batching_stages(facts: Facts) -> list[Stage]:
    leads = {s.index for s in lead_stages(facts)}
    return [s for s in facts.run.stages if s.index in leads or (s.knobs.batch_size and facts.rate_of(s.index))]


def _fixed_evidence(share: float | None, target: th.Threshold) -> list[Evidence]:
    """The fixed per-batch cost's share of a batch's time, where the model has one (``capacity.fixed_share``)."""
    if share is None:
        return []
    return [Evidence("fixed cost's share of a batch", share * 100, "%", target.value * 100, target.source)]


def _small_batch(facts: Facts, stage: Stage) -> Finding | None:
    kind = facts.stage_type(stage)
    rate, op = facts.rate_of(stage.index), facts.operator_of(stage.index)
    batch = stage.knobs.batch_size
    if batch is None or kind not in BATCH_BY_TYPE or rate is None or op is None:
        return None
    low, high = BATCH_BY_TYPE[kind]
    batches = max(rate.rows / batch, 1.0)
    share = capacity.fixed_share(facts, stage.index, batch)
    target = th.MEASURABLE_SHARE
    if batch >= low and (share is None or share <= target.value):
        return None
    guide = grown_batch(batch, low, high)  # the guide's step, the least the fix asks for
    proposed = capacity.sized_batch(facts, stage.index, batch, floor=guide) or guide  # the tuner's own model
    if proposed <= batch:
        return None
    return finding(
        facts,
        "batch-size",
        f"batch_size {batch} is small for {kind.value}",
        stage,
        [
            Evidence("batch_size", float(batch), " rows", float(low), f"guide: {kind.value} batches {low}-{high}"),
            *_fixed_evidence(share, target),
        ],
        f"{batches:,.0f} batches of {batch} rows: fixed per-batch costs (conversion, calls, scheduling) weigh "
        "on every few rows",
        Fix("batch_size", batch, proposed, Level.BATCH, stage.index),
        throughput_criterion(stage, rate.achieved),
        0.6,
    )
