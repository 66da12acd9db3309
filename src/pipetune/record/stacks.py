"""Python stacks of a run's Ray workers, with py-spy, scoped to the run's own Ray session.

Only processes under the session's raylets (whose pids the driver reported) are read, never every
``ray::`` process on the host, which may belong to other clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

_SKIP = (f"{os.sep}site-packages{os.sep}", f"{os.sep}lib{os.sep}python3", "<frozen")


@dataclass(frozen=True)
class WorkerStack:
    pid: int
    title: str  # Ray's process title, e.g. "ray::MapBatches(stuck)" or "ray::MapWorker(...).submit"
    text: str  # every thread's frames, innermost first
    user_frame: str  # the innermost frame of the user's own code, e.g. "stuck (hangs.py:8)"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def busy_workers(raylet_pids: list[int], name_hint: str = "") -> list[psutil.Process]:
    """Ray workers of this session that are running something (not idle); only the hinted ones if any match."""
    found = []
    for pid in raylet_pids:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            continue
        for proc in children:
            title = _title(proc)
            if title.startswith("ray::") and "IDLE" not in title and "StatsActor" not in title:
                found.append(proc)
    matching = [p for p in found if name_hint and name_hint in _title(p)]
    return matching or found


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def dump(proc: psutil.Process) -> WorkerStack | None:
    tool = py_spy()
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, "dump", "--json", "--nonblocking", "--pid", str(proc.pid)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        threads = json.loads(out.stdout) if out.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return None
    return WorkerStack(proc.pid, _title(proc), _text(threads), _user_frame(threads))


def _text(threads: list[dict[str, object]]) -> str:
    lines = []
    for t in threads:
        lines.append(f"thread {t.get('thread_name') or t.get('thread_id')}:")
        for f in t.get("frames", []):  # type: ignore[attr-defined]
            lines.append(f"    {f['name']} ({f['filename']}:{f['line']})")
    return "\n".join(lines)


def _user_frame(threads: list[dict[str, object]]) -> str:
    for t in threads:
        for f in t.get("frames", []):  # type: ignore[attr-defined]
            if not any(part in f["filename"] for part in _SKIP):
                return f"{f['name']} ({f['short_filename']}:{f['line']})"
    return ""
