"""The guide's production checklist for a recorded run: the code's items from lint, the rest from the run.

Each item is passed, failed or unknown, with the evidence. Pure over the run and the script's source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pipetune.diagnose import Facts, as_run, rooms
from pipetune.lint.engine import lint_source
from pipetune.lint.findings import LintFinding
from pipetune.model import Run, StageKind


class State(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Item:
    name: str
    state: State
    evidence: str


def checklist(run: Run, source: str | None) -> list[Item]:
    found = lint_source(source, _gpus(run)) if source is not None else None
    return [
        _from_lint("column pruning (columns= on reads)", found, "PT001"),
        _from_lint("early filtering (right after the read)", found, "PT002"),
        _from_lint("class-based actors for stateful work", found, "PT003"),
        _num_cpus(run),
        _batch_tested(run),
        _concurrency(run),
        _from_lint("error handling (max_errored_blocks)", found, "PT008"),
        Item("monitoring configured", State.PASSED, f"run {run.id} was recorded by pipetune, per operator and node"),
        _full_data(run),
    ]


def _gpus(run: Run) -> int | None:
    gpus = run.env.cluster_resources.get("GPU")
    return int(gpus) if gpus else None


def _from_lint(name: str, found: list[LintFinding] | None, rule: str) -> Item:
    if found is None:
        return Item(name, State.UNKNOWN, "the script's source is not available")
    hits = [f for f in found if f.rule == rule]
    if not hits:
        return Item(name, State.PASSED, f"lint {rule}: nothing found")
    return Item(name, State.FAILED, f"lint {rule} at line(s) {', '.join(str(f.line) for f in hits)}: {hits[0].message}")


def _udf_stages(run: Run) -> list[str]:
    return [s.key for s in run.stages if s.kind in (StageKind.TRANSFORM, StageKind.FILTER, StageKind.ACTOR)]


def _num_cpus(run: Run) -> Item:
    name = "num_cpus set for every stage"
    unset = [s.key for s in run.stages if s.key in _udf_stages(run) and s.knobs.num_cpus is None]
    if unset:
        return Item(name, State.FAILED, f"no num_cpus on {', '.join(unset)} (Ray's default of 1 CPU applies)")
    return Item(name, State.PASSED, f"set on all {len(_udf_stages(run))} transform stages")


def _batch_tested(run: Run) -> Item:
    name = "batch_size tested with production data"
    batched = [s for s in run.stages if s.method == "map_batches"]
    if not batched:
        return Item(name, State.PASSED, "no map_batches stage")
    unset = [s.key for s in batched if s.knobs.batch_size is None]
    if unset:
        return Item(name, State.FAILED, f"no batch_size on {', '.join(unset)}")
    if not run.status.ok:
        return Item(name, State.UNKNOWN, f"the run {run.status.value}: the batch sizes were not seen to work")
    sizes = ", ".join(f"{s.key}={s.knobs.batch_size}" for s in batched)
    return Item(name, State.PASSED, f"{sizes} ran over {run.rows:,} rows without failure")


def _concurrency(run: Run) -> Item:
    name = "concurrency matches resources"
    facts = Facts.of(run)
    pools = [s for s in run.stages if s.kind is StageKind.ACTOR]
    if not pools:
        return Item(name, State.PASSED, "no actor pool")
    problems = []
    for s in pools:
        size = s.knobs.concurrency if isinstance(s.knobs.concurrency, int) else None
        per_gpu = s.knobs.num_gpus or 0.0
        if per_gpu and size is not None and facts.gpus and size != int(facts.gpus / per_gpu):
            problems.append(f"{s.key}: {size} actors x {per_gpu:g} GPU on {facts.gpus:g} GPUs")
    held = as_run(run)
    why = held.why_not(rooms(run)) if facts.cpus else None
    if why:
        problems.append(why)
    if problems:
        return Item(name, State.FAILED, "; ".join(problems))
    return Item(name, State.PASSED, f"{len(pools)} pool(s) fit the cluster's {facts.cpus:g} CPUs / {facts.gpus:g} GPUs")


def _full_data(run: Run) -> Item:
    name = "full data testing"
    limited = [s.key for s in run.stages if s.method in ("limit", "take", "take_batch")]
    if limited:
        return Item(name, State.FAILED, f"the run read a slice: {', '.join(limited)}")
    if not run.status.ok:
        return Item(name, State.UNKNOWN, f"the run {run.status.value}")
    return Item(name, State.PASSED, f"the run processed {run.rows:,} rows end to end with no limit()")
