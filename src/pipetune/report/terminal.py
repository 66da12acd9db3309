"""The run summary and the run history as terminal tables (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pipetune.diagnose import Consumption, Facts, consumption
from pipetune.model import Run, RunStatus
from pipetune.report.figures import StageFigures, stage_figures
from pipetune.report.tree import branches, pipeline_tree, tree_lines
from pipetune.store import RunRow

_STATUS_STYLE = {
    RunStatus.SUCCEEDED: "green",
    RunStatus.FAILED: "red",
    RunStatus.KILLED: "red",
    RunStatus.INTERRUPTED: "yellow",
    RunStatus.STOPPED: "yellow",
    RunStatus.RUNNING: "cyan",
}


def run_summary(run: Run) -> Group:
    facts = Facts.of(run)
    figures = stage_figures(run, facts)
    parts: list[Text | Table] = [_headline(run), _stage_table(figures)]
    calls = [f"{f.stage.label} {f.call_fixed_s * 1000:.1f} ms" for f in figures if f.call_fixed_s]
    if calls:
        parts.append(Text("fixed cost a call, fitted on the run's calls of several sizes: " + ", ".join(calls)))
    tree = pipeline_tree(run)
    if branches(tree):  # a straight chain reads from the table; branches and merges need the tree
        parts.append(Text("\n".join(["pipeline:", *tree_lines(tree)])))
    loops = consumption(run)
    if loops:
        parts.append(_loop_table(run, loops))
    bottleneck = facts.bottleneck
    if bottleneck is not None:
        parts.append(Text(f"bottleneck: {bottleneck.rate.name}: {bottleneck.evidence}", style="bold"))
    for event in run.events:
        parts.append(Text(f"{event.kind.value}: {event.message}", style="yellow"))
    if run.error:
        parts.append(Text(f"error: {run.error}", style="red"))
    return Group(*parts)


def _headline(run: Run) -> Text:
    wall = f"{run.wall_s:.1f}s" if run.wall_s is not None else "-"
    text = Text(f"run {run.id}  ")
    text.append(run.status.value, style=_STATUS_STYLE[run.status])
    text.append(f"  {run.script} {' '.join(run.args)}  wall {wall}  rows {run.rows:,}")
    if run.overrides:
        text.append(f"  overrides: {' '.join(run.overrides)}", style="cyan")
    return text


def _stage_table(figures: list[StageFigures]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        table.add_row(*_cells(f), style="bold red" if f.bottleneck else None)
    return table


_COLUMNS = (
    ("#", "right"),
    ("stage", "left"),
    ("kind", "left"),
    ("knobs", "left"),
    ("rows", "right"),
    ("rows/s", "right"),
    ("wall%", "right"),
    ("cpu/task", "right"),
    ("inq", "right"),
    ("task p50/p90", "right"),
    ("headroom", "right"),
)


def _cells(f: StageFigures) -> list[str]:
    s = f.stage
    knobs = (
        " ".join(
            f"{k}={_short(v)}{'*' if k in s.overridden else ''}" for k, v in s.knobs.set().items() if k != "compute"
        )
        or "-"
    )
    if not f.lead:
        share = f"{f.time_share:.0%} of " if f.time_share else ""
        return [str(s.index), s.label, s.kind.value, knobs, *[""] * 6, f"{share}fused op"]
    mark = " <- bottleneck" if f.bottleneck else ""
    return [
        str(s.index),
        s.label,
        s.kind.value,
        knobs,
        f"{f.rows:,}" + (" (running)" if f.running else ""),
        f"{f.rows_per_s:,.0f}",
        f"{f.wall_share:.0%}",
        f"{f.cpu_util:.2f}",
        f"{f.mean_inqueue:.1f}",
        f"{f.task_p50_s:.2f}/{f.task_p90_s:.2f}s",
        (f"{f.headroom:.2f}x" if f.headroom is not None else "-") + mark,
    ]


def _loop_table(run: Run, loops: list[Consumption]) -> Table:
    """The script's loops: what each took and how much of its time it waited for data."""
    table = Table(show_edge=False, pad_edge=False, title="the script's loops", title_justify="left")
    for name in ("loop", "call", "batches", "rows/s", "blocked", "own s", "first batch s"):
        table.add_column(name, justify="left" if name in ("loop", "call") else "right")
    for c in loops:
        stage = run.stage(c.stage)
        table.add_row(c.label, f"{stage.method} {stage.site}", f"{c.batches:,.0f}", f"{c.rows_per_s:,.0f}",
                      f"{100 * c.blocked_share:.1f}%", f"{c.user_s:.2f}", f"{c.first_wait_s:.2f}")  # fmt: skip
    return table


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "-".join(map(str, value))
    return str(value)


def history(rows: list[RunRow]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name in ("id", "script", "when", "status", "wall", "rows", "bottleneck"):
        table.add_column(name, justify="right" if name in ("wall", "rows") else "left")
    for r in rows:
        table.add_row(
            r.id,
            r.script,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at)),
            Text(r.status.value, style=_STATUS_STYLE[r.status]),
            f"{r.wall_s:.1f}s" if r.wall_s is not None else "-",
            f"{r.rows:,}" if r.rows is not None else "-",
            r.bottleneck or "-",
        )
    return table


def console(width: int | None = None) -> Console:
    """Tables keep their columns in logs and CI, where there is no terminal to measure."""
    probe = Console()
    if width is None and not probe.is_terminal:
        width = 160
    return Console(width=width, highlight=False, soft_wrap=False)
