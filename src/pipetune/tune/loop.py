"""Runs a study: one shared Ray, a scratch sandbox for every write, each trial stored the moment it ends.

The decisions are ``steps.py``'s; this module only carries them out. Nothing a trial does reaches the user's
outputs: every ``write_*`` goes to a scratch directory that is removed after the trial. A trial that fails,
hangs past its limit or is OOM-killed is recorded and the study goes on. The study's state is the fold of its
stored events, re-read before every decision, so a tuner killed at any point resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipetune._serde import to_plain
from pipetune.capture import ExecutionStarted, Message
from pipetune.diagnose import Facts, diagnose, noise_band, oom_limits
from pipetune.diagnose import capacity as predict
from pipetune.errors import UsageError
from pipetune.model import Run, RunStatus
from pipetune.record import Launch, Listener, StopRule, check_script, record, scratch, shared_ray
from pipetune.settings import Settings
from pipetune.store import Store, new_run_id
from pipetune.tune import objective
from pipetune.tune.patch import Patch
from pipetune.tune.policy import ModelGuided, SearchPolicy
from pipetune.tune.steps import Finish, Step, conclude, next_step
from pipetune.tune.study import Confirmation, Role, Spec, Study, Trial, Verdict, spec_payload, trial_payload

Say = Callable[[str], None]
Watch = Callable[[str], AbstractContextManager[Listener]]


class Runner(Protocol):
    """Runs one step of a study: the seam between deciding (``steps``) and measuring.

    Contract: ``run(study, step, run_id)`` returns the finished run of ``step.config`` under ``run_id``, already
    in the study's store whatever its outcome (failed, stopped at its time box, killed); it never touches the
    user's outputs; a Ctrl-C ends it with a run whose status is INTERRUPTED. ``open`` is entered once per
    study, around all its runs (a shared Ray, a scratch directory). The real one runs the script on Ray; a
    simulated pipeline runs whole studies in unit tests, on clusters this machine does not have."""

    def open(self, study: Study) -> AbstractContextManager[None]: ...

    def run(self, study: Study, step: Step, run_id: str) -> Run: ...


SANDBOX_NOTE = (
    "note: trials never touch your outputs: every write_* goes to a scratch directory, and what the script "
    "writes itself with Python under or beside a write_* path is put back after each trial; files C code or a "
    "Ray worker writes there are not"
)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Tuner:
    store: Store
    policy: SearchPolicy
    say: Say = _stderr
    warn: Say = _stderr  # what the user must know even when progress lines are off (--json)
    warmup: bool = True
    watch: Watch | None = None  # presentation, injected: a display for each trial, given its caption
    runner: Runner | None = None  # how a step is measured: the script on Ray unless one is injected
    _loaded: Run | None = field(default=None, init=False, repr=False)  # the incumbent's run (``_incumbent_run``)

    @staticmethod
    def using(store: Store, say: Say = _stderr) -> Tuner:
        return Tuner(store, ModelGuided(), say)

    def create(self, script: Path, args: tuple[str, ...], start: Settings, **spec: Any) -> str:
        path = check_script(script)
        study_id = "s" + new_run_id()
        spec_obj = Spec(script=_shown(path), args=args, cwd=os.getcwd(), start=start.collapsed(), **spec)
        self.store.create_study(study_id, spec_obj.script, spec_payload(spec_obj))
        return study_id

    def load(self, ref: str) -> Study:
        return Study.fold(*self.store.load_study(ref))

    def drive(self, study_id: str) -> Study:
        study = self.load(study_id)
        for run_id in study.in_flight:  # the tuner died during these: close them, then run the step again
            self.store.abandon(run_id, "the tuner stopped while this trial ran (it will be run again)")
        if study.finished is not None:
            return study
        _check_cwd(study.spec)
        self.warn(SANDBOX_NOTE)
        runner = self.runner or OnRay(self.store, self.watch)
        with runner.open(study):
            warm = not self.warmup
            while True:
                study = self.load(study_id)
                step = next_step(study, self._incumbent_run(study), self.policy)
                if isinstance(step, Finish):
                    self._finish(study, step)
                    return self.load(study_id)
                if not warm:
                    self._run(runner, study, Step(Role.WARMUP, step.config))
                    warm = True
                    continue
                self._run(runner, study, step)

    def confirm(self, study_id: str) -> Confirmation:
        """Run the study's best settings once in full (never a probe, never time-boxed) and store what its
        trial predicted against what the full run measured: a probe's prediction is checked, not trusted.

        The study measured its trials on a Ray that had already run the pipeline in full (the baseline), so
        the confirming run gets the same: a warm-up of the best settings, run to its end. A warm-up cut when
        its execution starts (the study's) leaves part of a fresh Ray's first-run cost in the next run: on the
        ETL example with repartition 8 and Ray's default batch, the first full run after it took 7.34 and 7.09
        s against 5.5-5.9 s for the runs after (after a full warm-up: 5.6-6.4 s; three runs a round, two
        rounds each, ``benchmarks/warmup.py``'s method)."""
        study = self.load(study_id)
        best = study.incumbent()
        if best is None:
            raise UsageError(f"study {study.id} has no measured settings to confirm", "run the study first")
        runner = self.runner or OnRay(self.store, self.watch)
        step = Step(Role.CONFIRM, best.config, change="the best settings, in full")
        with runner.open(study):
            if self.warmup:  # its Ray is as cold as the study's was before its warm-up: compare like with like
                self._run(
                    runner, study, Step(Role.WARMUP, best.config, "the best settings, run to their end", in_full=True)
                )
            self.say(_announce(study, step))
            run = runner.run(study, step, new_run_id())
        measured = objective.seconds(run, {}) if run.status.ok else None
        confirmed = Confirmation(run.id, best.seconds, measured, run.status.value, best.probe)
        self.store.append_study(study.id, "confirmed", to_plain(confirmed))
        self.say(confirmation_line(confirmed))
        return confirmed

    def _incumbent_run(self, study: Study) -> Run | None:
        """The incumbent's latest run, loaded once: ``next_step`` and ``conclude`` both read it, and a finished
        run in the store never changes."""
        incumbent = study.incumbent()
        runs = study.runs_of(incumbent.config) if incumbent else []
        if not runs:
            return None
        if self._loaded is None or self._loaded.id != runs[-1].run_id:
            self._loaded = self.store.load(runs[-1].run_id)
        return self._loaded

    def _run(self, runner: Runner, study: Study, step: Step) -> None:
        run_id = new_run_id()
        started = {
            "run_id": run_id,
            "role": step.role.value,
            "config": step.config.to_config(),
            "settings": list(step.settings.to_args()),
        }
        self.store.append_study(study.id, "trial-started", started)
        self.say(_announce(study, step))
        run = runner.run(study, step, run_id)
        if run.status is RunStatus.INTERRUPTED:  # Ctrl-C: the run is kept as interrupted, the study stops here
            raise KeyboardInterrupt  # and the trial stays in flight, so --resume runs it again
        facts = Facts.of(run)
        verdict, gain, noise, seconds = conclude(study, step, run, self._incumbent_run(study))
        findings = tuple(
            f"{f.rule}: {f.fix.describe() if f.fix else f.symptom}" for f in diagnose(run, facts=facts).findings
        )
        trial = Trial(
            seq=len(study.trials),
            role=step.role,
            config=step.config,
            change=step.change,
            settings=step.settings,
            rule=step.rule,
            reason=step.reason,
            run_id=run.id,
            status=run.status.value,
            wall_s=run.wall_s,
            rows=run.rows,
            verdict=verdict,
            improvement_pct=gain,
            noise_pct=noise,
            findings=findings[:4],
            measured_s=seconds,
            probe=objective.is_probe(run),
            consumed=objective.consumed(run),
            consumed_rows=objective.consumed_rows(run),
            sink=objective.sink_of(run),
            batch_points=_batch_points(facts),
            memory_limits={str(i): limit for i, limit in oom_limits(facts).items()},
        )
        self.store.append_study(study.id, "trial", trial_payload(trial))
        self.say(_result(trial, run))

    def _finish(self, study: Study, finish: Finish) -> None:
        incumbent = study.incumbent()
        best = incumbent.config if incumbent else study.spec.start
        payload = {"reason": finish.reason, "ok": finish.ok, "best": best.to_config(), "at": time.time()}
        self.store.append_study(study.id, "finished", payload)
        self.say(f"study {study.id}: {finish.reason}")


@dataclass
class OnRay:
    """The real runner: the script on one Ray shared by the study's runs, every write to a scratch directory."""

    store: Store
    watch: Watch | None = None
    address: str | None = None
    sandbox: Path | None = None

    @contextmanager
    def open(self, study: Study) -> Iterator[None]:
        with shared_ray(study.spec.address) as address, scratch("pipetune-tune-") as sandbox:
            self.address, self.sandbox = address, sandbox
            yield

    def run(self, study: Study, step: Step, run_id: str) -> Run:
        assert self.sandbox is not None, "OnRay.run outside OnRay.open"
        spec = study.spec
        scratch_dir = self.sandbox / run_id
        scratch_dir.mkdir()
        launch = Launch(
            script=Path(spec.script),
            args=tuple(spec.args),
            overrides=step.config,
            address=self.address,
            timeout_s=_limit(spec, step, bool(study.full_loops)),
            sandbox=scratch_dir,
            stop=_stop_rule(step, study),
            run_id=run_id,
            output=self.sandbox / f"{run_id}.log",
            extra_env={"RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
        )
        try:
            if self.watch is None:
                return record(launch, self.store)
            with self.watch(_announce(study, step)) as listener:
                return record(launch, self.store, listener)
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)


def _batch_points(facts: Facts) -> dict[str, tuple[int, float]]:
    """Per stage with an explicit batch size, the batch it ran and its time per row (``capacity.batch_point``)."""
    run = facts.run
    if not run.status.ok:
        return {}
    points = ((s.index, predict.batch_point(facts, s.index)) for s in run.stages if s.method == "map_batches")
    return {str(i): point for i, point in points if point is not None}


def _limit(spec: Spec, step: Step, loops: bool = False) -> float | None:
    """A hard limit for runs with no time box (baseline, warm-up, and a probe, whose box counts from its loop's
    start): the user's, if any."""
    if step.time_box_s is not None and not loops:
        return step.time_box_s + 30.0  # the stop rule ends it first; this catches a run that sends nothing
    return spec.trial_timeout_s


def _stop_rule(step: Step, study: Study) -> StopRule | None:
    """A warm-up ends a while after its first execution starts; a trial of a pipeline the script's loops consume
    is a probe, ended once its loops' steady rate is timed; a trial of one that ends in a sink is a probe too,
    ended once its sink's steady rate is known within the noise or at its time box, and so is the baseline of
    one whose first execution writes (its noise band the floor, nothing measured yet); any other time-boxed
    trial ends at its box; a confirmation runs in full."""
    if step.role is Role.WARMUP:
        return None if step.in_full else warm_up_rule()
    if step.role is Role.BASELINE:
        return objective.SinkProbeDone(None, noise_band((), ()))
    probing = step.role in (Role.TRIAL, Role.REPEAT)
    if study.full_loops and probing:
        return objective.ProbeDone(study.full_loops, step.time_box_s)
    sink = study.sink
    if sink is not None and probing:
        return objective.SinkProbeDone(sink, noise_band(study.incumbent_figures(), ()), step.time_box_s)
    return objective.time_boxed(step.time_box_s)


def warm_up_rule() -> StopRule:
    """A warm-up has done its job once its first execution starts: what a fresh cluster makes each script's
    first run pay (measured with ``benchmarks/warmup.py``, the first of three runs on a new local Ray against the
    faster of the other two: +1.4 to +1.5 s on the six-stage ETL, +1.8 to +2.7 s on the model pool) was gone
    after such a warm-up (-0.2 to +0.2 s on both, inside the runs' spread). The old rule, 3 s of execution,
    cost 1.2 to 1.5 s more a study and took nothing more away.

    Not on every pipeline: on the ETL example (repartition 8, Ray's default batch) the first full run after
    this warm-up still took 7.1-7.3 s against 5.5-5.9 s for the runs after it (after no warm-up: 7.8-8.7 s),
    so its baseline carries about 1.5 s of first-run cost. Part of it is Ray Data's detached actors (stats,
    autoscaling coordinator, usage), made on a cluster's first execution; a warm-up that made them first took
    away about half. A full warm-up takes it all away and costs a whole run; ``confirm`` pays that, a study
    does not."""

    def warmed(message: Message) -> str | None:
        if isinstance(message, ExecutionStarted):
            return "warm-up done: stopped once the pipeline's first execution started"
        return None

    return warmed


def _check_cwd(spec: Spec) -> None:
    """The script's relative paths and arguments mean what they meant when the study began."""
    if spec.cwd and Path(spec.cwd).resolve() != Path.cwd().resolve():
        raise UsageError(f"this study ran in {spec.cwd}", f"resume it from there: cd {spec.cwd}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _announce(study: Study, step: Step) -> str:
    n = study.runs_used + (1 if step.role in (Role.TRIAL, Role.REPEAT) else 0)
    named = {Role.WARMUP: "warm-up", Role.BASELINE: "baseline", Role.CONFIRM: "confirm"}
    what = named.get(step.role, f"trial {n}/{study.spec.budget}")
    return f"{what}: {step.change or 'the starting settings'}" + (" (again)" if step.role is Role.REPEAT else "")


def _result(trial: Trial, run: Run) -> str:
    wall = f"{trial.wall_s:.1f} s" if trial.wall_s else "-"
    if trial.measured_s is not None and trial.measured_s != trial.wall_s:
        what = "the loop" if trial.consumed else "in full"
        wall += f", {what} {trial.measured_s:.1f} s" + (" (predicted from a probe)" if trial.probe else "")
    gain = (
        f" ({trial.improvement_pct:+.1f}%, noise {trial.noise_pct:.1f}%)" if trial.improvement_pct is not None else ""
    )
    return f"  {trial.status}, {wall}{gain} -> {_verdict_text(trial, run)}"


def _verdict_text(trial: Trial, run: Run) -> str:
    """The verdict, with the run's error where it failed; a stop at the box in the stop's own words alone."""
    if not run.error or run.status.ok:
        return trial.verdict.value
    if trial.verdict is Verdict.STOPPED:  # the stop's words already say what the verdict would
        return f"reverted: {run.error}"
    return f"{trial.verdict.value}: {run.error}"


def confirmation_line(c: Confirmation) -> str:
    """``confirmed: predicted 4.76 s (predicted from a probe), measured 4.47 s in full (+6%)``."""
    if c.error_pct is None or c.predicted_s is None or c.measured_s is None:
        return f"confirm: the full run of the best settings {c.status}: nothing to compare"
    how = " (predicted from a probe)" if c.probe else ""
    return (
        f"confirmed: predicted {c.predicted_s:.2f} s{how}, measured {c.measured_s:.2f} s in full ({c.error_pct:+.0f}%)"
    )


def apply_patch(patch: Patch) -> None:
    """Write the patched script in place: whole or not at all, and only over the text the patch was made from."""
    target = Path(patch.path)
    if target.read_text() != patch.source:
        raise UsageError(f"{target} changed while the study ran; not patched", "apply the printed diff by hand")
    tmp = target.with_name(f".{target.name}.pipetune-tmp")
    tmp.write_text(patch.patched)
    os.replace(tmp, target)
