"""The capture protocol: operator ids, one encoding for every message, and the fold's inverse."""

from __future__ import annotations

import io

import pytest

from pipetune import capture
from pipetune.capture import (
    EnvironmentSeen,
    EventSeen,
    ExecutionEnded,
    ExecutionStarted,
    Materialized,
    NodeSamples,
    OpId,
    OpSamples,
    Outcome,
    SinkRows,
    SpanRow,
    StageBuilt,
    Started,
    Tasks,
)
from pipetune.model import Event, EventKind, Run, RunStatus
from pipetune.record.channel import receive
from tests.unit.builders import stage, two_stage_run

OP = OpId(0, "MapBatches(work)", 2)


def test_operator_ids_read_and_print_as_stored() -> None:
    assert str(OP) == "0/MapBatches(work)_2" and OpId.parse("0/MapBatches(work)_2") == OP
    assert OP.ray_id == "MapBatches(work)_2" and OpId.of(0, "MapBatches(work)_2") == OP
    odd = OpId.parse("3/Unnumbered")  # kept as it was, whatever Ray named it
    assert (odd.execution, odd.name, odd.seq, str(odd)) == (3, "Unnumbered", None, "3/Unnumbered")
    with pytest.raises(AttributeError):
        OP.seq = 3  # type: ignore[misc]


MESSAGES = [
    Started(41, "tested with another Ray"),
    StageBuilt(stage(1, "map_batches", "work", batch_size=64, concurrency=(1, 4))),
    Materialized(0.5, "count", "pipe.py:3", 1),
    EnvironmentSeen(ray_version="2.60.0", cluster_resources={"CPU": 2.0}, raylet_pids={"n1": 7}),
    ExecutionStarted(0, 1.0, "ds", two_stage_run().executions[0].operators),
    OpSamples(2.0, {OP: {"rows_out": 5.0}}),
    NodeSamples(2.0, {"node:n1": {"cpu_pct": 50.0}}),
    Tasks((SpanRow(OP, 3, 1.0, 1.5, None, "n1", True),)),
    ExecutionEnded(0, 3.0, True, two_stage_run().executions[0].stats),
    SinkRows(0, 10),
    EventSeen(Event(2.5, EventKind.STALL, "stuck", 1, "stacks")),
    Outcome(RunStatus.FAILED, 1, "boom", "Traceback ...", "script", 3.2),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: capture.kind_of(m))
def test_every_message_comes_back_as_sent(message: capture.Message) -> None:
    assert capture.decode(capture.encode(message)) == message


def test_a_torn_or_foreign_line_is_dropped_and_the_rest_read() -> None:
    lines = [capture.encode(m) + b"\n" for m in MESSAGES[:2]]
    stream = io.BytesIO(lines[0] + b'{"kind":"op_samples","t":"soon"}\n' + lines[1] + lines[1][:20])
    assert list(receive(stream)) == MESSAGES[:2]


def test_the_fold_and_its_inverse_round_trip_a_run() -> None:
    run = two_stage_run()
    seed = Outcome.of(run).applied_to(Run(run.id, run.script))
    assert capture.build(seed, capture.messages_of(run)) == run


def test_messages_tell_their_time_when_they_have_one() -> None:
    assert [capture.clock(m) for m in MESSAGES[:4]] == [None, None, 0.5, None]
    assert capture.clock(MESSAGES[5]) == 2.0


def test_stop_rules_read_the_typed_messages() -> None:
    from pipetune.tune.loop import _stop_rule
    from pipetune.tune.steps import Step
    from pipetune.tune.study import Role, Spec, Study

    study = Study("s1", Spec("pipe.py"))
    warmed = _stop_rule(Step(Role.WARMUP, {}), study)
    assert warmed is not None
    assert [warmed(m) for m in (OpSamples(9.0, {}), NodeSamples(9.5, {}), SinkRows(0, 5))] == [None] * 3
    assert "warm-up done" in (warmed(ExecutionStarted(0, 10.0)) or "")
    boxed = _stop_rule(Step(Role.TRIAL, {}, time_box_s=5.0), study)
    assert boxed is not None and boxed(Outcome(wall_s=99.0)) is None and boxed(OpSamples(5.0, {})) is None
    assert "time box" in (boxed(OpSamples(5.1, {})) or "")


def test_the_dashboard_shows_a_running_run_from_the_same_messages_as_the_live_view() -> None:
    from pipetune.report.live import LiveState
    from pipetune.ui.views import live_state

    run = two_stage_run()
    live = LiveState()
    for message in capture.messages_of(run):
        live.feed(message)
    shown = live_state(run)
    assert (shown.t, shown.rows, list(shown.stages)) == (live.t, live.rows, list(live.stages))
    assert shown.t == 9.0 and list(shown.stages) == [OpId(0, "ReadFiles", 1), OP]
    assert shown.stages[OP].queued == 4.0
