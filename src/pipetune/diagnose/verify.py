"""Did the fix work? The guide's measurement template, done with repeats and an honest noise band."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipetune.diagnose.engine import diagnose
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Finding
from pipetune.diagnose.measure import measure
from pipetune.diagnose.noise import Outcome, compare, spread_pct
from pipetune.errors import UsageError
from pipetune.model import Run


@dataclass(frozen=True)
class Timing:
    median_s: float
    spread_pct: float  # (max - min) / median of the repeats; 0 for one run
    runs: int

    @staticmethod
    def of(runs: Sequence[Run]) -> Timing:
        walls = [r.wall_s for r in runs if r.wall_s]
        if not walls:
            raise UsageError("no finished run to time", "verify runs that ran to the end")
        return Timing(statistics.median(walls), spread_pct(walls), len(walls))


@dataclass(frozen=True)
class Check:
    finding: Finding
    before: float | None
    after: float | None
    holds: bool | None  # None: the later run cannot tell


@dataclass(frozen=True)
class Verification:
    before: Timing
    after: Timing
    improvement_pct: float
    noise_pct: float
    verdict: Outcome
    checks: tuple[Check, ...]


def verify(before: Sequence[Run], after: Sequence[Run]) -> Verification:
    _same_script(before, after)
    t0, t1 = Timing.of(before), Timing.of(after)
    seen = compare([r.wall_s for r in before if r.wall_s], [r.wall_s for r in after if r.wall_s])
    findings = diagnose(before[0]).findings
    facts0, facts1 = Facts.of(before[0]), Facts.of(after[0])
    checks = tuple(_check(f, facts0, facts1) for f in findings)
    return Verification(t0, t1, seen.improvement_pct, seen.noise_pct, seen.outcome, checks)


def _check(f: Finding, before: Facts, after: Facts) -> Check:
    value_after = measure(after, f.verify.metric, f.verify.stage)
    return Check(f, measure(before, f.verify.metric, f.verify.stage), value_after, f.verify.holds(value_after))


def _same_script(before: Sequence[Run], after: Sequence[Run]) -> None:
    if not before or not after:
        raise UsageError("--verify needs runs on both sides", "pass BEFORE and AFTER run ids")
    names = {r.script for r in (*before, *after)}
    if len(names) > 1:
        raise UsageError(f"--verify compares runs of one script, got {', '.join(sorted(names))}")
