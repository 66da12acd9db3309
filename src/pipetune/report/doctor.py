"""The doctor's findings and verifications, for the terminal and for ``--json``."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipetune._serde import to_plain
from pipetune.diagnose import Diagnosis, Finding, Verification


def diagnosis_view(d: Diagnosis) -> dict[str, Any]:
    return {
        "run": d.run_id,
        "hardware": d.hardware.value,
        "cpu_pct": d.cpu_pct,
        "gpu_pct": d.gpu_pct,
        "findings": [_finding_view(f) for f in d.findings],
        "stages": to_plain(d.stages),
    }


def _finding_view(f: Finding) -> dict[str, Any]:
    view = dict(to_plain(f))
    fix = f.fix
    view["fix"] = (
        {**to_plain(fix), "text": fix.describe(), "set": fix.setting, "sets": list(fix.settings)} if fix else None
    )
    view["evidence_text"] = [e.describe() for e in f.evidence]
    return view


def diagnosis_text(d: Diagnosis) -> Group:
    parts: list[Text | Table] = [_headline(d)]
    if not d.findings:
        parts.append(Text("no finding: every rule of the guide passed on this run", style="green"))
    for rank, f in enumerate(d.findings, 1):
        parts.append(_finding_text(rank, f))
    parts.append(_stage_table(d))
    return Group(*parts)


def _headline(d: Diagnosis) -> Text:
    cpu = f"{d.cpu_pct:.0f}%" if d.cpu_pct is not None else "-"
    text = Text(f"doctor: run {d.run_id} on a {d.hardware.value}, CPU use {cpu}")
    if d.gpu_pct is not None:
        text.append(f", GPU use {d.gpu_pct:.0f}%")
    text.append(f": {len(d.findings)} finding(s)")
    return text


def _finding_text(rank: int, f: Finding) -> Text:
    where = f" [{f.stage_key}]" if f.stage_key else ""
    text = Text(f"\n{rank}. {f.symptom}{where}\n", style="bold red" if rank == 1 else "bold")
    for e in f.evidence:
        text.append(f"   measured: {e.describe()}\n")
    text.append(f"   cause:    {f.cause}\n")
    if f.fix:
        level = f"level {int(f.fix.level)} ({f.fix.level.name.lower()})"
        level += f", predicted {f.gain:.2f}x" if f.gain != 1.0 else ""
        text.append(f"   fix:      {f.fix.describe()}  [{level}]", style="cyan")
        sets = " ".join(f"--set {s}" for s in f.fix.settings)
        text.append(f"  `{sets}`\n" if sets else "\n", style="cyan")
    text.append(f"   verify:   {f.verify.text}   confidence {f.confidence:.0%}\n")
    return text


def _stage_table(d: Diagnosis) -> Table:
    table = Table(title="stages by the guide's operation types", show_edge=False, pad_edge=False)
    for name in ("#", "stage", "operation type", "num_cpus (matrix)", "batch_size (matrix)", "headroom"):
        table.add_column(name)
    for s in d.stages:
        cpus = f"{s.num_cpus[0]:g}-{s.num_cpus[1]:g}" if s.num_cpus else "-"
        batch = f"{s.batch_size[0]}-{s.batch_size[1]}" if s.batch_size else "-"
        head = f"{s.headroom:.2f}x" if s.headroom is not None else "-"
        table.add_row(str(s.stage), s.key, s.op_type.value, cpus, batch, head)
    return table


def verification_view(v: Verification) -> dict[str, Any]:
    return {
        "before": to_plain(v.before),
        "after": to_plain(v.after),
        "improvement_pct": v.improvement_pct,
        "noise_pct": v.noise_pct,
        "verdict": v.verdict,
        "checks": [
            {
                "rule": c.finding.rule,
                "stage": c.finding.stage_key,
                "criterion": c.finding.verify.text,
                "before": c.before,
                "after": c.after,
                "holds": c.holds,
            }
            for c in v.checks
        ],
    }


def verification_text(v: Verification) -> Text:
    text = Text(
        f"before: median {v.before.median_s:.2f}s of {v.before.runs} run(s) (spread {v.before.spread_pct:.1f}%)\n"
        f"after:  median {v.after.median_s:.2f}s of {v.after.runs} run(s) (spread {v.after.spread_pct:.1f}%)\n"
    )
    style = {"improved": "green", "regressed": "red"}.get(v.verdict, "yellow")
    text.append(f"change: {v.improvement_pct:+.1f}% faster, noise band {v.noise_pct:.1f}%: {v.verdict}\n", style=style)
    for c in v.checks:
        mark = {True: "holds", False: "does not hold", None: "unknown"}[c.holds]
        text.append(
            f"  {c.finding.rule} [{c.finding.stage_key}]: {c.finding.verify.text}: {mark}"
            f" (before {_num(c.before)}, after {_num(c.after)})\n"
        )
    return text


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3g}"
