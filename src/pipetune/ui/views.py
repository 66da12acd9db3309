"""What the dashboard's pages show, computed from stored runs only (never from Ray). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.capture import messages_of
from pipetune.model import Run
from pipetune.report import LiveState, StageFigures, stage_figures


def live_state(run: Run) -> LiveState:
    """The live view's figures for a run still being recorded, from what is stored so far."""
    state = LiveState()
    for message in messages_of(run):  # the same messages the live view was fed while the run was recorded
        state.feed(message)
    return state


@dataclass(frozen=True)
class StageDelta:
    key: str
    knobs_a: dict[str, Any]
    knobs_b: dict[str, Any]
    rows_per_s_a: float
    rows_per_s_b: float

    @property
    def differs(self) -> dict[str, tuple[Any, Any]]:
        names = sorted(set(self.knobs_a) | set(self.knobs_b))
        return {
            k: (self.knobs_a.get(k), self.knobs_b.get(k)) for k in names if self.knobs_a.get(k) != self.knobs_b.get(k)
        }

    @property
    def rate_change_pct(self) -> float | None:
        return (self.rows_per_s_b / self.rows_per_s_a - 1) * 100 if self.rows_per_s_a else None


def compare(a: Run, b: Run) -> list[StageDelta]:
    fa, fb = _by_key(stage_figures(a)), _by_key(stage_figures(b))
    return [
        StageDelta(key, fa[key].stage.knobs.set(), fb[key].stage.knobs.set(), fa[key].rows_per_s, fb[key].rows_per_s)
        for key in fa
        if key in fb
    ]


def _by_key(figures: list[StageFigures]) -> dict[str, StageFigures]:
    return {f.stage.key: f for f in figures}
