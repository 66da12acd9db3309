"""The six-step loop's decisions, pure: what to run next, and what a finished run means.

baseline -> identify (the policy reads the incumbent's run) -> one change -> measure -> keep or revert
-> repeat, until the budget or the time is spent, two measured trials in a row gain nothing (once Ray Data's own
defaults are measured), the run is within a few percent of its hardware bound, or nothing is left to try.
The driver (``loop.py``) runs what this decides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

from pipetune.diagnose import BatchCost, Facts, Limit, combined_limits, consumer_bound, noise_band
from pipetune.diagnose import capacity as predict
from pipetune.model import Run
from pipetune.settings import Settings
from pipetune.tune import objective
from pipetune.tune.bound import bound
from pipetune.tune.judge import judge, time_box
from pipetune.tune.policy import (
    Proposal,
    SearchPolicy,
    View,
    change_parts,
    measurable_defaults,
)
from pipetune.tune.study import Role, Study, Trial, Verdict, with_settings

PLATEAU_TRIALS = 2  # this many reverted trials in a row: the gains have run out
# Ray Data's unmeasured defaults take the next run once this many or fewer are left (never the first trial,
# the model's): two, so that a gain of theirs inside twice the noise can still be repeated (the judge's rule).
# As the last run, such a gain was never kept (service-pool benchmark at 2a716d4: 9% on their one run, 27%
# side by side, and the study handed back settings slower than Ray's defaults).
DEFAULTS_RUNS_LEFT = 2


@dataclass(frozen=True)
class Step:
    role: Role
    config: Settings  # every setting of the run
    change: str = ""
    settings: Settings = field(default_factory=Settings)  # the change alone
    rule: str = ""
    reason: str = ""
    time_box_s: float | None = None  # past this the trial is slower than the incumbent beyond the noise
    in_full: bool = False  # a warm-up that runs to its end (a confirmation's), not cut once its execution starts

    @staticmethod
    def trying(proposal: Proposal, config: Settings, box: float | None) -> Step:
        return Step(Role.TRIAL, config, proposal.change, proposal.settings, proposal.rule, proposal.reason, box)

    @staticmethod
    def again(trial: Trial, box: float | None) -> Step:
        return Step(Role.REPEAT, trial.config, trial.change, trial.settings, trial.rule, trial.reason, box)


@dataclass(frozen=True)
class Finish:
    reason: str
    ok: bool = True


def next_step(study: Study, incumbent_run: Run | None, policy: SearchPolicy) -> Step | Finish:
    baseline = study.baseline
    if baseline is None:
        return Step(Role.BASELINE, study.spec.start)
    if not baseline.measured:
        return Finish(f"the baseline run {baseline.run_id} {baseline.status}: nothing to tune from", ok=False)
    last = study.compared()[-1]
    incumbent = study.incumbent()
    assert incumbent is not None  # a succeeded baseline is one
    walls = study.incumbent_figures()
    box = time_box(walls)  # a probe of a loop counts it from the loop's start (objective.ProbeDone)
    if last.verdict is Verdict.REPEAT and study.runs_used < study.spec.budget:
        return Step.again(last, box)
    stop = _should_stop(study, incumbent_run, walls)
    if stop is not None:
        return stop
    assert incumbent_run is not None
    view = view_of(study, incumbent_run)
    if study.runs_used >= 1 and runs_left(study) <= DEFAULTS_RUNS_LEFT:
        last_call = _defaults_step(view, box)  # near the budget's end: Ray Data's defaults, while never measured
        if last_call is not None:
            return last_call
    if _plateaued(study):
        return _unless_defaults_untried(
            view, box, f"the last {PLATEAU_TRIALS} trials gained nothing: the gains have levelled off"
        )
    proposal = policy.propose(view)
    if proposal is None:
        return _unless_defaults_untried(
            view, box, "nothing left to try: every proposal was tried or cannot be scheduled"
        )
    return Step.trying(proposal, with_settings(incumbent.config, proposal.settings), box)


def view_of(study: Study, incumbent_run: Run) -> View:
    """What the policy reads: the incumbent (its settings and ``incumbent_run``) and what the study measured."""
    incumbent = study.incumbent()
    assert incumbent is not None  # a succeeded baseline is one
    failed = frozenset(s for t in study.trials if t.verdict is Verdict.FAILED for s in t.settings.stages)
    losers = [t for t in study.trials if t.verdict in (Verdict.SLOWER, Verdict.STOPPED)]
    lost = frozenset(s for t in losers if len(change_parts(t.settings)) == 1 for s in t.settings.stages)
    return View(incumbent.config, incumbent_run, frozenset(study.tried()), failed, lost,
                tuple(t.config for t in losers), noise_band(study.incumbent_figures(), ()),
                frozenset(study.spec.allow), batch_costs(study), memory_limits(study))  # fmt: skip


def batch_costs(study: Study) -> dict[int, BatchCost]:
    """Each stage's per-batch cost, fitted on the measured runs at its batch sizes (``capacity.fit_batch_cost``)
    among those that differ from the incumbent in batch sizes alone: other changes move the time per row too."""
    incumbent = study.incumbent()
    if incumbent is None:
        return {}
    same = _without_batches(incumbent.config)
    points: dict[int, list[tuple[int, float]]] = {}
    for t in study.compared():
        if t.measured and _without_batches(t.config) == same:
            for stage, point in t.batch_points.items():
                points.setdefault(int(stage), []).append(point)
    fitted = {stage: predict.fit_batch_cost(p) for stage, p in points.items()}
    return {stage: cost for stage, cost in fitted.items() if cost is not None}


def memory_limits(study: Study) -> dict[int, Limit]:
    """Per stage, what the study's runs measured when Ray's memory monitor killed its tasks: the tightest room,
    the task memory over their batch sizes (``task_memory.combined``)."""
    measured: dict[int, list[Limit]] = {}
    for t in study.trials:
        for stage, limit in t.memory_limits.items():
            measured.setdefault(int(stage), []).append(limit)
    return {stage: combined_limits(limits) for stage, limits in measured.items()}


def _without_batches(config: Settings) -> str:
    return Settings(tuple(s for s in config.stages if s.knob != "batch_size"), config.context).key()


def runs_left(study: Study) -> int:
    """The trial runs the study has left: its run budget's, and no more than its time budget fits at the
    incumbent's figure each (a full run's time: a probe takes less, a run stopped at its box a little more).
    The one home of "is this the last run", which Ray Data's unmeasured defaults are held for."""
    left, walls, time_s = study.spec.budget - study.runs_used, study.incumbent_figures(), study.spec.time_s
    each = statistics.median(walls) if walls else 0.0
    if time_s is None or each <= 0:
        return left
    spent = sum(t.wall_s or 0.0 for t in study.trials)
    return min(left, max(int((time_s - spent) // each), 0))


def _should_stop(study: Study, incumbent_run: Run | None, walls: list[float]) -> Finish | None:
    spec = study.spec
    if study.runs_used >= spec.budget:
        return Finish(f"the budget of {spec.budget} trial run(s) is spent")
    if runs_left(study) < 1:
        return Finish(f"the time budget of {spec.time_s:g} s would be passed by another run")
    if incumbent_run is None:
        return Finish("the incumbent's run cannot be loaded", ok=False)
    facts = Facts.of(incumbent_run)
    bound_loop = consumer_bound(facts)
    if bound_loop is not None and "iterator.batch_size" not in spec.allow:  # else the loop's batch may help
        return Finish(f"{bound_loop.symptom}: no pipeline setting can make the loop faster")
    floor, near = bound(facts), noise_band(walls, ())  # closer to the bound than the noise: no gain could show
    if floor is not None and floor.gap_pct is not None and floor.gap_pct <= near:
        return Finish(f"within {near:g}% of the hardware bound (the runs' noise): knob tuning has run out")
    return None


def _plateaued(study: Study) -> bool:
    """Whether the last measured trials all lost. A failed trial measured no gain, so it is left out: after it the
    policy knows the failed settings and proposes elsewhere, while the budget lasts (a clean clone's CI: a
    reverted block count, then Ray's defaults failing on a whole-block batch, ended a study with a run left)."""
    trials = [t for t in study.compared() if t.role in (Role.TRIAL, Role.REPEAT) and t.verdict is not Verdict.FAILED]
    recent = trials[-PLATEAU_TRIALS:]
    return len(recent) == PLATEAU_TRIALS and all(t.verdict.value.startswith("reverted") for t in recent)


def _unless_defaults_untried(view: View, box: float | None, reason: str) -> Step | Finish:
    """The study would end for ``reason``; but never with Ray Data's own defaults unmeasured (a tuned
    configuration must not be slower than them): while they were never tried and can run, they are the next trial."""
    return _defaults_step(view, box) or Finish(reason)


def _defaults_step(view: View, box: float | None) -> Step | None:
    """Ray Data's defaults as the next trial, where they were never measured and can run. Also once
    ``DEFAULTS_RUNS_LEFT`` runs or fewer are left after the first trial, so that the study never ends with them
    unmeasured (two-nodes benchmark: its third trial went to a smaller pool, and the defaults, never tried, ran
    4.3 s against the tuned 12.1 s)."""
    defaults = measurable_defaults(Facts.of(view.run, view.batch_costs), view)
    if defaults is not None:
        return Step.trying(defaults, with_settings(view.config, defaults.settings), box)
    return None


class Conclusion(NamedTuple):
    verdict: Verdict
    improvement_pct: float | None
    noise_pct: float | None
    seconds: float | None  # what the run is judged by (``objective.seconds``); None for a failed trial


def conclude(study: Study, step: Step, run: Run, incumbent_run: Run | None = None) -> Conclusion:
    """The verdict on a finished run of ``step``, and the figure it was judged by (a probed baseline's, predicted
    for the sink it measured itself). ``incumbent_run``: the incumbent's run, which tells whether the budget's
    last run is held for Ray Data's defaults (``_defaults_step``); without it none is."""
    sink = objective.sink_of(run) if step.role is Role.BASELINE else study.sink
    figure = objective.seconds(run, study.full_loops, study.full_rows, sink)
    if step.role is Role.WARMUP:
        return Conclusion(Verdict.NOT_COMPARED, None, None, figure)
    if step.role is Role.BASELINE:
        return Conclusion(Verdict.BASELINE, None, None, figure)
    probe = objective.is_probe(run)
    if run.status.value == "stopped" and not probe:
        return Conclusion(Verdict.STOPPED, None, None, figure)
    if not figure or not (run.status.ok or probe):
        return Conclusion(Verdict.FAILED, None, None, None)
    incumbent = study.incumbent()
    assert incumbent is not None
    base = study.incumbent_figures()
    mine = [t.seconds for t in study.runs_of(step.config) if t.seconds] + [figure]
    verdict = judge(base, mine, _can_repeat(study, step, incumbent_run))
    return Conclusion(verdict.verdict, verdict.improvement_pct, verdict.noise_pct, figure)


def _can_repeat(study: Study, step: Step, incumbent_run: Run | None) -> bool:
    """Whether a run is left for a repeat of ``step``. A repeat leaves the incumbent as it is, so the budget's
    last run after it is the one ``next_step`` gives Ray Data's defaults while they are unmeasured from that
    incumbent (``_defaults_step``; measured once ``step`` is them), and the repeat must not take it: http
    benchmark, a repeat of a within-twice-the-noise reservation spent the last run, lost, and the study ended on
    the shipped settings, slower than Ray's defaults (26.7 s against 31.3 s; where the reservation lost at once,
    the defaults ran and were kept)."""
    left = runs_left(study) - 1  # after this trial
    if left != 1 or incumbent_run is None:
        return left >= 1
    held = _defaults_step(view_of(study, incumbent_run), None)  # only asked where it could take the run
    return held is None or held.config.key() == step.config.key()
