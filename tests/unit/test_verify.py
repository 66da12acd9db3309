import pytest

from pipetune.diagnose.verify import Timing, verify
from pipetune.errors import UsageError
from tests.unit.builders import node_cpu, with_
from tests.unit.test_rules import download_run


def runs(walls: list[float], cpu_pct: float):  # type: ignore[no-untyped-def]
    return [with_(node_cpu(download_run(), cpu_pct), wall_s=w, id=f"r{i}") for i, w in enumerate(walls)]


def test_timing_uses_medians_and_spread() -> None:
    t = Timing.of(runs([10.0, 12.0, 11.0], 10))
    assert (t.median_s, t.runs) == (11.0, 3)
    assert round(t.spread_pct, 1) == 18.2


def test_a_real_improvement_and_the_criterion_checked_on_the_later_run() -> None:
    result = verify(runs([20.0, 21.0, 20.5], 12), runs([5.0, 5.2, 5.1], 85))
    assert result.verdict == "improved" and round(result.improvement_pct) == 75
    [check] = [c for c in result.checks if c.finding.rule == "low-cpu"]
    assert (check.before, check.after, check.holds) == (12.0, 85.0, True)


def test_a_change_inside_the_spread_is_within_noise() -> None:
    result = verify(runs([10.0, 11.0, 10.5], 12), runs([10.2, 10.4, 10.9], 30))
    assert result.verdict == "within noise"
    assert result.noise_pct >= 5
    assert [c.holds for c in result.checks if c.finding.rule == "low-cpu"] == [False]


def test_runs_of_different_scripts_are_not_compared() -> None:
    other = [with_(r, script="other.py") for r in runs([5.0], 10)]
    with pytest.raises(UsageError, match="one script"):
        verify(runs([10.0], 10), other)
