"""A tuning study as data: its spec, and its trials folded from the events the store keeps, in order.

The store holds a study as an append-only list of events (``trial-started``, ``trial``, ``finished``). The
state the tuner works from is their fold, so a study killed at any point resumes from exactly what was stored:
finished trials are never redone, and a trial that was in flight is run again.

Settings are typed (:class:`Settings`) everywhere here; the stored payloads keep them in their edge forms, the
``--config`` dict (``start``, ``config``) and the ``--set`` arguments (``settings``), which
:func:`spec_payload` / :func:`trial_payload` write and :func:`spec_of` / :func:`trial_of` read back.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipetune._serde import from_plain, to_plain
from pipetune.diagnose import Limit
from pipetune.settings import Settings


class Role(enum.StrEnum):
    WARMUP = "warm-up"  # the first run after Ray starts: pays start-up costs, never compared
    BASELINE = "baseline"
    TRIAL = "trial"
    REPEAT = "repeat"  # the same settings again, where one run could not tell
    CONFIRM = "confirm"  # the best settings once in full after the study (--confirm): predicted vs measured


class Verdict(enum.StrEnum):
    BASELINE = "baseline"
    KEPT = "kept"
    WITHIN_NOISE = "reverted: within noise"
    UNCONFIRMED = "reverted: seen once, within twice the noise"  # no budget left to repeat it
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
    start: Settings = field(default_factory=Settings)  # the settings to start from
    budget: int = 3  # trial runs after the baseline (repeats count)
    time_s: float | None = None  # wall-clock budget for the whole study
    address: str | None = None
    trial_timeout_s: float | None = None
    allow: tuple[str, ...] = ()  # knobs tuning may change although they change what the loop sees (iterator.batch_size)


@dataclass(frozen=True)
class Sink:
    """What a probe of a pipeline ending in a sink is predicted for, measured on the baseline: the rows its
    last operator took in, the time the run went on after that operator's execution ended, and the stage those
    rows enter (a trial whose operator starts elsewhere is measured against another whole: ``share_done``).
    ``read``: progress is a share of the whole instead of rows, where the last operator reads (Ray counts a read
    task's input as one row) or where the baseline was a probe itself (its whole is Ray's estimate).
    ``read_rows``: for each operator of the baseline that reads and read all its input, the rows out of its
    last stage (``whole_read``)."""

    rows: float  # 1.0 where ``read``: the whole, as a share
    tail_s: float
    stage: int
    read: bool = False  # progress is a share of the whole (the stored name predates probed baselines)
    read_rows: tuple[tuple[int, float], ...] = ()  # (stage, rows out of it), measured where a read ended

    def whole_read(self, stages: tuple[int, ...]) -> float:
        """The rows a trial's operator that reads (``stages``) outputs in all, as the baseline measured them: out
        of the latest of its stages the baseline's reading operators ended with (0: none of them). Stages after
        that one are taken to keep every row, as a share of a whole is everywhere (``objective.own_share``)."""
        known = [(stage, rows) for stage, rows in self.read_rows if stage in stages]
        return max(known)[1] if known else 0.0


@dataclass(frozen=True)
class Trial:
    """One run of the study and what was concluded from it."""

    seq: int
    role: Role
    config: Settings  # every setting of the run, one value per knob
    change: str  # what differs from the incumbent, in words ("" for warm-up and baseline)
    settings: Settings  # the change alone
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
    measured_s: float | None = None  # what it is judged by (``objective.seconds``); None: its wall time
    probe: bool = False  # stopped on purpose once its loops' steady rate was timed: measured, not failed
    consumed: dict[str, float] = field(default_factory=dict)  # batches each of the script's loops took
    consumed_rows: dict[str, float] = field(default_factory=dict)  # ... and rows (absent in older studies)
    sink: Sink | None = None  # for a run that ends in a sink, what a probe is predicted for (``objective.sink_of``)
    batch_points: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage -> (rows a batch, s a row)
    memory_limits: dict[str, Limit] = field(default_factory=dict)  # stage -> what its OOM kills measured

    @property
    def seconds(self) -> float | None:
        """The trial's figure: the script's loop time for a pipeline it consumes, else the run's wall time."""
        return self.measured_s if self.measured_s is not None else self.wall_s

    @property
    def measured(self) -> bool:
        return bool(self.seconds) and (self.status == "succeeded" or self.probe)

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.wall_s if self.wall_s and self.rows else None


@dataclass(frozen=True)
class Confirmation:
    """The best settings run once in full after the study (``tune --confirm``): its trial's figure against the
    full run's."""

    run_id: str
    predicted_s: float | None  # the best trial's figure (predicted from a probe where ``probe``)
    measured_s: float | None  # the full run's (None when it did not succeed)
    status: str
    probe: bool = False

    @property
    def error_pct(self) -> float | None:
        """How far the prediction was from the full run, as a share of the full run (positive: too slow)."""
        if not self.predicted_s or not self.measured_s:
            return None
        return (self.predicted_s - self.measured_s) / self.measured_s * 100


@dataclass(frozen=True)
class Study:
    id: str
    spec: Spec
    trials: tuple[Trial, ...] = ()
    in_flight: tuple[str, ...] = ()  # run ids started and never concluded (the tuner was killed)
    finished: dict[str, Any] | None = None
    confirmed: Confirmation | None = None  # the --confirm run, if there was one

    @staticmethod
    def fold(study_id: str, spec: dict[str, Any], events: Iterable[tuple[str, dict[str, Any]]]) -> Study:
        trials: list[Trial] = []
        started: dict[str, None] = {}
        finished = confirmed = None
        for kind, payload in events:
            if kind == "trial-started":
                started[payload["run_id"]] = None
            elif kind == "trial":
                trial = trial_of(payload)
                trials.append(trial)
                started.pop(trial.run_id, None)
            elif kind == "finished":
                finished = payload
            elif kind == "confirmed":
                confirmed = from_plain(Confirmation, payload)
        return Study(study_id, spec_of(spec), tuple(trials), tuple(started), finished, confirmed)

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

    def runs_of(self, config: Settings) -> list[Trial]:
        """Every compared, measured run of exactly these settings (a finished run, or a probe)."""
        key = config.key()
        return [t for t in self.compared() if t.config.key() == key and t.measured]

    @property
    def full_loops(self) -> dict[str, float]:
        """Batches each of the script's loops took in the baseline: what a probe's time is predicted for."""
        return dict(self.baseline.consumed) if self.baseline is not None else {}

    @property
    def full_rows(self) -> dict[str, float]:
        """Rows each of the script's loops took in the baseline: what a probe's time is predicted for, so a
        trial that changes the loop's batch size (``--allow iterator.batch_size``) is judged on the same data."""
        return dict(self.baseline.consumed_rows) if self.baseline is not None else {}

    @property
    def sink(self) -> Sink | None:
        """The baseline's sink (a pipeline no loop consumes): what a probe's time is predicted for."""
        b = self.baseline
        return b.sink if b is not None and not b.consumed else None

    def incumbent_figures(self) -> list[float]:
        """What each measured run of the incumbent's settings was judged by."""
        incumbent = self.incumbent()
        return [t.seconds for t in self.runs_of(incumbent.config) if t.seconds] if incumbent else []

    def tried(self) -> set[str]:
        """Settings already measured. A warm-up is not a measurement: on resume it may run the very proposal
        that was in flight, and that proposal must still be tried."""
        return {t.config.key() for t in self.compared()}


def with_settings(config: Settings, change: Settings) -> Settings:
    """``config`` with ``change`` applied on top: one value per knob and field, the change's where both set one."""
    return config.merged(change).collapsed()


def spec_payload(spec: Spec) -> dict[str, Any]:
    """The stored form of a spec: ``start`` as a ``--config`` dict."""
    return {**to_plain(spec), "start": spec.start.to_config()}


def spec_of(payload: dict[str, Any]) -> Spec:
    """A stored spec read back (see :func:`spec_payload`)."""
    spec = from_plain(Spec, {k: v for k, v in payload.items() if k != "start"})
    return dataclasses.replace(spec, start=Settings.from_config(payload.get("start") or {}))


def trial_payload(trial: Trial) -> dict[str, Any]:
    """The stored form of a trial: ``config`` as a ``--config`` dict, ``settings`` as ``--set`` arguments."""
    return {**to_plain(trial), "config": trial.config.to_config(), "settings": list(trial.settings.to_args())}


def trial_of(payload: dict[str, Any]) -> Trial:
    """A stored trial read back (see :func:`trial_payload`), as every version of pipetune stored it."""
    trial = from_plain(Trial, {**payload, "config": None, "settings": None})
    config = Settings.from_config(payload.get("config") or {})
    return dataclasses.replace(trial, config=config, settings=Settings.from_args(payload.get("settings") or ()))
