"""`pipetune tune` on real pipelines and a real Ray: the loop, the sandbox, persistence and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipetune.record.overrides import from_mapping, parse_config
from tests.conftest import PIPELINES, last_line, pipetune

pytestmark = pytest.mark.ray


def test_tune_keeps_a_faster_setting_writes_it_and_never_touches_the_output(tmp_path: Path, address: str) -> None:
    script = tmp_path / "pandas_batches.py"
    script.write_text((PIPELINES / "pandas_batches.py").read_text())
    done = pipetune("tune", script.name, "--budget", "2", "--no-warmup", "--address", address, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert [t["role"] for t in view["trials"]][:2] == ["baseline", "trial"]
    kept = [t for t in view["trials"] if t["verdict"] == "kept"]
    assert any(t["settings"][0].startswith("1.batch_size=") for t in kept)  # the fix for 3,000 tiny batches
    batch = view["best"]["stages"]["1"]["batch_size"]
    assert batch > 2 and view["speedup"] > 1.2
    assert not (tmp_path / "out").exists()  # every write went to the sandbox
    assert from_mapping(view["best"]) == parse_config(Path(view["config_file"]))  # what --config reads
    assert f"batch_size={batch})" in view["patch"] and "batch_size=2)" in view["patch"]
    assert script.read_text() == (PIPELINES / "pandas_batches.py").read_text()  # no --apply: untouched


def test_apply_writes_the_patch_and_the_api_returns_the_same_result(tmp_path: Path, address: str) -> None:
    import pipetune

    script = tmp_path / "pandas_batches.py"
    script.write_text((PIPELINES / "pandas_batches.py").read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = pipetune.tune(script.name, budget=2, address=address, apply=True, store=str(tmp_path / "s.db"))
    finally:
        os.chdir(cwd)
    assert result.ok and result.speedup and result.speedup > 1.2
    batch = result.best["stages"]["1"]["batch_size"]
    assert f"batch_size={batch}" in script.read_text()
    compile(script.read_text(), str(script), "exec")


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, address: str) -> None:
    script = PIPELINES / "fragile_batches.py"
    done = pipetune("tune", script, "--budget", "3", "--no-warmup", "--address", address, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = json.loads(done.stdout)["trials"]
    assert trials[0]["verdict"] == "baseline"
    failed = [i for i, t in enumerate(trials) if t["verdict"] == "reverted: failed"]
    assert failed, [t["change"] for t in trials]
    limit = int(trials[failed[0]]["settings"][0].split("=")[1])
    later = [t for t in trials[failed[0] + 1 :] if any(".batch_size=" in x for x in t["settings"])]
    assert later and int(later[0]["settings"][0].split("=")[1]) <= limit // 2  # halved below, never retried
    assert later[0]["status"] == "succeeded"


def test_a_study_killed_with_sigkill_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    """Uses pipetune's own local Ray (the default), started and stopped by the study each time."""
    script = PIPELINES / "pandas_batches.py"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "pipetune", "tune", str(script), "--budget", "2", "--no-warmup"]
    tuner = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    db = tmp_path / ".pipetune" / "pipetune.db"
    try:
        baseline_run = _wait_for_trial(db, role="baseline", timeout=180)
        time.sleep(1.5)  # the first trial is under way
    finally:
        os.killpg(tuner.pid, signal.SIGKILL)
        tuner.wait()
    study_id = _study_id(db)
    done = subprocess.run(
        [sys.executable, "-m", "pipetune", "tune", "--resume", study_id[:12], "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    baselines = [t for t in view["trials"] if t["role"] == "baseline"]
    assert [b["run_id"] for b in baselines] == [baseline_run]  # finished trials are not redone
    assert [t for t in view["trials"] if t["role"] == "trial"], view["reason"]  # the cut-off trial ran again
    runs = json.loads(pipetune("runs", "--json", cwd=tmp_path).stdout)
    assert not [r for r in runs if r["status"] == "running"]  # the trial cut off by the kill was closed


def _wait_for_trial(db: Path, role: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT payload FROM study_events WHERE kind = 'trial'").fetchall()
            for (payload,) in rows:
                if json.loads(payload)["role"] == role:
                    return str(json.loads(payload)["run_id"])
        time.sleep(0.5)
    raise AssertionError(f"no {role} trial stored within {timeout} s")


def _study_id(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT id FROM studies").fetchone()[0])


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    missing = pipetune("tune", "nope.py", cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in last_line(missing.stderr)
    budget = pipetune("tune", PIPELINES / "small.py", "--budget", "0", cwd=tmp_path)
    assert budget.returncode == 2 and "--budget" in last_line(budget.stderr)
    duration = pipetune("tune", PIPELINES / "small.py", "--time", "soon", cwd=tmp_path)
    assert duration.returncode == 2 and "duration" in last_line(duration.stderr)
    unknown = pipetune("tune", "--resume", "s2099", cwd=tmp_path)
    assert unknown.returncode != 0 and "no study" in last_line(unknown.stderr)
