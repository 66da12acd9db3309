"""Failures Ray Data cannot see, read from the raylet logs of the run's own Ray session.

Ray retries OOM-killed tasks silently and spills without raising, so both only show in ``raylet.out``. Only
the logs of this run's session are read (their paths come from the driver), and only lines written after the
run started, so other sessions and earlier runs on a shared cluster never leak in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipetune.model import Event, EventKind

_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")
_KILL = re.compile(r"Killing (\d+) worker\(s\), kill details: (.*)")
_TASK = re.compile(r"task name=(.+?)(?=, [a-z _]+=|\)\s*$)", re.MULTILINE)
_SPILL = re.compile(r"Spilled (\d+) MiB, (\d+) objects")


def line_time(line: str) -> float | None:
    """Epoch seconds of a Ray log line's ``[YYYY-MM-DD HH:MM:SS,mmm`` prefix (local time)."""
    match = _STAMP.match(line)
    if not match:
        return None
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000


def events_since(paths: Iterable[str], since: float, run_start: float) -> list[Event]:
    """OOM kills and a spilling summary from the given raylet logs, at or after ``since`` (epoch)."""
    events: list[Event] = []
    spilled_mib = 0
    for path in paths:  # one raylet log per node
        node_mib = 0
        for stamp, entry in _entries_since(Path(path), since):
            kill = _KILL.search(entry)
            if kill:
                events.append(_oom_event(stamp - run_start, kill.group(1), entry))
            spill = _SPILL.search(entry)
            if spill:
                node_mib = max(node_mib, int(spill.group(1)))  # a raylet logs its own running total
        spilled_mib += node_mib  # and the nodes' spills add up
    if spilled_mib:
        events.append(Event(0.0, EventKind.SPILL, f"{spilled_mib} MiB spilled from the object store to disk"))
    return events


def _oom_event(t: float, workers: str, entry: str) -> Event:
    """The kill line and its continuation lines, which name each killed task ("Selected to kill: ...")."""
    names = sorted(set(_TASK.findall(entry)))
    own = [n for n in names if ":_" not in n]  # Ray Data's private actors (e.g. _StatsActor) die too
    where = f" running {', '.join(own)}" if own else ""
    message = f"Ray's memory monitor killed {workers} worker(s){where} (out of memory)"
    return Event(max(t, 0.0), EventKind.OOM_KILL, message, detail=entry[:_DETAIL_CHARS])


# chosen: Ray's kill details list every worker it considered (about 250 characters each, after some 600 of
# object-store figures); 20,000 keeps some 75 of them whole, and a list cut short is not measured from
# (``diagnose.task_memory``)
_DETAIL_CHARS = 20_000


def _entries_since(path: Path, since: float) -> Iterator[tuple[float, str]]:
    """Log entries (a stamped line and the unstamped lines after it) written at or after ``since``."""
    try:
        handle = path.open(errors="replace")
    except OSError:
        return
    with handle:
        stamp: float | None = None
        lines: list[str] = []
        for line in handle:
            new = line_time(line)
            if new is not None:
                if stamp is not None and stamp >= since - 1:  # log stamps have ms, our start has µs
                    yield stamp, "".join(lines)
                stamp, lines = new, []
            lines.append(line)
        if stamp is not None and stamp >= since - 1:
            yield stamp, "".join(lines)
