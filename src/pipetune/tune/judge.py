"""Keep or revert: a trial against the incumbent, with the noise measured rather than assumed.

Pure. Times are wall seconds of whole runs of one script on one machine. The noise band is the larger of the
measured spread of either side's repeats and a floor (a single run has no spread of its own, and run-to-run
noise on a shared machine is never zero). A change inside the band is not a win; a win just outside it, seen
once, is repeated before it is believed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipetune.diagnose import thresholds as th
from pipetune.tune.study import Verdict


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    improvement_pct: float  # positive: the trial is faster than the incumbent
    noise_pct: float


def spread_pct(walls: Sequence[float]) -> float:
    if len(walls) < 2:
        return 0.0
    return (max(walls) - min(walls)) / statistics.median(walls) * 100


def noise_band(incumbent: Sequence[float], trial: Sequence[float], floor_pct: float | None = None) -> float:
    floor = th.NOISE_PCT.value if floor_pct is None else floor_pct
    return max(spread_pct(incumbent), spread_pct(trial), floor)


def judge(incumbent: Sequence[float], trial: Sequence[float], can_repeat: bool) -> Judgement:
    """Compare medians; repeat once when a single run shows a gain less than twice the noise."""
    base, new = statistics.median(incumbent), statistics.median(trial)
    improvement = (base - new) / base * 100
    noise = noise_band(incumbent, trial)
    if improvement <= -noise:
        return Judgement(Verdict.SLOWER, improvement, noise)
    if improvement <= noise:
        return Judgement(Verdict.WITHIN_NOISE, improvement, noise)
    if improvement <= 2 * noise and len(trial) < 2 and can_repeat:
        return Judgement(Verdict.REPEAT, improvement, noise)
    return Judgement(Verdict.KEPT, improvement, noise)


def time_box(incumbent: Sequence[float]) -> float:
    """How long a trial may run: past this it is slower than the incumbent beyond the noise, so it is stopped
    (it would be reverted anyway; a couple of seconds cover the driver's start-up jitter)."""
    base = statistics.median(incumbent)
    return base * (1 + noise_band(incumbent, ()) / 100) + 2.0
