"""Every failure path the README promises, on real Ray: one line, a non-zero exit, and nothing stored is lost.

No test here depends on how fast anything runs: each waits for a state it can see (a row in the store, a
process gone), within a generous bound, and asserts what was stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pipetune.errors import PipetuneError
from pipetune.model import RunStatus
from pipetune.store import SCHEMA_VERSION, open_store
from tests.conftest import PIPELINES, last_line, pipetune, sigint_as_a_terminal_gives_it

RAY_NOISE = ("Traceback", "Exception occurred in Ray Data or Ray Core internal code", "open an issue")


def every_run_reads(store: Path) -> list[RunStatus]:
    """Load every stored run and study in full: the store is intact."""
    opened = open_store(store, readonly=True)
    statuses = [opened.load(r.id).status for r in opened.runs()]
    for study_id, _, _ in opened.studies():
        opened.load_study(study_id)
    return statuses


def refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with ``code`` and said so in one pipetune line, with no traceback before it."""
    line = last_line(result.stderr)
    assert result.returncode == code, result.stderr[-3000:]
    assert line.startswith("pipetune: ") and all(w in line for w in words), line
    assert not [n for n in RAY_NOISE if n in result.stderr], result.stderr[-3000:]
    return line


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (PipetuneError, sqlite3.Error):  # the store is being created by the other process
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what}: not seen within {timeout:g} s")


def _user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def start(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    """The real command line in its own session, as a terminal would run it (Ctrl-C reaches its group)."""
    cmd = [sys.executable, "-m", "pipetune", *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=_user_env(), start_new_session=True, text=True,
                            preexec_fn=sigint_as_a_terminal_gives_it,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> None:
    """Whatever the test found: nothing it started outlives it (the session's shared cluster stays free)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)


def family(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The command and every process it started (its Ray: gcs, raylet, workers), by pid."""
    me = psutil.Process(proc.pid)
    return [me, *me.children(recursive=True)]


def gone(processes: list[psutil.Process]) -> bool:
    """Each of these pids has exited (a pid reused by a newer process does not count as the same one)."""
    return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


# -- refusals: one line, no Ray traceback ---------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("nosuch.num_cpus=1", ("no stage 'nosuch'", "valid stages are 0 (0:range)", "3 (3:map_batches:Scale)")),
        ("1.num_gpus=1", ("asks for num_gpus=1", "the cluster has no GPU")),
        ("0.batch_size=8", ("has no knob 'batch_size'",)),
    ],
)
def test_a_refused_override_is_one_line_with_nothing_from_ray(tmp_path: Path, address: str, setting: str,
                                                              words: tuple[str, ...]) -> None:  # fmt: skip
    result = pipetune("run", PIPELINES / "small.py", "--address", address, "--set", setting, cwd=tmp_path)
    refused(result, 2, *words)
    assert not (tmp_path / "out").exists()  # refused before the pipeline wrote anything
    assert every_run_reads(tmp_path / ".pipetune" / "pipetune.db") == [RunStatus.FAILED]


def test_a_foreign_sqlite_file_an_unwritable_path_and_a_newer_store(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
    before = foreign.read_bytes()
    refused(pipetune("runs", "--store", foreign, cwd=tmp_path), 2, "not a pipetune store")
    assert foreign.read_bytes() == before
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    refused(pipetune("run", PIPELINES / "small.py", "--store", blocker / "s.db", cwd=tmp_path), 2, "--store")
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()  # the last connection: the change is in the file itself, not in a write-ahead log
    before = newer.read_bytes()
    for args in (("runs",), ("run", PIPELINES / "small.py")):
        refused(pipetune(*args, "--store", newer, cwd=tmp_path), 2, "newer pipetune")
    assert newer.read_bytes() == before


# -- Ctrl-C ---------------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_ctrl_c_during_run_stores_it_interrupted_and_leaves_no_ray_process_behind(tmp_path: Path) -> None:
    """Its own local Ray (no --address): every process of that Ray is gone afterwards, checked by pid."""
    proc = start("run", PIPELINES / "hangs.py", cwd=tmp_path)
    store = tmp_path / ".pipetune" / "pipetune.db"
    try:
        wait_for("an execution", lambda: store.exists() and bool(open_store(store).load("last").op_samples))
        started = family(proc)
        assert any("raylet" in " ".join(p.cmdline()) for p in started)  # its own Ray is among them
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 130 and "interrupted" in last_line(err)
    wait_for("every process of the run's Ray to exit", lambda: gone(started), timeout=60)
    run = open_store(store).load("last")
    assert run.status is RunStatus.INTERRUPTED and run.stages and run.executions and run.op_samples
    assert every_run_reads(store) == [RunStatus.INTERRUPTED]


def _study_events(db: Path, kind: str) -> list[dict[str, object]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM study_events WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


def _trial_running(db: Path) -> str | None:
    """The run id of a non-baseline trial that has started and sent its first samples."""
    for event in _study_events(db, "trial-started"):
        if event["role"] == "trial":
            run_id = str(event["run_id"])
            with sqlite3.connect(db) as conn:
                samples = conn.execute("SELECT count(*) FROM parts WHERE run_id = ? AND kind = 'op_samples'",
                                       (run_id,)).fetchone()[0]  # fmt: skip
            if samples:
                return run_id
    return None


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_ctrl_c_during_tune_keeps_the_trial_interrupted_and_the_study_resumable(tmp_path: Path) -> None:
    script = PIPELINES / "busy_rows.py"  # seconds of work in any settings: the trial is still running when cut
    proc = start("tune", script, "--budget", "1", "--no-warmup", "--json", "--", "1000", cwd=tmp_path)
    db = tmp_path / ".pipetune" / "pipetune.db"
    try:
        wait_for("a trial under way", lambda: _trial_running(db) is not None, timeout=240)
        cut = _trial_running(db)
        started = family(proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        stop(proc)
    assert proc.returncode == 130 and "--resume" in last_line(err)
    wait_for("every process of the study's Ray to exit", lambda: gone(started), timeout=60)
    store = open_store(db)
    assert store.load(str(cut)).status is RunStatus.INTERRUPTED
    assert [t["role"] for t in _study_events(db, "trial")] == ["baseline"]  # the cut trial is not concluded
    statuses = set(every_run_reads(db))  # the baseline in full, or stopped as a probe (measured), and the cut trial
    measured = {RunStatus.SUCCEEDED, RunStatus.STOPPED, RunStatus.INTERRUPTED}
    assert RunStatus.INTERRUPTED in statuses and statuses <= measured


# -- kill -9 and --resume ------------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_kill_9_mid_trial_then_resume_runs_that_trial_again_and_redoes_nothing(tmp_path: Path, address: str) -> None:
    """On the session's Ray: the study's driver dies with it (its parent-death signal), and Ray ends that job's
    workers, as for any driver killed while attached to a cluster."""
    script = PIPELINES / "busy_rows.py"  # seconds of work in any settings: the trial is still running when killed
    proc = start("tune", script, "--budget", "1", "--no-warmup", "--address", address, "--", "1000", cwd=tmp_path)
    db = tmp_path / ".pipetune" / "pipetune.db"
    try:
        wait_for("a trial under way", lambda: _trial_running(db) is not None, timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    [cut] = [e for e in _study_events(db, "trial-started") if e["run_id"] == _trial_running(db)]
    finished_before = _study_events(db, "trial")
    assert [t["role"] for t in finished_before] == ["baseline"]
    with sqlite3.connect(db) as conn:
        (study_id,) = conn.execute("SELECT id FROM studies").fetchone()
    done = pipetune("tune", "--resume", study_id, "--no-warmup", "--address", address, "--json", cwd=tmp_path,
                    timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    view = json.loads(done.stdout)
    trials = [t for t in view["trials"] if t["role"] != "warm-up"]
    assert trials[0]["run_id"] == finished_before[0]["run_id"]  # the baseline was not run again
    assert [t for t in trials if t["role"] == "baseline"] == trials[:1]
    again = trials[1]
    assert again["role"] == "trial" and again["config"] == cut["config"]  # the trial cut by the kill ran again
    assert again["settings"] == cut["settings"] and again["run_id"] != cut["run_id"]
    # measured and judged: in full, as a probe, or stopped at its time box (with --no-warmup its first run pays
    # for the new job's workers, which can put it past the baseline's time and noise)
    assert again["status"] == "succeeded" or again["probe"] or again["verdict"] == "reverted: stopped at its time box"
    assert open_store(db).load(str(cut["run_id"])).status is RunStatus.KILLED  # closed, kept, not reused
    considered = {json.dumps(t["config"], sort_keys=True) for t in trials if t["status"] == "succeeded" or t["probe"]}
    assert json.dumps(view["best"], sort_keys=True) in considered  # the best is one of the measured settings
    assert RunStatus.RUNNING not in every_run_reads(db)


# -- the user's outputs ----------------------------------------------------------------------------------------

SIDE_WRITER = """
import json, os, sys
import ray

OUT = os.path.abspath(sys.argv[1])
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "log.txt"), "a") as log:  # plain Python beside the Ray Data write
    log.write("run started\\n")


def scale(batch):
    batch["id"] = batch["id"] * 2
    return batch


ray.data.range(3_000, override_num_blocks=3).map_batches(scale, batch_size=10).write_parquet(OUT + "/parts")
with open(os.path.join(OUT, "_MANIFEST.json"), "w") as f:
    json.dump({"done": True}, f)
"""


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}  # fmt: skip


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_a_whole_study_never_touches_the_real_output_even_with_plain_python_writes(tmp_path: Path,
                                                                                    address: str) -> None:  # fmt: skip
    (tmp_path / "side_writer.py").write_text(SIDE_WRITER)
    out = tmp_path / "real-out"
    first = pipetune("run", "side_writer.py", "--address", address, "--", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]  # a real run writes the real output, as python would
    before = digest(out)
    assert (out / "log.txt").read_text() == "run started\n" and "_MANIFEST.json" in before
    done = pipetune("tune", "side_writer.py", "--budget", "1", "--no-warmup", "--address", address,
                    "--json", "--", str(out), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert digest(out) == before  # not one byte of the real output changed, nor a file added
    assert "never touch your outputs" in done.stderr
    view = json.loads(done.stdout)
    run = open_store(tmp_path / ".pipetune" / "pipetune.db").load(view["trials"][0]["run_id"])
    [note] = [e.message for e in run.events if "pipetune put them back" in e.message]
    assert str(out / "log.txt") in note


# -- several processes on one store ------------------------------------------------------------------------------


@pytest.mark.ray
def test_two_runs_write_one_store_at_once_while_the_dashboard_reads_it(tmp_path: Path, address: str) -> None:
    store = tmp_path / "shared.db"
    open_store(store).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = start("ui", "--store", store, "--port", str(port), cwd=tmp_path)
    small = ("--set", "1.num_cpus=0.25", "--set", "2.num_cpus=0.25", "--set", "3.num_cpus=0.25")  # both fit at once
    runs = [start("run", PIPELINES / "small.py", "--address", address, "--store", store, "--json", *small, "--",
                  "--rows", "2000", "--out", str(tmp_path / f"out{n}"), cwd=tmp_path) for n in range(2)]  # fmt: skip
    pages = 0
    try:
        while any(r.poll() is None for r in runs):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                    assert page.status == 200
                    pages += 1
            except OSError:  # the dashboard is still starting
                pass
            time.sleep(0.2)
        outputs = [r.communicate(timeout=60) for r in runs]
    finally:
        ui.terminate()
        ui.communicate(timeout=30)
    for r, (_, stderr) in zip(runs, outputs, strict=True):
        assert r.returncode == 0, stderr[-3000:]
        assert "locked" not in stderr
    ids = {json.loads(stdout)["id"] for stdout, _ in outputs}
    stored = open_store(store)
    assert {r.id for r in stored.runs()} == ids
    assert all(stored.load(i).rows == 1_000 and stored.load(i).op_samples for i in ids)  # both whole
    assert pages > 0  # the dashboard answered while they wrote
