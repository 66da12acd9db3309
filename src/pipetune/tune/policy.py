"""The next change to try: a search policy proposes, the loop measures and decides.

A policy is pure: the same view gives the same proposal. The model-guided policy starts from the doctor's
findings on the incumbent's latest run (what is wrong, and the guide's fix for it), sizes the numeric changes
from the measured service rates (how many batches pay a fixed cost, how many slots a stage can use), adds the
moves the doctor cannot express as one knob (a larger actor pool with a smaller reservation, so it fits),
predicts each one's gain, and proposes the best that was never tried and that Ray can schedule.
Ordering: the guide's hierarchy (parallelism, then batch size, then DataContext) among changes of similar
predicted gain; a change predicted to gain several times more goes first, whatever its level (``diagnose.ranking``,
the doctor's order too).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pipetune.diagnose import (
    DEFAULT_NUM_CPUS,
    NUM_CPUS_IO,
    WAITING_CORES,
    BatchCost,
    Facts,
    Finding,
    Fix,
    Level,
    Limit,
    diagnose,
    gain_tier,
    guide_oom_fix,
    ray_default_blocks,
    urgency,
)
from pipetune.diagnose import capacity as predict
from pipetune.model import EventKind, Run, Stage, StageKind
from pipetune.settings import (
    DEFAULT,
    ITERATOR_PROTECTED,
    ContextSetting,
    Settings,
    StageSetting,
    Where,
    change,
    knob,
    show,
)
from pipetune.tune.feasible import over_memory, unschedulable
from pipetune.tune.study import with_settings


@dataclass(frozen=True)
class Proposal:
    settings: Settings  # the change, applied on top of the incumbent's settings
    change: str
    rule: str  # the doctor rule or model move it comes from
    reason: str
    level: Level
    predicted: float  # predicted speed-up of the whole run (1.0: unknown or none)
    at_least: bool = False  # ``predicted`` is a lower bound: part of the cost it removes is not measured yet
    guided: bool = False  # the guide's range sized it: the run gave the model no figure for it (``_guide_batch``)


@dataclass(frozen=True)
class View:
    """What a policy may look at: the incumbent's settings and latest run, and every setting tried so far."""

    config: Settings
    run: Run
    tried: frozenset[str]  # the keys (``Settings.key``) of every configuration measured
    failed: frozenset[StageSetting] = frozenset()  # the changes of trials that failed (e.g. a batch out of memory)
    lost: frozenset[StageSetting] = frozenset()  # the changes of trials that ran slower than the incumbent
    lost_configs: tuple[Settings, ...] = ()  # the configurations of trials that ran slower (``bisections``)
    noise_pct: float = 0.0  # the noise band of the incumbent's runs: a predicted gain inside it is not proposed
    allow: frozenset[str] = frozenset()  # protected knobs the user lets tuning change (``iterator.batch_size``)
    batch_costs: Mapping[int, BatchCost] = field(default_factory=dict)  # per-batch costs fitted over the runs
    memory: Mapping[int, Limit] = field(default_factory=dict)  # per stage, what OOM kills measured (any run)


class SearchPolicy(Protocol):
    """Proposes the next change from the incumbent.

    Contract: ``propose`` is deterministic for a given view; it never returns settings whose full
    configuration (the incumbent's settings with the proposal's applied) is in ``view.tried``; it only returns
    settings Ray can schedule on the recorded cluster; it never returns a change whose predicted gain is inside
    ``view.noise_pct`` (a gain no measurement could tell from noise); it returns None when it has nothing left.
    """

    name: str

    def propose(self, view: View) -> Proposal | None: ...


class ModelGuided:
    name = "model-guided"

    def propose(self, view: View) -> Proposal | None:
        """A half of a joint change that lost comes first (``bisections``) where the model predicts something for
        it, then the best candidate; a half it predicts nothing for (``blind``: the halves of Ray Data's defaults
        for several knobs) is ranked among the candidates, after the moves the model or the guide backs in its
        tier (model-pool benchmark: the defaults lost at their box, then a blind half of them took the last
        trial, also to its box, while the read's block default, predicted 1.6x, was never tried)."""
        facts = Facts.of(view.run, view.batch_costs)
        measure = measure_calls(facts)  # pending while it passes every filter a proposal does: else nothing waits
        pending = _best(facts, iter([measure]), view) if measure is not None else None
        halves = list(bisections(facts, view))
        rest = itertools.chain(candidates(facts, view.allow, view.noise_pct, pending), filter(blind, halves))
        for source in (itertools.filterfalse(blind, halves), rest):
            best = _best(facts, source, view)
            if best is not None:
                return best
        return None


def _best(facts: Facts, proposals: Iterator[Proposal], view: View) -> Proposal | None:
    kept = (q for p in proposals if (q := _without_lost(facts, p, view)) is not None)
    capped = (_below_failures(facts, _back_off(facts, p, view), view) for p in kept)
    runnable = [p for p in capped if p is not None and viable(p, view) and _measurable(p, view)]
    allowed = [p for p in runnable if _allowed(p, view)]
    return min(smallest_batches(facts, allowed, view.noise_pct), key=_rank, default=None)


def smallest_batches(facts: Facts, proposals: list[Proposal], noise_pct: float) -> list[Proposal]:
    """The proposals less each batch size for which a smaller one on the same stage is predicted to gain as
    much, within the noise: the model's batch cost is linear in the rows, so past the point where fixed costs
    stop weighing, larger batches predict gains no run could tell apart, while what they cost (memory, and
    each batch's working set falling out of the CPU caches) is not in one run's measurements. So the
    smallest batch that gets the gain goes first; a larger one is proposed from its run if that still predicts
    a gain beyond the noise (ETL example: whole blocks predicted 2.20x, 2048 rows 2.12x; whole blocks ran 13%
    slower than 4096 rows)."""
    sized = [(p, s, rows) for p in proposals if (s := _only(p.settings, "batch_size")) is not None
             and (rows := _rows(facts, int(s.selector), s.value)) is not None]  # fmt: skip
    shadowed = {id(p) for p, s, rows in sized for q, t, fewer in sized if s.selector == t.selector
                and fewer < rows and not beyond_noise(p.predicted / q.predicted, noise_pct)}  # fmt: skip
    return [p for p in proposals if id(p) not in shadowed]


def _without_lost(facts: Facts, p: Proposal, view: View) -> Proposal | None:
    """A joint change less the parts that already lost alone (a bisection's verdict), predicted anew; a change to
    one stage that already lost is not tried again from another incumbent (a lost num_cpus is backed off from
    instead, ``_back_off``)."""
    joint = len(change_parts(p.settings)) > 1
    gone = [s for s in p.settings.stages if s in view.lost and (joint or s.knob != "num_cpus")]
    if not gone:
        return p
    left = Settings(tuple(s for s in p.settings.stages if s not in gone), p.settings.context)
    if not joint or not left.stages:
        return None
    why = f"{p.reason}; without {' '.join(s.arg for s in gone)}, which lost alone"
    what = f"{p.change.split(':')[0]}: {', '.join(left.to_args())}"
    floor = p.at_least and not any(s.knob == "batch_size" for s in gone)  # the guide's batch, if any, may be gone
    return replace(p, settings=left, change=what, reason=why, predicted=_config_gain(facts, left), at_least=floor)


def _allowed(p: Proposal, view: View) -> bool:
    consumers = {str(s.index) for s in view.run.stages if s.kind is StageKind.CONSUME}
    touched = {s.knob for s in p.settings.stages if s.selector in consumers and s.knob in ITERATOR_PROTECTED}
    return all(f"iterator.{knob}" in view.allow for knob in touched)


def _measurable(p: Proposal, view: View) -> bool:
    """A predicted gain must clear the noise; 1.0 is "the model cannot say", and a lower bound (``at_least``)
    cannot say it will not: the trial run decides both."""
    return p.predicted == 1.0 or p.at_least or beyond_noise(p.predicted, view.noise_pct)


def beyond_noise(ratio: float, noise_pct: float) -> bool:
    """Whether a predicted speed-up ``ratio`` (of one configuration over another) is more than ``noise_pct``: a
    smaller one is a difference no measurement could tell from noise. The one home of that judgement for
    predictions (the judge's, for measured runs, is ``diagnose.noise.compare``)."""
    return ratio > 1 + noise_pct / 100


def _rank(p: Proposal) -> tuple[int, int, bool, int, float, bool]:
    """The doctor's order (urgency, gain tier, the guide's level), except that within a tier a proposal nothing
    backs (the model cannot say, 1.0, and no guide's range gives a floor: Ray Data's defaults for several knobs)
    goes after one the model or the guide backs. The defaults still run before the study ends
    (``steps._defaults_step``); ahead of a backed move they took the budget it needed (embed benchmark: the
    defaults ran to their time box, then a bisection of them, and the guide's batch was never tried). At equal
    predicted gains a floor (``at_least``) goes before a point estimate: it can only gain more."""
    return (urgency(p.rule), gain_tier(p.predicted), blind(p), int(p.level), -p.predicted, not p.at_least)


def blind(p: Proposal) -> bool:
    """Whether nothing backs ``p``'s gain: the model cannot say (1.0) and no guide's range gives it a floor."""
    return p.predicted == 1.0 and not p.at_least


def _below_failures(facts: Facts, p: Proposal, view: View) -> Proposal | None:
    """A batch size at or above one that failed is brought under it: half-way, in ratio, between the incumbent's
    batch (which ran) and the smallest that failed. That is the guide's "halve on OOM" when the two are close,
    and a bisection when a large step up failed (2 ran, whole blocks of 1500 failed: 54, not 750). A joint
    change with such a batch size is dropped: its other parts are proposed on their own."""
    wanted = _only(p.settings, "batch_size")
    if wanted is None:
        return p if all(_fails_at(facts, s, view) is None for s in p.settings.stages) else None
    limit = _fails_at(facts, wanted, view)
    if limit is None:
        return p
    index = int(wanted.selector)
    batch = view.run.stage(index).knobs.batch_size
    current = batch if batch is not None else _rows(facts, index, DEFAULT) or 1  # None ran whole blocks
    middle = min(int(math.sqrt(max(current, 1) * limit)), limit // 2)
    if middle <= current:
        return None
    what = f"stage {index} {change('batch_size', batch, middle)}"
    why = f"{limit} rows per batch failed and {current} ran: half-way between, in ratio"
    return Proposal(_one(index, "batch_size", middle), what, p.rule, why, p.level, p.predicted)


def _fails_at(facts: Facts, setting: StageSetting, view: View) -> int | None:
    """The smallest failed batch size of the setting's stage when the setting asks for at least that many rows;
    None when it asks for fewer, or is no batch size."""
    if setting.knob != "batch_size":
        return None
    index = int(setting.selector)
    limits = [x for f in view.failed if _same_knob(f, setting) and (x := _rows(facts, index, f.value)) is not None]
    asked = _rows(facts, index, setting.value)
    return min(limits) if limits and asked is not None and asked >= min(limits) else None


def _rows(facts: Facts, stage: int, value: object) -> int | None:
    """A batch_size value in rows: ``default`` is a whole task's rows."""
    if value == DEFAULT:
        rows = predict.rows_per_task(facts, stage)
        return int(rows) if rows else None
    return value if isinstance(value, int) else None


def _only(settings: Settings, name: str) -> StageSetting | None:
    """The change's one setting when it is exactly one setting of knob ``name``."""
    if settings.context or len(settings.stages) != 1 or settings.stages[0].knob != name:
        return None
    return settings.stages[0]


def _same_knob(a: StageSetting, b: StageSetting) -> bool:
    return (a.selector, a.knob) == (b.selector, b.knob)


def _one(stage: int, name: str, value: object) -> Settings:
    """One knob of one stage, checked as if the user had set it."""
    return Settings((StageSetting(str(stage), name, knob(name).value(value)),))


def viable(p: Proposal, view: View) -> bool:
    """Never measured from this incumbent, not the incumbent itself, and schedulable on the recorded nodes."""
    config = with_settings(view.config, p.settings)
    if config.key() in view.tried or config.key() == view.config.key():
        return False
    return unschedulable(view.run, config) is None and over_memory(view.run, config, view.memory) is None


def candidates(
    facts: Facts, allow: frozenset[str] = frozenset(), noise_pct: float = 0.0, measure: Proposal | None = None
) -> Iterator[Proposal]:
    """Every change worth predicting: the doctor's fixes, the model's batch and pool moves, Ray Data's
    defaults, and all the model's own moves at once (stages that limit together only gain together), less the
    parts the model predicts add no more than ``noise_pct`` beside the others; with ``allow``, the moves of the
    loop's own knobs the user lets tuning change. With ``measure`` (``measure_calls``, proposable from this
    incumbent), the model's moves and the doctor's fixes that size the slots of a stage it measures wait until
    it has run: they would be sized on the rates its batches change. Ray Data's defaults (measured, not sized)
    and the guide's moves against OOM kills (urgent) do not wait."""
    findings = diagnose(facts.run).findings
    fixes = [p for p in (_from_finding(facts, f) for f in findings) if p is not None]
    moves = [*_batch_moves(facts), *_pool_moves(facts)]
    if measure is not None:
        waiting = {int(s.selector) for s in measure.settings.stages}
        fixes, moves = _sized_after(fixes, waiting), _sized_after(moves, waiting)
        yield measure
    yield from fixes
    yield from _guide_oom_moves(facts, findings)
    yield from moves
    bound = next((f for f in findings if f.rule == "consumer-bound"), None)
    yield from _loop_batch_moves(facts, bound, allow)
    yield from _default_moves(facts)
    parallel = [p for p in fixes if p.level is Level.PARALLELISM]
    joint = _joint(facts, [*moves, *parallel], noise_pct, guide_batches(fixes))
    if joint is not None:
        yield joint


def _sized_after(proposals: list[Proposal], waiting: set[int]) -> list[Proposal]:
    """The proposals that change no slots of a stage ``waiting`` for its measurement."""
    return [p for p in proposals if not any(int(s.selector) in waiting and s.knob != "batch_size"
                                            for s in p.settings.stages)]  # fmt: skip


def _joint(
    facts: Facts, proposals: list[Proposal], noise_pct: float = 0.0, guided: Sequence[Proposal] = ()
) -> Proposal | None:
    """Each stage's knobs at the value its own move asks for, all in one configuration, predicted by the model
    of the whole pipeline: the first trial after the baseline can then be the model's optimum. A knob the model
    cannot size on this run (``guided``: the guide's batch where no batch cost was measured) takes the guide's
    value beside the rest, where the rest predicts a gain beyond the noise, rather than wait for a trial of its
    own; the prediction is then a floor (``at_least``): the model's gain for the parts it weighs, and at least
    what each move it carries whole predicts alone (embed benchmark: the pool went first, the guide's 4 -> 16
    second, 8.6% faster, inside twice the noise with no run left to repeat it, and the settings handed back
    missed the oracle's batch)."""
    chosen: dict[tuple[str, str], StageSetting] = {}
    smallest = smallest_batches(facts, proposals, noise_pct)
    for p in sorted(smallest, key=lambda p: -p.predicted):  # where two moves set one knob, the likelier gain
        if not p.settings.context and all((s.selector, s.knob) not in chosen for s in p.settings.stages):
            chosen.update({(s.selector, s.knob): s for s in p.settings.stages})
    settings, left_out = _weighed(facts, Settings(tuple(chosen.values())), noise_pct)
    gain = _config_gain(facts, settings)
    guide = _merged([p.settings for p in guided]) if beyond_noise(gain, noise_pct) else Settings()
    whole = settings.merged(guide)
    if len(change_parts(whole)) < 2:
        return None  # one move alone is proposed on its own already
    if guide.stages:  # a floor: at least what each move it carries whole predicts alone
        carried = [p for p in smallest if not p.settings.context and set(p.settings.stages) <= set(settings.stages)]
        gain = max([gain, *(p.predicted for p in carried)])
    what = "the model's optimum: " + ", ".join(a for a in whole.to_args())
    why = f"every stage's move at once, predicted {gain:.2f}x by the model of the whole pipeline"
    why += f"; {_alone(facts, settings)}" if settings.stages else ""
    if guide.stages:
        why += f"; with the guide's {' '.join(guide.to_args())}, which this run cannot size: the gain is a floor"
    if left_out:
        why += f"; left out, tried on their own: {' '.join(left_out)} (the model adds nothing for them beside the rest)"
    return Proposal(whole, what, "joint (model)", why, Level.PARALLELISM, gain, at_least=bool(guide.stages))


MEASURING_WHY = (
    "these stages wait for part of their time, and one run at one batch size cannot tell a wait per call (larger "
    "batches pay in proportion) from a wait per row (they change nothing); Ray Data's default batch (whole "
    "blocks) measures which, and the moves that size these stages' slots wait until this run is done"
)


def measure_calls(facts: Facts) -> Proposal | None:
    """Ray Data's default batch (whole blocks) for every stage whose cost per call the model cannot tell
    (``call_cost_unknown``), whose batches are smaller than its blocks and whose whole block fits the guide's
    memory share, in one change; None where there is none. At a cost per row it changes neither the tasks (a
    task is a block either way) nor the time per row; at a cost per call it divides the calls. Slots sized on
    the per-row reading would be sized on a rate the batch then changes (two-nodes bench pipeline, 25-row calls
    on 200-row blocks, each call a 60 ms request; in studies, five 0.25-CPU Scorers with whole blocks ran 17.2 s
    from 26.6, whole blocks on the shipped Scorer 13.8 s from 27.2; in the grid, one run each on a warm cluster,
    whole blocks for the Scorer 12.2 s, for it and the parse stage 8.1 s). Predicted: the gain if each stage's
    whole wait were paid once per call (an upper bound; none if per row)."""
    stages = [s for s in facts.run.stages if _whole_blocks_measure(facts, s)]
    if not stages:
        return None
    upper = facts
    for stage in stages:
        upper = predict.waits_per_call(upper, stage.index, stage.knobs.batch_size or 1)
    settings = Settings(tuple(StageSetting(str(s.index), "batch_size", DEFAULT) for s in stages))
    gain = _config_gain(upper, settings)
    what = ", ".join(f"stage {s.index} {change('batch_size', s.knobs.batch_size, None)}" for s in stages)
    why = f"{MEASURING_WHY}; up to {gain:.2f}x if each call pays the whole wait, none if each row does"
    return Proposal(settings, what, "measure (model)", why, Level.BATCH, gain)


def _whole_blocks_measure(facts: Facts, stage: Stage) -> bool:
    batch = stage.knobs.batch_size
    if stage.method != "map_batches" or not batch or stage.knobs.num_gpus:  # Ray requires a GPU stage's batch
        return False
    whole = predict.whole_block(facts, stage.index, batch)
    return whole is not None and whole > batch and predict.call_cost_unknown(facts, stage.index)


def _weighed(facts: Facts, settings: Settings, noise_pct: float) -> tuple[Settings, list[str]]:
    """The joint change less each stage's part whose removal the model of the whole predicts costs no more than
    the noise: a part it cannot weigh (the block knobs, whose split or fusion it does not model) or one the
    others make worthless. A joint change then says what each part brings, and such a part is proposed alone
    from the next run, its gain predicted there (ETL example: a repartition that paid at 64-row batches rode
    along with 2048-row ones, where it measured slower, and no later trial asked whether it was still needed)."""
    parts, left_out = change_parts(settings), list[str]()
    for part in list(parts):
        rest = [p for p in parts if p is not part]
        worth = _config_gain(facts, _merged(parts)) / _config_gain(facts, _merged(rest)) if rest else math.inf
        if not beyond_noise(worth, noise_pct):
            parts, left_out = rest, [*left_out, *part.to_args()]
    return _merged(parts), left_out


def _alone(facts: Facts, settings: Settings) -> str:
    """The model's attribution of a joint change: what each stage's part would gain on its own (the parts of
    stages that limit together gain little alone and much together, which is why they go at once)."""
    parts = change_parts(settings)
    return "alone, " + "; ".join(f"{' '.join(p.to_args())} {_config_gain(facts, p):.2f}x" for p in parts)


def change_parts(settings: Settings) -> list[Settings]:
    """A change split by the stage each part sets, and within a stage its batch size apart from its other knobs
    (the model predicts the two apart: fixed costs per call, slots), in the order given (the context, if any,
    travels with the first): a change of two or more parts is a joint change, whose loss says nothing yet
    about each part."""
    groups = list(dict.fromkeys(_part_of(s) for s in settings.stages))
    parts = [Settings(tuple(s for s in settings.stages if _part_of(s) == g)) for g in groups]
    if parts and settings.context:
        parts[0] = Settings(parts[0].stages, settings.context)
    return parts


def _part_of(setting: StageSetting) -> tuple[str, bool]:
    return setting.selector, setting.knob == "batch_size"


def bisections(facts: Facts, view: View) -> Iterator[Proposal]:
    """For each configuration that lost and differs from the incumbent in several stages (a joint change), the
    halves of that difference (by part, in order): the one the model predicts the larger gain for is tried
    first, so the trial tells which half hurt. Only while neither half has been measured from the incumbent: a
    half that was is the kept incumbent itself or a lost configuration, bisected in its turn."""
    for lost in view.lost_configs:
        parts = change_parts(_difference(lost, view.config) or Settings())
        if len(parts) < 2:
            continue
        middle = len(parts) // 2
        halves = [_merged(parts[:middle]), _merged(parts[middle:])]
        if any(with_settings(view.config, h).key() in view.tried for h in halves):
            continue
        gains = [_config_gain(facts, h) for h in halves]
        for i in (0, 1):
            half, other = halves[i], halves[1 - i]
            what = "half of a joint change that lost: " + ", ".join(half.to_args())
            why = (f"{' '.join(_merged(parts).to_args())} together ran slower; the model predicts this half "
                   f"{gains[i]:.2f}x and the other ({' '.join(other.to_args())}) {gains[1 - i]:.2f}x")  # fmt: skip
            yield Proposal(half, what, "bisect (model)", why, Level.PARALLELISM, gains[i])


def _difference(config: Settings, incumbent: Settings) -> Settings | None:
    """What ``config`` sets that ``incumbent`` does not (or sets otherwise); None where ``config`` leaves out
    something the incumbent sets (the difference would be a return to a value no setting names)."""
    mine, theirs = config.collapsed(), incumbent.collapsed()
    knobs = {(o.selector, o.knob): o.value for o in theirs.stages}
    fields = {c.field: c.value for c in theirs.context}
    if not set(knobs) <= {(o.selector, o.knob) for o in mine.stages}:
        return None
    if not fields.items() <= {(c.field, c.value) for c in mine.context}:
        return None  # a DataContext field the incumbent sets, dropped or set otherwise
    stages = tuple(o for o in mine.stages if knobs.get((o.selector, o.knob), _UNSET) != o.value)
    return Settings(stages, tuple(c for c in mine.context if fields.get(c.field, _UNSET) != c.value))


_UNSET = object()


def _merged(parts: list[Settings]) -> Settings:
    out = Settings()
    for part in parts:
        out = out.merged(part)
    return out


def _config_gain(facts: Facts, settings: Settings) -> float:
    """The model's predicted speed-up of the run with ``settings`` applied to every stage they name."""
    changed = {s.index: settings.knobs_of(s) for s in facts.run.stages if settings.for_stage(s)}
    return predict.config_speedup(facts, changed)


def _from_finding(facts: Facts, f: Finding) -> Proposal | None:
    fix = f.fix
    if fix is None or fix.setting is None:
        return None  # no knob expresses it (e.g. removing a call)
    if fix.knob == "batch_size" and f.stage is not None and _grows(fix):
        floor = fix.proposed if isinstance(fix.proposed, int) else 0  # the guide's matrix: at least its range
        return _batch_move(facts, f.stage, fix.current, f.rule, f.cause, floor)
    if fix.knob == "num_cpus" and f.stage is not None:
        fix = _waiting_cpus(facts, f.stage, fix)
    return Proposal(_settings_of(fix), fix.describe(), f.rule, f.cause, fix.level, _fix_gain(facts, f, fix))


def _guide_oom_moves(facts: Facts, findings: Sequence[Finding]) -> Iterator[Proposal]:
    """Where the doctor's fix for OOM kills is the batch the kills measured as fitting, the guide's own first
    step too (a larger reservation), ranked after it: a memory that is not in the batch's rows (a model each
    task loads) is not cured by fewer rows, and the trial at the smaller batch is what says so."""
    for f in findings:
        if f.rule != "workers-oom" or f.fix is None or f.fix.knob != "batch_size" or f.stage is None:
            continue
        op = facts.operator_of(f.stage)
        fix = guide_oom_fix(facts, facts.run.stage(f.stage), op.num_cpus if op else 1.0)
        if fix.knob != "batch_size":
            why = "the guide's first step against OOM kills: fewer tasks at once"
            yield Proposal(_settings_of(fix), fix.describe(), "workers-oom (guide)", why, fix.level, 1.0)


def _grows(fix: Fix) -> bool:
    """A batch fix that asks for more rows: the model sizes it (a smaller batch, against kills, keeps its value)."""
    return isinstance(fix.current, int) and isinstance(fix.proposed, int) and fix.proposed > fix.current


def _fix_gain(facts: Facts, f: Finding, fix: Fix) -> float:
    """The doctor's predicted gain, or the changed fix's; 1.0 (the trial decides) for a fix for kills or
    crashes, whose retries the rates cannot see."""
    if urgency(f.rule) == 0:
        return 1.0
    return f.gain if fix == f.fix else predict.fix_speedup(facts, fix)


def _settings_of(fix: Fix) -> Settings:
    """A fix that has a ``--set`` form as settings: one DataContext field, or its stage's knobs."""
    if fix.knob.startswith("ctx.") or fix.stage is None:
        return Settings(context=(ContextSetting(fix.knob.removeprefix("ctx."), fix.proposed),))
    settings = _one(fix.stage, fix.knob, fix.proposed)
    for other in fix.also:  # each on its own stage: a pool's size, or the stages fused with this one
        settings = settings.merged(_one(fix.stage if other.stage is None else other.stage, other.knob, other.proposed))
    return settings


def _waiting_cpus(facts: Facts, stage: int, fix: Fix) -> Fix:
    """A stage that mostly waits reserves what its tasks measurably burn (in the guide's I/O steps), so that as
    many run at once as the cores can carry. Not less: every extra slot is a Ray worker to start, and on a small
    machine starting them costs more than the latency they would hide (measured on the HTTP example). Only
    this stage changes: the stages fused with it keep their reservation, so a heavy write does not get a
    worker per slot too (HTTP example, full runs each on its own Ray, two each: the fetch alone at 0.075 took
    25.0 and 24.1 s, fetch, filter and write together at 0.1 took 25.5 and 29.0 s)."""
    rate = facts.rate_of(stage)
    if rate is None or rate.cores_per_task >= WAITING_CORES.value or not _lowers(fix):
        return fix  # a fix that raises the reservation (fewer tasks at once, against OOM kills) keeps its value
    step = NUM_CPUS_IO[0]
    measured = round(max(step, math.ceil(rate.cores_per_task / step) * step), 3)
    return replace(fix, proposed=measured, also=()) if measured < fix.current else fix


def _lowers(fix: Fix) -> bool:
    cur, new = fix.current, fix.proposed
    return isinstance(cur, (int, float)) and isinstance(new, (int, float)) and new < cur


def _back_off(facts: Facts, p: Proposal, view: View) -> Proposal:
    """A num_cpus that lost (slower, or stopped at its time box) is not pushed further: the next try sits
    half-way, in ratio, between the incumbent's value and the one that lost."""
    first = p.settings.stages[0] if p.settings.stages else None
    if first is None or first.knob != "num_cpus" or not isinstance(first.value, float):
        return p
    current = view.run.stage(int(first.selector)).knobs.num_cpus or 1.0
    wanted = first.value
    lost = [x.value for x in view.lost if _same_knob(x, first) and isinstance(x.value, float)]
    beyond = [v for v in lost if (v - current) * (wanted - current) > 0 and abs(wanted - current) >= abs(v - current)]
    if not beyond:
        return p
    nearest = min(beyond, key=lambda v: abs(v - current))
    middle = round(max(NUM_CPUS_IO[0], math.sqrt(current * nearest)), 3)
    moved = tuple(replace(x, value=middle) if _same_knob(x, first) else x for x in p.settings.stages)
    settings = Settings(moved, p.settings.context)  # only that stage's num_cpus moves back
    reason = f"{nearest:g} lost to the incumbent: half-way, in ratio, between {current:g} and {nearest:g}"
    what = f"{p.change.split(' -> ')[0]} -> {show('num_cpus', middle)}"  # the change's own words for "from"
    op = facts.operator_of(int(first.selector))
    gain = predict.run_speedup(facts, op, predict.slots_speedup(facts, op, num_cpus=middle)) if op else 1.0
    return replace(p, settings=settings, change=what, reason=reason, predicted=gain)  # predicted anew


def _batch_moves(facts: Facts) -> Iterator[Proposal]:
    """Every map_batches stage whose batches are so small that fixed per-batch costs weigh."""
    for stage in facts.run.stages:
        batch = stage.knobs.batch_size
        if stage.method == "map_batches" and batch:
            move = _batch_move(facts, stage.index, batch, "batch-size (model)", "")
            if move is not None:
                yield move


def _batch_move(facts: Facts, stage: int, batch: int, rule: str, cause: str, floor: int = 0) -> Proposal | None:
    """The stage's batch at the size the model asks for, at least ``floor`` (the guide's range, from the doctor's
    finding). Until a second batch size is measured, or the run's own calls of several sizes measure the UDF's
    own cost per call (a model's, a service's), the fixed cost is Ray's framing alone: a move the guide's range
    asks for then predicts ``at_least`` its gain (measured: the MiniLM example's 4 -> 16 gained 13% in two
    studies, where its framing predicted 4.6%)."""
    proposed = predict.sized_batch(facts, stage, batch, floor)
    if proposed is None and floor > batch and predict.batch_model(facts, stage, batch) is None:
        return _guide_batch(facts, stage, batch, floor, rule, cause)
    if proposed is None or proposed <= batch:
        return None
    op = facts.operator_of(stage)
    gain = predict.run_speedup(facts, op, predict.batch_speedup(facts, stage, batch, proposed)) if op else 1.0
    if gain < 1.0:
        return None  # the model says larger batches would not pay
    model = predict.batch_model(facts, stage, batch)
    why = cause or (
        f"{model[1] * 1000:.1f} ms fixed per batch ({_fixed_source(facts, stage)}) against "
        f"{model[2] * 1e6:.1f} us per row: fixed costs dominate"
        if model
        else "small batches"
    )
    what = f"stage {stage} {change('batch_size', batch, proposed)}"
    # the guide's range asks, and the UDF's own cost per call is not known: the framing-only gain is a floor
    at_least = floor > batch and not predict.call_cost_measured(facts, stage)
    return Proposal(_one(stage, "batch_size", proposed), what, rule, why, Level.BATCH, gain, at_least)


def guide_batches(fixes: Sequence[Proposal]) -> list[Proposal]:
    """The doctor's batch moves that the guide's range sized because the run gave the model no batch cost for
    their stage (``_guide_batch``), the first for each stage (the doctor's order)."""
    by_stage: dict[str, Proposal] = {}
    for p in fixes:
        if p.guided:
            by_stage.setdefault(p.settings.stages[0].selector, p)
    return list(by_stage.values())


def _guide_batch(facts: Facts, stage: int, batch: int, floor: int, rule: str, cause: str) -> Proposal | None:
    """The guide's batch for a stage whose per-batch cost the run cannot measure (e.g. no task ended and its
    function waits, so no CPU is left outside it to tell Ray's framing by, and its calls were all of one size):
    the model cannot size or weigh it, so the guide's range gives the size, within the caps any batch has
    (``batch_cap``: a task's rows, the guide's memory share), and the gain (1.0, ``at_least``) the trial decides
    (embed benchmark: its 4-row batches of an actor pool were never moved, while the guide's 16 was the oracle's)."""
    size = min(floor, predict.batch_cap(facts, stage, batch))
    if size <= batch:
        return None
    what = f"stage {stage} {change('batch_size', batch, size)}"
    why = f"{cause}; the run cannot measure its cost per batch, so the guide's range sizes it"
    return Proposal(_one(stage, "batch_size", size), what, rule, why, Level.BATCH, 1.0, at_least=True, guided=True)


def _fixed_source(facts: Facts, stage: int) -> str:
    cost, own = facts.batch_costs.get(stage), predict.own_call_cost(facts, stage)
    if cost is not None:
        return "measured at batch sizes " + ", ".join(str(b) for b in cost.batches)
    if own is not None:
        return f"Ray's batch framing and {own * 1000:.1f} ms a call fitted on this run's calls of several sizes"
    return "Ray's batch framing measured on this run, until a second batch size is measured"


def _loop_batch_moves(facts: Facts, bound: Finding | None, allow: frozenset[str]) -> Iterator[Proposal]:
    """A consumer-bound loop's own batch, doubled, where the user allows it (``--allow iterator.batch_size``):
    no pipeline setting can help such a loop, but its own code may take rows faster in larger batches. How
    much, the run cannot say (the user's step is not modelled), so the trial decides; doubling is a search
    step, repeated while the judge keeps the gain. A loop that left its batch to Ray is not touched."""
    if "iterator.batch_size" not in allow:
        return
    stage = facts.run.stage(bound.stage) if bound is not None and bound.stage is not None else None
    batch = stage.knobs.batch_size if stage is not None else None
    if stage is None or not batch:
        return
    what = f"stage {stage.index} {change('batch_size', batch, 2 * batch)}"
    why = "the loop's own code limits (consumer-bound): larger batches may let it take rows faster"
    yield Proposal(_one(stage.index, "batch_size", 2 * batch), what, "loop-batch", why, Level.BATCH, 1.0)


def _pool_moves(facts: Facts) -> Iterator[Proposal]:
    """A limiting actor pool at the size the pool model asks for, in one step."""
    sized = predict.size_pool(facts)
    if sized is None:
        return
    settings = Settings(tuple(StageSetting(str(sized.stage), k, knob(k).value(v)) for k, v in sized.knobs()))
    what = f"stage {sized.stage} {sized.describe()}"
    yield Proposal(settings, what, "balance (model)", sized.why, Level.PARALLELISM, sized.gain)


# -- Ray Data's own defaults: always among the values weighed ----------------------------------------------------

# The knobs whose removal leaves a valid call: num_gpus is the user's choice of device, not a default to weigh.
# ``repartition`` is pipetune's own chained call: Ray Data's default is no such call (the blocks the stage makes).
REMOVABLE = ("num_cpus", "memory", "batch_size", "concurrency", "override_num_blocks", "repartition")


def _removables(facts: Facts) -> list[tuple[Stage, str]]:
    """Every (stage, knob) of the run that Ray Data has a default for (``_removable``)."""
    return [(s, name) for s in facts.run.stages for name in _removable(s)]


def _chained(name: str) -> bool:
    """pipetune's own call chained onto the stage's (``repartition``): only tuning or ``--set`` adds it."""
    return knob(name).where is Where.CHAINED


def _removable(stage: Stage) -> list[str]:
    """The knobs this stage sets that Ray Data has a default for (on a GPU stage Ray requires a batch size),
    less a num_cpus already at Ray's default of 1 (removing it would change nothing)."""
    names = [n for n in REMOVABLE if getattr(stage.knobs, n) is not None]
    if stage.kind is StageKind.CONSUME:  # a loop's batch is the user's choice, not a default to weigh
        names = [n for n in names if n not in ITERATOR_PROTECTED]
    names = [n for n in names if not (n == "num_cpus" and stage.knobs.num_cpus == DEFAULT_NUM_CPUS)]
    return [n for n in names if not (n == "batch_size" and stage.knobs.num_gpus)]


def _default_moves(facts: Facts) -> Iterator[Proposal]:
    """Each knob the run sets, back to Ray Data's default where the model can predict what that does (a
    repartition: the trial says); and every such knob at once, which the model cannot predict (fusion and the
    stages' interplay change), so the trial decides: Ray Data's defaults are a configuration a tuned one must
    never be slower than."""
    removable = _removables(facts)
    for stage, name in removable:
        gain = _default_gain(facts, stage, name)
        if gain is not None:
            what = f"stage {stage.index} {change(name, getattr(stage.knobs, name), None)}"
            how = "measured, not predicted" if _chained(name) else "predicted by the measured rates"
            why = f"Ray Data's own default, {how}"
            yield Proposal(_one(stage.index, name, DEFAULT), what, "ray-default (model)", why, knob_level(name), gain)
    every = ray_defaults(facts)
    if len(removable) > 1 and every is not None:  # one knob alone is the move above
        yield every


def _blocks_fit(facts: Facts, source: Stage, blocks: int) -> bool:
    """Whether ``blocks`` blocks from the read ``source`` keep every stage after it that takes whole blocks as
    its batches (``batch_size`` unset) within the guide's memory share (``memory_cap``): fewer blocks are larger
    ones. Never fewer after tasks were killed for memory: what they held grows with the rows a task takes."""
    now, rate = source.knobs.override_num_blocks, facts.rate_of(source.index)
    if now is None or blocks >= now:
        return True
    if rate is None or facts.run.events_of(EventKind.OOM_KILL):
        return False
    whole = [s for s in facts.run.stages if s.index > source.index and s.method == "map_batches"
             and s.knobs.batch_size is None]  # fmt: skip
    return all(rate.rows / blocks <= predict.memory_cap(facts, s.index) for s in whole)


RAY_DEFAULTS_RULE = "ray-default"  # the rule name of every knob back to Ray Data's default at once


def ray_defaults(facts: Facts) -> Proposal | None:
    """Every knob the run sets (the script's own, and a repartition that tuning added), back to Ray Data's
    default at once (the bench's "defaults" configuration); None when the run sets none. The model cannot
    predict it (fusion and the stages' interplay change), so its predicted gain is 1.0: the trial decides."""
    removable = _removables(facts)
    if not removable:
        return None
    every = Settings(tuple(StageSetting(str(s.index), n, DEFAULT) for s, n in removable))
    what = f"Ray Data's defaults for the {len(removable)} knob(s) set"
    why = "Ray Data's own defaults: measured, not predicted"
    return Proposal(every, what, RAY_DEFAULTS_RULE, why, Level.PARALLELISM, 1.0)


def measurable_defaults(facts: Facts, view: View) -> Proposal | None:
    """Ray Data's defaults (``ray_defaults``) as a trial from this incumbent: never measured, schedulable, not
    known to fail, and not predicted inside the noise.

    Whole-block batches at or above a batch size that failed would fail again, and a tuned configuration cannot
    be slower than settings that fail (a test study: 2 -> 200 rows failed, then the defaults' whole blocks of 200
    spent a run failing too). Where the incumbent sets one knob only, the defaults are that knob's default,
    which the model predicts (``_default_gain``) as it does for the move it weighs: a gain inside the noise is no
    more worth a run here than there (skew benchmark: ``batch_size 4096 -> default``, predicted 1.00x, ran within
    the noise as the study's last run). Several knobs at once the model cannot predict: the trial decides."""
    every = ray_defaults(facts)
    if every is None or not viable(every, view):
        return None
    if any(_fails_at(facts, s, view) is not None for s in every.settings.stages):
        return None
    return every if _measurable(_predicted_alone(facts, every), view) else None


def _predicted_alone(facts: Facts, every: Proposal) -> Proposal:
    """``every`` with the model's prediction where it removes one knob (1.0, "the model cannot say", else)."""
    if len(every.settings.stages) != 1:
        return every
    [setting] = every.settings.stages
    gain = _default_gain(facts, facts.run.stage(int(setting.selector)), setting.knob)
    return every if gain is None else replace(every, predicted=gain)


def knob_level(name: str) -> Level:
    return Level.BATCH if name == "batch_size" else Level.PARALLELISM


def _default_gain(facts: Facts, stage: Stage, name: str) -> float | None:
    """The predicted speed-up of removing ``name`` (Ray Data: 1 CPU per task; whole blocks as batches; a read's
    blocks by its own parallelism rule, ``ray_default_blocks``); 1.0 for
    a repartition, which only tuning or the user's ``--set`` adds: the trial decides whether a split that paid
    when it was kept still pays after the changes that came later (ETL example: a repartition kept at 64-row
    batches rode along with 2048-row ones, and no trial asked)."""
    op = facts.operator_of(stage.index)
    if op is None:
        return None
    if name == "num_cpus":
        return predict.run_speedup(facts, op, predict.slots_speedup(facts, op, num_cpus=DEFAULT_NUM_CPUS))
    if name == "override_num_blocks":
        blocks = ray_default_blocks(facts, stage.index)  # Ray Data's own read parallelism rule
        if blocks in (None, stage.knobs.override_num_blocks) or not _blocks_fit(facts, stage, blocks):
            return None  # unknown, no change, or larger blocks than memory allows
        return predict.block_count_speedup(facts, stage.index, blocks)
    if _chained(name):
        return 1.0  # not predicted (the model does not weigh a split beside the changes made after it): measured
    batch = stage.knobs.batch_size
    if name == "batch_size" and batch:
        whole = predict.whole_block(facts, stage.index, batch)  # a whole block per batch, as Ray Data's None does
        if whole is None:
            return None  # a whole block would not fit the guide's memory share
        return predict.run_speedup(facts, op, predict.batch_speedup(facts, stage.index, batch, whole))
    return None
