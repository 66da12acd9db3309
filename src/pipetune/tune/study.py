"""A tuning study as data: its spec, and its trials folded from the events the store keeps, in order.

The store holds a study as an append-only list of events (``trial-started``, ``trial``, ``finished``). The
state the tuner works from is their fold, so a study killed at any point resumes from exactly what was stored:
finished trials are never redone, and a trial that was in flight is run again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipetune._serde import from_plain, to_plain
from pipetune.settings import Settings


class Role(enum.StrEnum):
    WARMUP = "warm-up"  # the first run after Ray starts: pays start-up costs, never compared
    BASELINE = "baseline"
    TRIAL = "trial"
    REPEAT = "repeat"  # the same settings again, where one run could not tell


class Verdict(enum.StrEnum):
    BASELINE = "baseline"
    KEPT = "kept"
    WITHIN_NOISE = "reverted: within noise"
    SLOWER = "reverted: slower"
    STOPPED = "reverted: stopped at its time box"
    FAILED = "reverted: failed"
    REPEAT = "repeat to decide"
    NOT_COMPARED = "not compared"


@dataclass(frozen=True)
class Spec:
    """What the study was asked to do; stored once, when it is created."""

    script: str
    args: tuple[str, ...] = ()
    cwd: str = ""
    start: dict[str, Any] = field(default_factory=dict)  # the settings to start from, in --config form
    budget: int = 3  # trial runs after the baseline (repeats count)
    time_s: float | None = None  # wall-clock budget for the whole study
    address: str | None = None
    trial_timeout_s: float | None = None


@dataclass(frozen=True)
class Trial:
    """One run of the study and what was concluded from it."""

    seq: int
    role: Role
    config: dict[str, Any]  # every setting of the run, in --config form
    change: str  # what differs from the incumbent, in words ("" for warm-up and baseline)
    settings: tuple[str, ...]  # the --set arguments of the change
    rule: str  # what proposed it: a doctor rule or a model move
    reason: str
    run_id: str
    status: str
    wall_s: float | None
    rows: int
    verdict: Verdict
    improvement_pct: float | None = None  # against the incumbent's median; positive is faster
    noise_pct: float | None = None
    findings: tuple[str, ...] = ()  # the doctor's findings on this run, "rule: fix"

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.wall_s if self.wall_s and self.rows else None

    @property
    def overrides(self) -> Settings:
        return Settings.from_config(self.config)


@dataclass(frozen=True)
class Study:
    id: str
    spec: Spec
    trials: tuple[Trial, ...] = ()
    in_flight: tuple[str, ...] = ()  # run ids started and never concluded (the tuner was killed)
    finished: dict[str, Any] | None = None

    @staticmethod
    def fold(study_id: str, spec: dict[str, Any], events: Iterable[tuple[str, dict[str, Any]]]) -> Study:
        trials: list[Trial] = []
        started: dict[str, None] = {}
        finished = None
        for kind, payload in events:
            if kind == "trial-started":
                started[payload["run_id"]] = None
            elif kind == "trial":
                trial = from_plain(Trial, payload)
                trials.append(trial)
                started.pop(trial.run_id, None)
            elif kind == "finished":
                finished = payload
        return Study(study_id, from_plain(Spec, spec), tuple(trials), tuple(started), finished)

    def compared(self) -> list[Trial]:
        return [t for t in self.trials if t.role is not Role.WARMUP]

    @property
    def runs_used(self) -> int:
        """Trial runs after the baseline, repeats included: what the budget counts."""
        return sum(1 for t in self.trials if t.role in (Role.TRIAL, Role.REPEAT))

    @property
    def baseline(self) -> Trial | None:
        return next((t for t in self.trials if t.role is Role.BASELINE), None)

    def incumbent(self) -> Trial | None:
        """The settings in force: the baseline, or the last trial that was kept."""
        kept = [t for t in self.trials if t.verdict in (Verdict.BASELINE, Verdict.KEPT)]
        return kept[-1] if kept else None

    def runs_of(self, config: dict[str, Any]) -> list[Trial]:
        """Every compared, successful run of exactly these settings."""
        key = config_key(config)
        return [t for t in self.compared() if config_key(t.config) == key and t.status == "succeeded" and t.wall_s]

    def tried(self) -> set[str]:
        """Settings already measured. A warm-up is not a measurement: on resume it may run the very proposal
        that was in flight, and that proposal must still be tried."""
        return {config_key(t.config) for t in self.compared()}


def config_key(config: dict[str, Any]) -> str:
    """Settings in a canonical form, so the same configuration is recognised however it was written."""
    return Settings.from_config(config).key()


def with_settings(config: dict[str, Any], settings: Sequence[str]) -> dict[str, Any]:
    """``config`` with ``--set`` arguments applied on top (later values win)."""
    return collapse(Settings.from_config(config).merged(Settings.from_args(settings)))


def collapse(overrides: Settings) -> dict[str, Any]:
    """The --config form with one value per (stage, knob): the last one set."""
    plain = overrides.to_config()
    return {"stages": plain["stages"], "context": plain["context"]}


def trial_payload(trial: Trial) -> dict[str, Any]:
    return dict(to_plain(trial))
