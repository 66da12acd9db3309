"""A plan as the terminal shows it and as ``plan --json`` prints it: every value with its source."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipetune.plan import Plan

KNOBS = ("num_cpus", "num_gpus", "batch_size", "concurrency")


def plan_summary(plan: Plan, basis: str) -> Group:
    table = Table(box=None, pad_edge=False)
    for name in ("stage", "type", *KNOBS):
        table.add_column(name, justify="left" if name in ("stage", "type") else "right")
    for sp in plan.stages:
        values = [_fmt(sp.settings[k].value) if k in sp.settings else "-" for k in KNOBS]
        table.add_row(sp.stage.key, sp.stage.op_type.value, *values)
    parts: list[Text | Table] = [Text(f"plan for {plan.cluster.describe()}; stages {basis}", "bold"), table]
    for sp in plan.stages:
        for knob, value in sp.settings.items():
            parts.append(Text(f"  {sp.stage.key} {knob}={_fmt(value.value)}: {value.source}"))
        parts += [Text(f"  {sp.stage.key}: {note}", "yellow") for note in sp.notes]
    p = plan.prediction
    if p is not None:
        parts.append(Text(f"predicted: {p.rows_per_s:,.0f} rows/s, limited by {p.limiting} ({'; '.join(p.caveats)})"))
    return Group(*parts)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_view(plan: Plan, basis: str) -> dict[str, Any]:
    return {
        "cluster": {"description": plan.cluster.describe(), "cpus": plan.cluster.cpus, "gpus": plan.cluster.gpus},
        "basis": basis,
        "stages": [
            {
                "index": sp.stage.index,
                "key": sp.stage.key,
                "type": sp.stage.op_type.value,
                "settings": {k: {"value": v.value, "source": v.source} for k, v in sp.settings.items()},
                "notes": list(sp.notes),
            }
            for sp in plan.stages
        ],
        "prediction": None
        if plan.prediction is None
        else {
            "rows_per_s": plan.prediction.rows_per_s,
            "limiting": plan.prediction.limiting,
            "per_stage": plan.prediction.per_stage,
            "caveats": list(plan.prediction.caveats),
        },
    }
