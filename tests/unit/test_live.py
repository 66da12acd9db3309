"""The live view's renderings at a fixed width, against golden files (regenerate: PIPETUNE_GOLDEN=write)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console

from pipetune.capture import ExecutionStarted, NodeSamples, OpId, OpSamples
from pipetune.model import Operator
from pipetune.report.live import LiveState, LiveView, plain_line, render

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
LONG = "MapBatches(enrich_orders_with_a_long_name)"
READ, ENRICH, WRITE = OpId(0, "ReadParquet", 1), OpId(0, LONG, 2), OpId(0, "Write", 3)
STARTED = ExecutionStarted(0, 1.0, operators=(
    Operator(str(READ), "ReadParquet", (0,)), Operator(str(ENRICH), LONG, (1, 2)), Operator(str(WRITE), "Write", (3,)),
))  # fmt: skip


def sample(t: float, read: float, enrich: float, write: float, queued: float, pressure: float) -> OpSamples:
    return OpSamples(t, {
        READ: {"rows_out": read, "tasks_running": 0.0 if t > 5 else 2.0, "inqueue_blocks": 0.0},
        ENRICH: {"rows_out": enrich, "tasks_running": 2.0, "inqueue_blocks": queued, "backpressure_s": 0.0},
        # as Ray reports a write: rows_out are its result rows, one per file written; rows_in what it wrote
        WRITE: {"rows_in": write, "rows_out": 2.0, "tasks_running": 1.0, "inqueue_blocks": 0.0,
                "backpressure_s": pressure},
    })  # fmt: skip


def state() -> LiveState:
    s = LiveState()
    s.feed(STARTED)
    s.feed(sample(5.0, 100_000, 40_000, 30_000, 6, 0.0))
    s.feed(sample(6.0, 100_000, 50_000, 38_000, 5, 0.4))
    node = {"cpu_pct": 93.0, "mem_used_bytes": 6.0, "mem_total_bytes": 24.0}
    s.feed(NodeSamples(6.0, {"node:abc": node}))
    return s


def text(renderable: object, width: int = 100) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PIPETUNE_GOLDEN") == "write":
        path.write_text(actual)
    assert actual == path.read_text()


def test_live_view_at_100_columns() -> None:
    check("live_100.txt", text(render(state())))


def test_live_view_with_full_names_and_a_trial_caption() -> None:
    s = state()
    s.caption = "trial 2/3: stage 1 batch_size 64 -> 4096"
    check("live_full_names_120.txt", text(render(s, full_names=True), width=120))


def test_plain_lines_when_the_output_is_not_a_terminal() -> None:
    check("live_plain.txt", plain_line(state()) + "\n")
    out = io.StringIO()
    view = LiveView(stream=out, every_s=0.0)
    with view:
        for message in (STARTED, sample(5.0, 10, 5, 1, 0, 0)):
            view(message)
    assert out.getvalue().startswith("[    5s] 1 rows")


def test_figures_folded_from_the_messages() -> None:
    s = state()
    enrich = s.stages[ENRICH]
    assert enrich.rows_per_s == 10_000 and enrich.queued == 5
    assert s.stages[OpId.parse("0/Write_3")].backpressured
    assert s.bottleneck == ENRICH and str(ENRICH) == "0/MapBatches(enrich_orders_with_a_long_name)_2"
    assert s.remaining_s == (100_000 - 38_000) / 8_000
    assert s.cpu_pct == 93.0 and s.mem_pct == 25.0


def test_an_operator_that_ends_in_a_write_shows_the_rows_it_consumed() -> None:
    line = state().stages[WRITE]
    assert (line.rows, line.rows_per_s) == (38_000, 8_000)  # not the 2 result rows of the files written


def test_two_stages_queued_alike_name_the_most_upstream_as_the_bottleneck() -> None:
    s = LiveState()
    s.feed(STARTED)
    s.feed(OpSamples(5.0, {READ: {"tasks_running": 1.0, "inqueue_blocks": 2.0},
                           ENRICH: {"tasks_running": 1.0, "inqueue_blocks": 2.0}}))  # fmt: skip
    assert s.bottleneck == READ  # and no comparison of two OpIds (they have no order)


def test_a_loop_is_shown_with_its_rate_and_how_much_of_the_last_interval_it_waited() -> None:
    from pipetune.capture import ConsumerSamples

    s = state()
    figures = {"batches": 10.0, "rows": 2_560.0, "blocked_s": 1.0, "user_s": 1.0}
    s.feed(ConsumerSamples(6.0, {"consumer:4/1": figures}))
    s.feed(ConsumerSamples(8.0, {"consumer:4/1": {**figures, "batches": 30.0, "rows": 7_680.0, "blocked_s": 2.5,
                                                  "user_s": 1.5}}))  # fmt: skip
    loop = s.consumers["consumer:4/1"]
    assert (loop.name, loop.batches_per_s, loop.blocked_pct, loop.rows) == ("loop 4/1", 10.0, 75.0, 7_680.0)
    assert "loop 4/1 10.0 batches/s blocked 75%" in plain_line(s)
    assert "blocked 75%" in text(render(s)) and s.t == 8.0
