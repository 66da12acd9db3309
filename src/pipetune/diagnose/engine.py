"""Runs every rule over a run and ranks what they find: the first finding is the one fix to try first."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipetune.diagnose import capacity
from pipetune.diagnose.facts import Facts, Hardware, OpType
from pipetune.diagnose.findings import Finding
from pipetune.diagnose.ranking import gain_tier, urgency
from pipetune.diagnose.rules import RULES, Rule
from pipetune.diagnose.rules._common import BATCH_BY_TYPE, NUM_CPUS_BY_TYPE
from pipetune.model import Run


@dataclass(frozen=True)
class StageClass:
    """Where a stage sits in the guide's resource matrix, and what the matrix recommends for it."""

    stage: int
    key: str
    op_type: OpType
    num_cpus: tuple[float, float] | None
    batch_size: tuple[int, int] | None
    headroom: float | None
    row: str  # which row of which table the recommendation comes from


@dataclass(frozen=True)
class Diagnosis:
    run_id: str
    hardware: Hardware
    findings: tuple[Finding, ...]
    stages: tuple[StageClass, ...]
    cpu_pct: float | None
    gpu_pct: float | None


def rank_key(f: Finding) -> tuple[int, int, int, float, float, float]:
    """Crashes and stalls first; then by the fix's predicted gain, in tiers (``ranking``); within a tier the
    guide's hierarchy, the simplest level first (a finding with no fix last); within a level the larger
    predicted gain; then stake and certainty."""
    level = int(f.fix.level) if f.fix else 9
    return (urgency(f.rule), gain_tier(f.gain), level, -f.gain, -f.severity * f.confidence, -f.confidence)


def predicted(facts: Facts, f: Finding) -> Finding:
    """The finding with its fix's predicted gain, from the same capacity model the tuner uses, unless the rule
    measured what its fix saves itself (a mechanism the rates cannot see: the idle slots of uneven tasks)."""
    return replace(f, gain=capacity.fix_speedup(facts, f.fix)) if f.fix and f.gain == 1.0 else f


def diagnose(run: Run, rules: dict[str, Rule] | None = None, facts: Facts | None = None) -> Diagnosis:
    """The run's findings, ranked. ``facts``: the run's, where the caller already built them (``Facts.of(run)``)."""
    facts = facts if facts is not None else Facts.of(run)
    findings = [predicted(facts, f) for rule in (rules or RULES).values() for f in rule(facts)]
    return Diagnosis(
        run_id=run.id,
        hardware=facts.hardware,
        findings=once_per_fix(sorted(findings, key=rank_key)),
        stages=tuple(classify(facts)),
        cpu_pct=facts.cpu_pct,
        gpu_pct=facts.gpu_pct,
    )


def once_per_fix(ranked: list[Finding]) -> tuple[Finding, ...]:
    """The ranked findings, each fix offered once: where two branches of the guide reach the same change (low
    CPU and a slow stage's empty output queue both lower one reservation), the better-ranked finding keeps it."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for f in ranked:
        key = f.fix.settings if f.fix is not None else ()
        if not key or key not in seen:
            out.append(f)
            seen.add(key)
    return tuple(out)


def classify(facts: Facts) -> list[StageClass]:
    out = []
    for stage in facts.run.stages:
        kind = facts.stage_type(stage)
        rate = facts.rate_of(stage.index)
        out.append(
            StageClass(
                stage=stage.index,
                key=stage.key,
                op_type=kind,
                num_cpus=NUM_CPUS_BY_TYPE.get(kind),
                batch_size=BATCH_BY_TYPE.get(kind),
                headroom=rate.headroom if rate else None,
                row=f"guide: resource allocation matrix by operation type, row '{kind.value}' ({facts.hardware.value})",
            )
        )
    return out
