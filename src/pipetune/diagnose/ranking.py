"""One order for every list of changes: the doctor's findings and the tuner's proposals.

A change the capacity model predicts to gain several times more than another goes first, whatever its level;
among changes of similar predicted gain the guide's hierarchy decides (parallelism, then batch size, then
DataContext). Pure.
"""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th


def gain_tier(gain: float) -> int:
    """The tier of a predicted speed-up, best first (0 is the last): gains in one band of width
    ``SIMILAR_GAIN`` on a log scale share a tier, and a gain of 1 or less (none, or the model cannot say) is in
    the last. Fixed bands, so that the order of two changes never depends on what else is in the list."""
    return -math.floor(math.log(max(gain, 1.0), th.SIMILAR_GAIN.value))


# The master decision tree's branches in the order they must be dealt with: a pipeline that crashes or
# stalls gives no timing worth tuning, so those come before "too slow" and "imbalanced".
_URGENCY = {
    "crash": 0,
    "workers-oom": 0,
    "gpu-oom": 0,
    "workers-oom (guide)": 1,  # the guide's first step against kills, where the measured batch goes first
    "object-store": 1,
    "blocking-actor-pool": 1,
    "stall": 1,
    "materialize-mid-pipeline": 1,
    "consumer-bound": 1,  # the loop limits: no pipeline fix below can help, so it is said first
}


def urgency(rule: str) -> int:
    """How soon a rule's finding must be dealt with, first 0: a crash or OOM kills, then a stall, then the rest.
    The doctor's order and the tuner's both start with it."""
    return _URGENCY.get(rule, 2)
