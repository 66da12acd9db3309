import time
from pathlib import Path

from pipetune.model import EventKind
from pipetune.record.logs import events_since, line_time

KILL = (
    "[{ts},123 I 2741 2741] (raylet) node_manager.cc:3100: Killing 1 worker(s), kill details: (Task: "
    "abc, task name=MapBatches(hog), pid=777, actual memory used=0.98GB)\n"
)
SPILL = "[{ts},500 I 2741 2760] (raylet) local_object_manager.cc:244: :info_message:Spilled {mib} MiB, 50 objects\n"


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def test_line_time_reads_ray_stamps() -> None:
    now = int(time.time())
    assert line_time(f"[{stamp(now)},250 I 1 1] x") == now + 0.25
    assert line_time("no stamp here") is None


def test_oom_kills_and_spills_after_the_run_started(tmp_path: Path) -> None:
    start = time.time() - 5
    log = tmp_path / "raylet.out"
    log.write_text(
        KILL.format(ts=stamp(start - 3600))  # an earlier run on the same cluster: not ours
        + KILL.format(ts=stamp(start + 2))
        + SPILL.format(ts=stamp(start + 3), mib=40)
        + SPILL.format(ts=stamp(start + 4), mib=84)
    )
    events = events_since([str(log), str(tmp_path / "missing.out")], start, start)
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.OOM_KILL, EventKind.SPILL]
    assert "MapBatches(hog)" in events[0].message and 1.0 <= events[0].t <= 3.0
    assert events[1].message.startswith("84 MiB")


def test_each_nodes_running_spill_total_is_added_to_the_others(tmp_path: Path) -> None:
    start = time.time() - 5
    head, worker = tmp_path / "head.out", tmp_path / "worker.out"
    head.write_text(SPILL.format(ts=stamp(start + 1), mib=40) + SPILL.format(ts=stamp(start + 2), mib=84))
    worker.write_text(SPILL.format(ts=stamp(start + 2), mib=16))
    (spill,) = events_since([str(head), str(worker)], start, start)
    assert spill.message.startswith("100 MiB")  # 84 on one node (its running total) + 16 on the other
