"""Is one set of runs faster than another? The one home of that judgement: the doctor's ``--verify`` and the
tuner's keep/revert both ask it here.

Pure. Times are wall seconds of whole runs of one script on one machine. The noise band is the larger of the
measured spread of either side's repeats and a floor (a single run has no spread of its own, and run-to-run
noise on a shared machine is never zero). A difference inside the band is no difference.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipetune.diagnose import thresholds as th


class Outcome(enum.StrEnum):
    IMPROVED = "improved"
    REGRESSED = "regressed"
    WITHIN_NOISE = "within noise"


@dataclass(frozen=True)
class Comparison:
    improvement_pct: float  # positive: ``after`` is faster than ``before`` (medians)
    noise_pct: float

    @property
    def outcome(self) -> Outcome:
        if abs(self.improvement_pct) <= self.noise_pct:
            return Outcome.WITHIN_NOISE
        return Outcome.IMPROVED if self.improvement_pct > 0 else Outcome.REGRESSED

    @property
    def beyond_twice_the_noise(self) -> bool:
        return self.improvement_pct > 2 * self.noise_pct


def spread_pct(walls: Sequence[float]) -> float:
    """(max - min) / median of repeats of one setting; 0 for a single run."""
    if len(walls) < 2:
        return 0.0
    return (max(walls) - min(walls)) / statistics.median(walls) * 100


def noise_band(before: Sequence[float], after: Sequence[float], floor_pct: float | None = None) -> float:
    floor = th.NOISE_PCT.value if floor_pct is None else floor_pct
    return max(spread_pct(before), spread_pct(after), floor)


def compare(before: Sequence[float], after: Sequence[float]) -> Comparison:
    """Medians against each other, with the noise band of both sides."""
    base, new = statistics.median(before), statistics.median(after)
    return Comparison((base - new) / base * 100, noise_band(before, after))
