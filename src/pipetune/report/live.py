"""The live view while a pipeline runs: a main line and one line per stage, from the recorder's messages.

``LiveState`` folds capture messages into plain figures (pure, testable at a fixed width); ``LiveView`` shows them:
redrawn in place on a terminal (rich), or as a plain line every few seconds when the output is a file or CI
log. Ray Data's own progress bars are switched off for the run while this view is on: one display at a time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipetune.capture import ConsumerSamples, ExecutionStarted, Message, NodeSamples, OpId, OpSamples, SinkRows
from pipetune.diagnose import blocked_between
from pipetune.metrics import rows_moved

NAME_WIDTH = 28


@dataclass
class StageLine:
    name: str
    rows: float = 0.0
    rows_per_s: float = 0.0
    tasks: float = 0.0
    queued: float = 0.0
    backpressured: bool = False
    finished: bool = False
    _last: tuple[float, float, float] | None = None  # (t, rows moved, backpressure_s) of the previous sample

    def update(self, t: float, values: Mapping[str, float]) -> None:
        rows, pressure = values.get(rows_moved(self.name), 0.0), values.get("backpressure_s", 0.0)
        if self._last is not None and t > self._last[0]:
            self.rows_per_s = max(rows - self._last[1], 0.0) / (t - self._last[0])
            self.backpressured = pressure > self._last[2]
        self._last = (t, rows, pressure)
        self.rows, self.tasks = rows, values.get("tasks_running", 0.0)
        self.queued = values.get("inqueue_blocks", 0.0)


@dataclass
class ConsumerLine:
    """One of the script's loops: what it took, how fast, and how much of the last interval it waited."""

    name: str  # "loop 2" or "loop 2/1" (stage 2, split 1)
    rows: float = 0.0
    batches_per_s: float = 0.0
    blocked_pct: float = 0.0
    _last: tuple[float, Mapping[str, float]] | None = None  # (t, figures) of the previous sample

    def update(self, t: float, values: Mapping[str, float]) -> None:
        if self._last is not None and t > self._last[0]:
            before = self._last[1]
            self.batches_per_s = max(values.get("batches", 0.0) - before.get("batches", 0.0), 0.0) / (t - self._last[0])
            share = blocked_between(before, values)
            self.blocked_pct = 100 * share if share is not None else self.blocked_pct
        self._last = (t, dict(values))
        self.rows = values.get("rows", 0.0)


@dataclass
class LiveState:
    """Everything the view shows, folded from the recorder's messages. Pure."""

    t: float = 0.0
    stages: dict[OpId, StageLine] = field(default_factory=dict)
    consumers: dict[str, ConsumerLine] = field(default_factory=dict)
    sink_rows: float = 0.0
    cpu_pct: float | None = None
    gpu_pct: float | None = None
    mem_pct: float | None = None
    caption: str = ""  # e.g. the current tuning trial's change

    def feed(self, message: Message) -> None:
        """Take one message; the kinds the view does not show are ignored."""
        match message:
            case ExecutionStarted(operators=operators):
                for op in operators:
                    name = f"{op.name} [{','.join(map(str, op.stages))}]"
                    self.stages.setdefault(OpId.parse(op.uid), StageLine(name))
            case OpSamples(t=t, values=values):
                self.t = t
                for uid, figures in values.items():
                    self.stages.setdefault(uid, StageLine(str(uid))).update(t, figures)
            case NodeSamples(values=values):
                self._nodes(values)
            case SinkRows(rows=rows):
                self.sink_rows += rows
            case ConsumerSamples(t=t, values=values):
                self.t = max(self.t, t)
                for source, figures in values.items():
                    name = "loop " + source.removeprefix("consumer:")
                    self.consumers.setdefault(source, ConsumerLine(name)).update(t, figures)

    def _nodes(self, values: Mapping[str, Mapping[str, float]]) -> None:
        cpu = [v["cpu_pct"] for v in values.values() if "cpu_pct" in v]
        gpu = [v["gpu_util_pct"] for v in values.values() if "gpu_util_pct" in v]
        mem = [v["mem_used_bytes"] / v["mem_total_bytes"] * 100 for v in values.values() if v.get("mem_total_bytes")]
        self.cpu_pct = sum(cpu) / len(cpu) if cpu else None
        self.gpu_pct = sum(gpu) / len(gpu) if gpu else None
        self.mem_pct = sum(mem) / len(mem) if mem else None

    @property
    def bottleneck(self) -> OpId | None:
        """The stage the others wait for right now: the most blocks queued at a stage that has tasks running."""
        busy = [(line.queued, uid) for uid, line in self.stages.items() if line.tasks > 0 and line.queued > 0]
        return max(busy, key=lambda b: b[0])[1] if busy else None  # ties: the most upstream (OpIds have no order)

    @property
    def rows(self) -> float:
        last = list(self.stages.values())[-1:] if self.stages else []
        consumed = sum(c.rows for c in self.consumers.values())  # a pipeline the script's loops read
        return max(self.sink_rows, last[0].rows if last else 0.0, consumed)

    @property
    def remaining_s(self) -> float | None:
        """Once the source has read everything, the rows left over the last stage's current rate."""
        lines = list(self.stages.values())
        if len(lines) < 2 or lines[0].tasks > 0 or lines[-1].rows_per_s <= 0:
            return None
        left = lines[0].rows - self.rows
        return left / lines[-1].rows_per_s if left > 0 else None


def render(state: LiveState, full_names: bool = False) -> Group:
    remaining = f"~{state.remaining_s:.0f}s left" if state.remaining_s is not None else "remaining: -"
    use = " ".join(f"{label} {v:.0f}%" for label, v in (("CPU", state.cpu_pct), ("GPU", state.gpu_pct),
                                                          ("mem", state.mem_pct)) if v is not None)  # fmt: skip
    head = Text(f"{state.rows:,.0f} rows  {state.t:.0f}s elapsed  {remaining}  {use}", style="bold")
    table = Table(box=None, pad_edge=False, show_edge=False)
    for name, justify in (("stage", "left"), ("rows", "right"), ("rows/s", "right"), ("tasks", "right"),
                          ("queued", "right"), ("", "left")):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    slow = state.bottleneck
    for uid, line in state.stages.items():
        marks = ("backpressure " if line.backpressured else "") + ("<- bottleneck" if uid == slow else "")
        name = line.name if full_names or len(line.name) <= NAME_WIDTH else line.name[: NAME_WIDTH - 1] + "~"
        table.add_row(name, f"{line.rows:,.0f}", f"{line.rows_per_s:,.0f}", f"{line.tasks:.0f}",
                      f"{line.queued:.0f}", marks)  # fmt: skip
    for loop in state.consumers.values():
        table.add_row(loop.name, f"{loop.rows:,.0f}", "", "", "",
                      f"{loop.batches_per_s:,.1f} batches/s, blocked {loop.blocked_pct:.0f}%")  # fmt: skip
    parts: list[Text | Table] = [Text(state.caption, style="cyan")] if state.caption else []
    return Group(*parts, head, table)


def plain_line(state: LiveState) -> str:
    stages = "; ".join(
        f"{line.name} {line.rows_per_s:,.0f} rows/s q={line.queued:.0f}" for line in state.stages.values()
    )
    loops = "".join(
        f" | {c.name} {c.batches_per_s:,.1f} batches/s blocked {c.blocked_pct:.0f}%" for c in state.consumers.values()
    )
    cpu = f" CPU {state.cpu_pct:.0f}%" if state.cpu_pct is not None else ""
    return f"[{state.t:5.0f}s] {state.rows:,.0f} rows{cpu} | {stages}{loops}"


class LiveView:
    """A recorder listener that shows the live state; use as a context manager around the run."""

    def __init__(self, stream: TextIO | None = None, full_names: bool = False, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.state = LiveState()
        self.full_names = full_names
        self.every_s = every_s
        self._console = Console(file=self.stream)
        self._live: Live | None = None
        self._printed = 0.0

    def __enter__(self) -> LiveView:
        if self._console.is_terminal:
            self._live = Live(render(self.state), console=self._console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(render(self.state, self.full_names))
            self._live.__exit__(None, None, None)

    def __call__(self, message: Message) -> None:
        self.state.feed(message)
        if self._live is not None:
            self._live.update(render(self.state, self.full_names))
        elif isinstance(message, OpSamples) and time.monotonic() - self._printed >= self.every_s:
            self._printed = time.monotonic()
            print(plain_line(self.state), file=self.stream, flush=True)
