"""Per-task spans: folded from the hooks' events, stored with the run, laid out on worker lanes."""

from __future__ import annotations

import dataclasses
import json

from pipetune import capture
from pipetune.capture import OpId, SpanRow, Tasks
from pipetune.model import Run, TaskSpan
from pipetune.record.tasks import TaskLog
from pipetune.report import chrome_trace
from tests.unit.builders import two_stage_run


def test_task_events_become_spans_with_their_node() -> None:
    log = TaskLog(t0=0.0)
    op = object()
    log.register(0, {id(op): "MapBatches_2"})
    log("submitted", 7, op, {})
    log("output", 7, op, {"node": "abcdef0123456789"})
    log("finished", 7, op, {"worker_s": 0.4, "failed": False})
    log("finished", 9, object(), {})  # an operator we were not told about: ignored
    (row,) = log.drain()
    assert (row.op, row.index, row.worker_s, row.node, row.failed) == (OpId(0, "MapBatches", 2), 7, 0.4,
                                                                     "abcdef012345", False)  # fmt: skip
    assert row.finished_t >= row.submitted_t and log.drain() == []


def test_stored_spans_fold_back_into_the_run() -> None:
    stored = '{"spans": [["0/M_1", 1, 0.5, 1.5, 0.9, "n1", false], ["0/M_1", 2, 0.6, 2.0, null, "n1", true]]}'
    part = capture.decode_part("tasks", stored)  # as stored before the kind went into the payload
    assert part == Tasks((SpanRow(OpId(0, "M", 1), 1, 0.5, 1.5, 0.9, "n1"), SpanRow(OpId(0, "M", 1), 2, 0.6, 2.0,
                                                                                        None, "n1", True)))  # fmt: skip
    run = capture.build(Run("r", "p.py"), [part])
    assert run.tasks[1] == TaskSpan("0/M_1", 2, 0.6, 2.0, None, "n1", True)
    assert Run.from_json(run.to_json()).tasks == run.tasks


def test_trace_puts_each_task_on_a_free_slot_of_its_node() -> None:
    spans = (
        TaskSpan("0/MapBatches(work)_2", 0, 1.0, 3.0, node="n1"),
        TaskSpan("0/MapBatches(work)_2", 1, 1.5, 2.5, node="n1"),  # overlaps: a second slot
        TaskSpan("0/MapBatches(work)_2", 2, 3.5, 4.0, node="n1"),  # after both: back on slot 0
    )
    run = dataclasses.replace(two_stage_run(), tasks=spans)
    events = json.loads(json.dumps(chrome_trace(run)))["traceEvents"]
    tasks = [e for e in events if e["ph"] == "X"]
    assert [(e["args"]["task"], e["tid"]) for e in tasks] == [(0, 0), (1, 1), (2, 0)]
    assert tasks[0]["ts"] == 1.0e6 and tasks[0]["dur"] == 2.0e6
    assert any(e["ph"] == "C" for e in events)
