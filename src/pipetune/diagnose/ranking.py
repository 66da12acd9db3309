"""One order for every list of changes: the doctor's findings and the tuner's proposals.

A change the capacity model predicts to gain several times more than another goes first, whatever its level;
among changes of similar predicted gain the guide's hierarchy decides (parallelism, then batch size, then
DataContext). Pure.
"""

from __future__ import annotations

import math

from pipetune.diagnose import thresholds as th

LAST = 1 << 20  # the tier of a change predicted to gain nothing, or that the model cannot predict


def gain_tier(gain: float) -> int:
    """The tier of a predicted speed-up, best first (smaller tiers first). The gain is what the speed-up adds
    (``gain - 1``: +90% for 1.9x, as the trials table and ``--verify`` report it); gains in one band of width
    ``SIMILAR_GAIN`` on a log scale share a tier (+25-49%, +50-99%, ...: +90% goes before +30%), and a gain
    of 1 or less (none, or the model cannot say) is last. Fixed bands, so that the order of two changes never
    depends on what else is in the list."""
    if gain <= 1.0:
        return LAST
    return -math.floor(math.log(gain - 1.0, th.SIMILAR_GAIN.value))
