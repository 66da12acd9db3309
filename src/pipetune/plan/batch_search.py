"""The guide's batch-size loop, pure: memory under 50% -> double, over 85% -> halve, out of memory -> halve;
aim for 60-80%. It also watches throughput, so it reports the fastest batch size that fits, not the largest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipetune.diagnose import MEMORY_GROW_BELOW, MEMORY_SHRINK_ABOVE, NOISE_PCT

LOW_MEMORY = MEMORY_GROW_BELOW.value  # guide: below this, double
HIGH_MEMORY = MEMORY_SHRINK_ABOVE.value  # guide: above this, halve
TARGET = (0.60, 0.80)  # guide: aim here
SLOWER = 1 - NOISE_PCT.value / 100  # a doubling that loses more than the noise floor to the best seen stops it


@dataclass(frozen=True)
class Probe:
    batch: int
    ok: bool  # ran without failing (an OOM or any error: False)
    rows_per_s: float | None  # the stage's rows per busy task-second
    memory: float | None  # peak memory of the stage's workers, as a share of what a worker has (0..1)
    error: str = ""


def next_batch(probes: Sequence[Probe], max_batch: int = 1 << 16) -> int | None:
    """The next batch size to measure, or None when the search is done."""
    if not probes:
        return None
    tried = {p.batch for p in probes}
    last = probes[-1]
    if not last.ok or (last.memory is not None and last.memory > HIGH_MEMORY):
        smaller = last.batch // 2
        return smaller if smaller >= 1 and smaller not in tried else None
    if last.memory is not None and last.memory >= TARGET[0]:
        return None  # in (or near) the target band
    best = max((p.rows_per_s or 0.0 for p in probes if p.ok), default=0.0)
    if last.rows_per_s is not None and best and last.rows_per_s < SLOWER * best:
        return None  # bigger batches stopped paying
    if last.memory is None or last.memory < LOW_MEMORY:
        larger = last.batch * 2
        return larger if larger <= max_batch and larger not in tried else None
    return None


def fastest(probes: Sequence[Probe]) -> Probe | None:
    """The fastest batch size that ran and kept memory within the guide's 80%."""
    fits = [p for p in probes if p.ok and p.rows_per_s and (p.memory is None or p.memory <= TARGET[1])]
    return max(fits, key=lambda p: p.rows_per_s or 0.0, default=None)
