"""Bad input gets one clear line, a non-zero exit, and loses nothing already stored."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipetune.errors import PipetuneError
from pipetune.model import EventKind, RunStatus
from pipetune.store import open_store
from tests.conftest import PIPELINES, last_line, pipetune, sigint_as_a_terminal_gives_it


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for script in PIPELINES.glob("*.py"):
        shutil.copy(script, tmp_path)
    return tmp_path


def test_missing_script(work: Path) -> None:
    result = pipetune("run", "nope.py", cwd=work, timeout=60)
    assert result.returncode == 1
    assert last_line(result.stderr) == "pipetune: error: script nope.py does not exist: pass the path of a Python file"


def test_a_batch_size_search_that_cannot_climb_is_refused_before_ray(work: Path) -> None:
    result = pipetune("batch-size", "small.py", "--stage", "double", "--start", "64", "--max", "8", cwd=work)
    assert result.returncode == 2
    assert "--max one no smaller than --start" in last_line(result.stderr)


def test_syntax_error_names_the_line(work: Path) -> None:
    (work / "broken.py").write_text("import ray\n\ndef f(:\n    pass\n")
    result = pipetune("run", "broken.py", cwd=work, timeout=60)
    assert result.returncode == 1
    assert "broken.py:3: syntax error" in last_line(result.stderr)


def test_an_address_where_nothing_answers(work: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = pipetune("run", "small.py", "--address", f"127.0.0.1:{port}", cwd=work, timeout=60)
    assert result.returncode == 2 and time.monotonic() - started < 30
    line = last_line(result.stderr)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in line and "ray start --head" in line


def test_ray_that_cannot_start(work: Path) -> None:
    (work / "not_a_dir").write_text("")
    result = pipetune("run", "small.py", cwd=work, env={"RAY_TMPDIR": str(work / "not_a_dir")}, timeout=120)
    assert result.returncode == 1
    assert "Ray could not start or connect" in last_line(result.stderr)
    assert open_store(work / ".pipetune" / "pipetune.db").load("last").status is RunStatus.FAILED


def test_a_corrupt_store_is_refused_and_not_touched(work: Path) -> None:
    store = work / "runs.db"
    store.write_bytes(b"garbage" * 1000)
    for args in (("runs",), ("show", "last"), ("run", "small.py")):
        result = pipetune(*args, "--store", store, cwd=work, timeout=60)
        assert result.returncode == 2
        assert "cannot be used" in last_line(result.stderr) and "move it aside" in last_line(result.stderr)
    assert store.read_bytes() == b"garbage" * 1000


def test_show_an_unknown_run(work: Path) -> None:
    result = pipetune("show", "20990101", cwd=work, timeout=60)
    assert result.returncode == 2 and "no run '20990101'" in last_line(result.stderr)


def test_bad_timeout_and_bad_import(work: Path) -> None:
    assert pipetune("run", "small.py", "--timeout", "0", cwd=work, timeout=60).returncode == 2
    (work / "junk.json").write_text("[1, 2]")
    result = pipetune("import", "junk.json", cwd=work, timeout=60)
    assert result.returncode == 2 and "not a saved pipetune run" in last_line(result.stderr)


@pytest.mark.ray
def test_local_ray_is_started_when_the_script_does_not(work: Path) -> None:
    """No --address, no RAY_ADDRESS: the run gets its own local Ray, as `python script.py` would."""
    result = pipetune("run", "--json", "small.py", "--", "--rows", "2000", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    view = json.loads(result.stdout)
    assert view["status"] == "succeeded" and view["rows"] == 1000
    assert len(view["environment"]["nodes"]) == 1


@pytest.mark.ray
def test_ctrl_c_marks_the_run_interrupted_and_keeps_it(work: Path, address: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipetune", "run", "hangs.py", "--address", address],
        cwd=work,
        env=env,
        preexec_fn=sigint_as_a_terminal_gives_it,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = work / ".pipetune" / "pipetune.db"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _has_executions(store):
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a failed assertion must not leave a hung run holding the shared cluster's CPUs
    assert proc.returncode == 130
    run = open_store(store).load("last")
    assert run.status is RunStatus.INTERRUPTED and run.executions
    assert "interrupted" in err


def _has_executions(store: Path) -> bool:
    try:
        return store.exists() and bool(open_store(store).load("last").executions)
    except PipetuneError:  # the run's row is not there yet
        return False


@pytest.mark.ray
def test_oom_killed_workers_are_found_in_the_sessions_raylet_log(work: Path) -> None:
    """A lowered memory threshold (its own local Ray): the retried task succeeds, the kill is still recorded."""
    import psutil

    mem = psutil.virtual_memory()
    threshold = (mem.total - mem.available + 1.5 * 1024**3) / mem.total
    env = {"RAY_memory_usage_threshold": f"{threshold:.3f}", "RAY_memory_monitor_refresh_ms": "100"}
    result = pipetune("run", "oom.py", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    run = open_store(work / ".pipetune" / "pipetune.db").load("last")
    kills = [e for e in run.events if e.kind is EventKind.OOM_KILL]
    assert kills and "MapBatches(hog)" in kills[0].message
    doctor = pipetune("doctor", "last", "--json", cwd=work)
    assert json.loads(doctor.stdout)["findings"][0]["rule"] == "workers-oom"


@pytest.mark.ray
def test_spilling_under_a_small_object_store_is_found(work: Path) -> None:
    import psutil

    env = {"RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": str(100 * 1024**2 / psutil.virtual_memory().total)}
    result = pipetune("doctor", "--json", "spills.py", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    rules = [f["rule"] for f in json.loads(result.stdout)["findings"]]
    assert "object-store" in rules
