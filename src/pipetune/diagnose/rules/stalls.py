"""Pipeline stalls: materialising calls mid-pipeline, no progress, intermittent pauses, and a stage
configured so that it blocks the others (an actor pool reserving every CPU).

Guide: all stages stuck -> remove .count(), .show(), .schema() (they materialise the dataset); one stage
stuck -> its errors and stack traces; intermittent -> network, rate limits, retries; scheduling -> a stage
blocking the others. Verified by continuous progress.
"""

from __future__ import annotations

from pipetune.diagnose import thresholds as th
from pipetune.diagnose.capacity import as_run, rooms
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Criterion, Evidence, Finding, Fix, Level
from pipetune.diagnose.progress import in_flight, moved
from pipetune.diagnose.rules._common import finding
from pipetune.model import EventKind, Operator, Run, Stage, at_each_time

_PAUSES = f"pauses of {th.INTERMITTENT_GAP_S.value:g}-{th.STALL_S.value:g} s"


def _continuous() -> Criterion:
    return Criterion(
        "stall_s", "<", th.STALL_S.value, f"continuous progress (no pause of {th.STALL_S.value:g} s or more)"
    )


def check_materialize(facts: Facts) -> list[Finding]:
    run = facts.run
    mid = run.mid_pipeline_materializations()
    return [
        finding(
            facts,
            "materialize-mid-pipeline",
            f"pipeline stall: .{m.method}() at {m.site} materialises the dataset mid-pipeline",
            _last_built(run, m.stages_built),
            [
                Evidence("executions of the pipeline", float(len(run.executions))),
                Evidence("stages built after the call", float(len(run.stages) - m.stages_built)),
            ],
            f".{m.method}() runs everything built so far to completion before the rest can start, and the "
            "final write runs it all again",
            Fix(
                f"remove .{m.method}()",
                m.site,
                "drop the call (or compute it from the final output)",
                Level.PARALLELISM,
            ),
            Criterion("mid_materializations", "==", 0, "continuous progress: no materialising call mid-pipeline"),
            0.9,
        )
        for m in mid
    ]


def _last_built(run: Run, built: int) -> Stage | None:
    return run.stage(built - 1) if built > 0 else None


def progress_gaps(run: Run) -> list[tuple[float, float, str]]:
    """(start, length, operator uid) of each period in which no rows moved while tasks were running."""
    gaps, start, last, stuck = [], None, None, ""
    for t, ops in at_each_time(run.op_samples):
        done, running = moved(ops), in_flight(ops)
        if last is not None and done == last[1] and running:
            start = start if start is not None else last[0]
            stuck = stuck or running[0]
        elif start is not None:
            gaps.append((start, (last[0] if last else t) - start, stuck))
            start, stuck = None, ""
        last = (t, done)
    if start is not None and last is not None:
        gaps.append((start, last[0] - start, stuck))
    return gaps


def longest_stall(run: Run) -> float:
    return max((length for _, length, _ in progress_gaps(run)), default=0.0)


def _task_scale(run: Run) -> float:
    """Progress is seen when tasks finish: a pause shorter than two slow tasks is just task granularity."""
    return th.TASK_GRANULARITY.value * max((s.task_s.p90 for e in run.executions for s in e.stats), default=0.0)


def _stall_limit(run: Run) -> float:
    """The shortest pause that is a stall. Where the recorder's watchdog fired, it already judged the run
    stalled at the threshold the user gave it (``--stall-after``); otherwise ``STALL_S``."""
    if run.events_of(EventKind.STALL):
        return _task_scale(run)
    return max(th.STALL_S.value, _task_scale(run))


def check_stall(facts: Facts) -> list[Finding]:
    limit = _stall_limit(facts.run)
    gaps = [g for g in progress_gaps(facts.run) if g[1] >= limit and g[1] > 0]
    if not gaps:
        return []
    start, length, uid = max(gaps, key=lambda g: g[1])
    op = _op(facts.run, uid)
    stage = facts.run.stage(facts.lead_of(op)) if op and facts.lead_of(op) is not None else None  # type: ignore[arg-type]
    stacks = facts.run.events_of(EventKind.STALL)
    where = f"; its workers were in {stacks[-1].message.split(' in ', 1)[-1]}" if stacks else ""
    errors = facts.run.events_of(EventKind.UDF_ERROR)
    return [
        finding(
            facts,
            "stall",
            "pipeline stall: one stage stuck",
            stage,
            [
                Evidence("longest time without progress", length, " s", th.STALL_S.value, th.STALL_S.source),
                Evidence("stall began at", start, " s"),
                Evidence("UDF errors", float(len(errors))),
            ],
            f"tasks of {op.name if op else 'a stage'} ran but produced nothing{where}",
            None,  # the fix depends on what the stack shows: a lock, a remote call without timeout, a loop
            _continuous(),
            0.6,
        )
    ]


def _op(run: Run, uid: str) -> Operator | None:
    return next((o for _, o in run.operators() if o.uid == uid), None)


def check_intermittent(facts: Facts) -> list[Finding]:
    shortest = max(th.INTERMITTENT_GAP_S.value, _task_scale(facts.run))
    pauses = [g for g in progress_gaps(facts.run) if shortest <= g[1] < max(th.STALL_S.value, shortest)]
    # tasks that failed in a run that still succeeded were retried: the other face of intermittent trouble
    failed = sum(s.tasks_failed for e in facts.run.executions for s in e.stats) if facts.run.status.ok else 0
    if len(pauses) < th.MIN_PAUSES.value and not failed:
        return []
    return [
        finding(
            facts,
            "intermittent-stall",
            "intermittent stalls: progress pauses, then resumes",
            facts.bottleneck_stage(),
            [
                Evidence(_PAUSES, float(len(pauses)), "", th.MIN_PAUSES.value, th.MIN_PAUSES.source),
                Evidence("failed (retried) tasks", float(failed)),
            ],
            "remote calls that wait on the network, a rate limit or retries: check the source's timeouts and "
            "retry settings (DataContext.retried_io_errors, the client's own timeout)",
            None,
            _continuous(),
            0.4,
        )
    ]


def check_crash(facts: Facts) -> list[Finding]:
    """The master tree's "crashing" branch when the cause is the user's code: say where, do not guess a knob."""
    errors = facts.run.events_of(EventKind.UDF_ERROR)
    if facts.run.status.ok or not errors:
        return []
    stage = facts.run.stage(errors[0].stage) if errors[0].stage is not None else None
    return [
        finding(
            facts,
            "crash",
            "crashing: a stage raised",
            stage,
            [Evidence("UDF errors", float(len(errors)))],
            errors[0].message,
            None,
            Criterion("udf_errors", "==", 0, "the run finishes without errors"),
            0.95,
        )
    ]


def check_blocking_pool(facts: Facts) -> list[Finding]:
    """An actor pool whose reservations leave no CPU to the task stages that feed it."""
    out = []
    for _, op in facts.run.operators():
        if op.compute != "actors" or not op.max_concurrency or facts.cpus <= 0:
            continue
        held = as_run(facts.run)
        if held.fits(rooms(facts.run)) or not held.task_cpus:
            continue
        reserved = op.max_concurrency * op.num_cpus
        lead = facts.lead_of(op)
        stage = facts.run.stage(lead) if lead is not None else None
        if stage is None:
            continue
        room = held.left_for_pools(facts.cpus) - (held.pool_cpus - reserved)  # what this pool may hold
        smaller = max(1, int(room // op.num_cpus)) if op.num_cpus else 1
        fix = Fix("concurrency", op.max_concurrency, smaller, Level.PARALLELISM, stage.index)
        out.append(
            finding(
                facts,
                "blocking-actor-pool",
                "scheduling stall: an actor pool reserves every CPU",
                stage,
                [
                    Evidence("CPUs the pool reserves", reserved, "", facts.cpus),
                    Evidence("CPUs in the cluster", facts.cpus),
                ],
                "the upstream tasks that feed the pool cannot be scheduled, so the pool waits for input forever",
                fix if smaller < op.max_concurrency else None,
                _continuous(),
                0.85,
            )
        )
    return out
