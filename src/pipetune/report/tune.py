"""A study as the terminal shows it (trials table, best settings, bound, patch) and as ``--json`` prints it."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pipetune._serde import to_plain
from pipetune.tune import Role, Trial, TuneResult, Verdict, confirmation_line, trial_payload

_VERDICT_STYLE = {Verdict.KEPT: "green", Verdict.BASELINE: "bold", Verdict.FAILED: "red", Verdict.REPEAT: "cyan"}


def study_summary(result: TuneResult) -> Group:
    study = result.study
    head = Text(f"study {study.id}  {study.spec.script}  {study.runs_used} trial run(s) after the baseline", "bold")
    parts: list[Text | Table] = [head, trials_table(result), Text(f"stopped: {result.reason}")]
    parts.append(Text(_best_line(result), style="bold green" if result.speedup and result.speedup > 1 else "bold"))
    if result.bound is not None:
        parts.append(Text(result.bound.describe()))
    if study.confirmed is not None:
        parts.append(Text(confirmation_line(study.confirmed)))
    return Group(*parts)


def trials_table(result: TuneResult) -> Table:
    table = Table(box=None, pad_edge=False)
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    base = result.baseline_s
    for t in result.trials:
        table.add_row(*_cells(t, base), style=_VERDICT_STYLE.get(t.verdict, "dim" if t.role is Role.WARMUP else ""))
    return table


_COLUMNS = (
    ("#", "right"),
    ("run", "left"),
    ("change", "left"),
    ("time s", "right"),
    ("rows/s", "right"),
    ("vs baseline", "right"),
    ("verdict", "left"),
)


def _cells(t: Trial, base: float | None) -> tuple[str, ...]:
    wall = f"{t.seconds:.2f}" if t.seconds else "-"
    if t.probe:
        wall += " (probe)"
    elif t.status not in ("succeeded",):
        wall += f" ({t.status})"
    rate = f"{t.rows_per_s:,.0f}" if t.rows_per_s and t.status == "succeeded" else "-"
    vs = "-"
    if base and t.seconds and t.measured and t.role is not Role.WARMUP:
        vs = f"{(base - t.seconds) / base * 100:+.1f}%"
    change = t.change or ("(starting settings)" if t.role is not Role.WARMUP else "(warm-up, not compared)")
    return (str(t.seq), t.role.value, change, wall, rate, vs, t.verdict.value)


def _best_line(result: TuneResult) -> str:
    settings = " ".join(result.best.to_args()) or "(the script's own settings)"
    if result.speedup is None or result.best_s is None or result.baseline_s is None:
        return f"best: {settings}"
    return (
        f"best: {settings}: {result.best_s:.2f} s vs {result.baseline_s:.2f} s at baseline "
        f"({result.speedup:.2f}x, {(1 - result.best_s / result.baseline_s) * 100:+.1f}% less time)"
    )


def study_view(result: TuneResult, config_path: str | None) -> dict[str, Any]:
    """What ``tune --json`` prints: ``best`` is exactly what ``pipetune run --config`` reads."""
    return {
        "study": result.study.id,
        "script": result.study.spec.script,
        "reason": result.reason,
        "ok": result.ok,
        "trials": [{**trial_payload(t), "rows_per_s": t.rows_per_s} for t in result.trials],
        "best": result.best.to_config(),
        "baseline_s": result.baseline_s,
        "best_s": result.best_s,
        "speedup": result.speedup,
        "bound": _bound_view(result),
        "config_file": config_path,
        "patch": result.patch.diff if result.patch else "",
        "unplaced": list(result.patch.unplaced) if result.patch else [],
        "confirmed": to_plain(result.study.confirmed) if result.study.confirmed else None,
    }


def _bound_view(result: TuneResult) -> dict[str, Any] | None:
    b = result.bound
    if b is None:
        return None
    return {**to_plain(b), "gap_pct": b.gap_pct, "text": b.describe()}
