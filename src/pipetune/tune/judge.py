"""Keep or revert: a trial against the incumbent. Whether it is faster is ``diagnose.noise``'s judgement; this
module decides what the study does about it.

Pure. A change inside the noise band is not a win; a win within twice the noise, seen once, is repeated before
it is believed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipetune.diagnose import Outcome, compare, noise_band
from pipetune.tune.study import Verdict


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    improvement_pct: float  # positive: the trial is faster than the incumbent
    noise_pct: float


def judge(incumbent: Sequence[float], trial: Sequence[float], can_repeat: bool) -> Judgement:
    """Compare medians. A single run that gains less than twice the noise is repeated before it is believed;
    with no budget left to repeat it (the last trial), it is not kept."""
    seen = compare(incumbent, trial)
    verdict = {Outcome.REGRESSED: Verdict.SLOWER, Outcome.WITHIN_NOISE: Verdict.WITHIN_NOISE}.get(seen.outcome)
    if verdict is None:
        verdict = Verdict.KEPT
        if len(trial) < 2 and not seen.beyond_twice_the_noise:
            verdict = Verdict.REPEAT if can_repeat else Verdict.UNCONFIRMED
    return Judgement(verdict, seen.improvement_pct, seen.noise_pct)


def time_box(incumbent: Sequence[float]) -> float:
    """How long a trial may run: past this it is slower than the incumbent beyond the noise, so it is stopped.

    Exactly where ``judge`` would call it slower: a run's figure is never less than the time it has run (its
    whole wall, or a loop's time counted from the loop's start), so a run past the box is ``Verdict.SLOWER``
    whatever it does next. No margin is added: the start-up jitter a margin would excuse is part of the figure
    ``judge`` compares, so a run that spends it is slower by the judge's own measure."""
    return statistics.median(incumbent) * (1 + noise_band(incumbent, ()) / 100)
