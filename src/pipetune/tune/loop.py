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
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.capture import ExecutionStarted, Message, clock
from pipetune.diagnose import diagnose
from pipetune.errors import UsageError
from pipetune.model import Run, RunStatus
from pipetune.record import Launch, Listener, StopRule, check_script, record, scratch, shared_ray
from pipetune.settings import Settings
from pipetune.store import Store, new_run_id
from pipetune.tune.patch import Patch
from pipetune.tune.policy import ModelGuided, SearchPolicy
from pipetune.tune.steps import Finish, Step, conclude, next_step
from pipetune.tune.study import Role, Spec, Study, Trial, spec_payload, trial_payload

WARMUP_AFTER_EXECUTION_S = 3.0  # a warm-up has done its job once the pipeline has run this long
Say = Callable[[str], None]
Watch = Callable[[str], AbstractContextManager[Listener]]
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
        with shared_ray(study.spec.address) as address, scratch("pipetune-tune-") as sandbox:
            warm = not self.warmup
            while True:
                study = self.load(study_id)
                step = next_step(study, self._incumbent_run(study), self.policy)
                if isinstance(step, Finish):
                    self._finish(study, step)
                    return self.load(study_id)
                if not warm:
                    self._run(study, Step(Role.WARMUP, step.config), address, sandbox)
                    warm = True
                    continue
                self._run(study, step, address, sandbox)

    def _incumbent_run(self, study: Study) -> Run | None:
        incumbent = study.incumbent()
        runs = study.runs_of(incumbent.config) if incumbent else []
        return self.store.load(runs[-1].run_id) if runs else None

    def _run(self, study: Study, step: Step, address: str | None, sandbox: Path) -> None:
        run_id = new_run_id()
        started = {
            "run_id": run_id,
            "role": step.role.value,
            "config": step.config.to_config(),
            "settings": list(step.settings.to_args()),
        }
        self.store.append_study(study.id, "trial-started", started)
        self.say(_announce(study, step))
        run = self._record(study, step, run_id, address, sandbox)
        if run.status is RunStatus.INTERRUPTED:  # Ctrl-C: the run is kept as interrupted, the study stops here
            raise KeyboardInterrupt  # and the trial stays in flight, so --resume runs it again
        verdict, gain, noise = conclude(study, step, run)
        findings = tuple(f"{f.rule}: {f.fix.describe() if f.fix else f.symptom}" for f in diagnose(run).findings)
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
        )
        self.store.append_study(study.id, "trial", trial_payload(trial))
        self.say(_result(trial, run))

    def _record(self, study: Study, step: Step, run_id: str, address: str | None, sandbox: Path) -> Run:
        spec = study.spec
        scratch = sandbox / run_id
        scratch.mkdir()
        launch = Launch(
            script=Path(spec.script),
            args=tuple(spec.args),
            overrides=step.config,
            address=address,
            timeout_s=_limit(spec, step),
            sandbox=scratch,
            stop=_stop_rule(step),
            run_id=run_id,
            output=sandbox / f"{run_id}.log",
            extra_env={"RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
        )
        try:
            if self.watch is None:
                return record(launch, self.store)
            with self.watch(_announce(study, step)) as listener:
                return record(launch, self.store, listener)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _finish(self, study: Study, finish: Finish) -> None:
        incumbent = study.incumbent()
        best = incumbent.config if incumbent else study.spec.start
        payload = {"reason": finish.reason, "ok": finish.ok, "best": best.to_config(), "at": time.time()}
        self.store.append_study(study.id, "finished", payload)
        self.say(f"study {study.id}: {finish.reason}")


def _limit(spec: Spec, step: Step) -> float | None:
    """A hard limit for runs with no time box (baseline, warm-up): the user's, if any."""
    if step.time_box_s is not None:
        return step.time_box_s + 30.0  # the stop rule ends it first; this catches a run that sends nothing
    return spec.trial_timeout_s


def _stop_rule(step: Step) -> StopRule | None:
    """A warm-up ends a while after its first execution starts; a time-boxed trial ends at its box."""
    if step.role is Role.WARMUP:
        started: list[float] = []

        def warmed(message: Message) -> str | None:
            if isinstance(message, ExecutionStarted) and not started:
                started.append(message.t)
            t = clock(message)
            if started and t is not None and t - started[0] >= WARMUP_AFTER_EXECUTION_S:
                return "warm-up done: stopped once the pipeline had run for a while"
            return None

        return warmed
    box = step.time_box_s
    if box is None:
        return None

    def boxed(message: Message) -> str | None:
        t = clock(message)
        if t is not None and t > box:
            return f"stopped at its time box ({box:.1f} s): slower than the incumbent beyond the noise"
        return None

    return boxed


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
    what = {Role.WARMUP: "warm-up", Role.BASELINE: "baseline"}.get(step.role, f"trial {n}/{study.spec.budget}")
    return f"{what}: {step.change or 'the starting settings'}" + (" (again)" if step.role is Role.REPEAT else "")


def _result(trial: Trial, run: Run) -> str:
    wall = f"{trial.wall_s:.1f} s" if trial.wall_s else "-"
    gain = (
        f" ({trial.improvement_pct:+.1f}%, noise {trial.noise_pct:.1f}%)" if trial.improvement_pct is not None else ""
    )
    error = f": {run.error}" if run.error and not run.status.ok else ""
    return f"  {trial.status}, {wall}{gain} -> {trial.verdict.value}{error}"


def apply_patch(patch: Patch) -> None:
    """Write the patched script in place: whole or not at all, and only over the text the patch was made from."""
    target = Path(patch.path)
    if target.read_text() != patch.source:
        raise UsageError(f"{target} changed while the study ran; not patched", "apply the printed diff by hand")
    tmp = target.with_name(f".{target.name}.pipetune-tmp")
    tmp.write_text(patch.patched)
    os.replace(tmp, target)
