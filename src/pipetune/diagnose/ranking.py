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
