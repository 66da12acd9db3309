"""The HTML report and the dashboard in a real headless Chromium: content, escaping, no console errors."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PIPELINES, pipetune

pytestmark = [pytest.mark.ray, pytest.mark.browser]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
EVIL = "<script>alert('udf')</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: Any, pandas_study: tuple[Path, Any]) -> Path:
    """A store with a run whose UDF name is markup, a run a loop consumes, and the session's small study."""
    where = tmp_path_factory.mktemp("pages")
    studied, view = pandas_study
    (where / ".pipetune").mkdir()
    source, copy = (sqlite3.connect(d / ".pipetune" / "pipetune.db") for d in (studied, where))
    source.backup(copy)  # a copy of the study's store: these runs join it; the tune tests' store stays as it was
    source.close()
    copy.close()
    (where / "study.json").write_text(json.dumps(view))  # the tests pick its runs by id, never by list order
    address = str(ray_cluster.address)
    assert pipetune("run", PIPELINES / "evil_names.py", "--address", address, cwd=where).returncode == 0
    looped = ("run", PIPELINES / "feeds_loop.py", "--address", address, "--", "--rows", "2000", "--epochs", "1")
    assert pipetune(*looped, cwd=where).returncode == 0
    return where


def study_runs(store: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The study's baseline and its one trial, as `tune --json` reported them."""
    baseline, trial = json.loads((store / "study.json").read_text())["trials"]
    assert baseline["role"] == "baseline" and trial["role"] == "trial"
    return baseline, trial


def visit(browser: Any, url: str) -> tuple[Any, list[str]]:
    """Open a page; return it and every console error, page error and dialog it raised."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    response = page.goto(url)
    page.wait_for_load_state("load")
    page.response = response
    return page, problems


def test_run_report_is_one_file_with_charts_tree_and_findings(browser: Any, store: Path) -> None:
    out = store / "run.html"
    runs = json.loads(pipetune("runs", "--json", cwd=store).stdout)
    evil = next(r["id"] for r in runs if "evil" in r["script"])
    assert pipetune("report", evil, "-o", out, cwd=store).returncode == 0
    page, problems = visit(browser, out.as_uri())
    assert problems == []
    assert page.title().startswith("pipetune run")
    assert EVIL in page.inner_text("#tree") and EVIL in page.inner_text("#stages")  # shown as text
    assert page.locator("#chart-throughput .main-svg").count() >= 1
    assert page.locator(".chart").count() >= 4
    assert "rows/s" in page.inner_text("#chart-throughput")
    assert page.locator("#operators tr").count() >= 2
    html = out.read_text()
    assert "<script src=" not in html and "<link " not in html  # nothing to fetch: it opens offline


def test_study_report_shows_the_trials(browser: Any, store: Path) -> None:
    study = subprocess.run([sys.executable, "-m", "pipetune", "studies"], cwd=store, capture_output=True, text=True)
    study_id = study.stdout.split()[0]
    out = store / "study.html"
    assert pipetune("report", study_id, "-o", out, cwd=store).returncode == 0
    page, problems = visit(browser, out.as_uri())
    assert problems == []
    rows = page.locator("#trials tr")
    assert rows.count() == 3  # header, baseline, one trial
    assert "baseline" in page.inner_text("#trials") and page.locator("#chart-trials .main-svg").count() >= 1


@pytest.fixture(scope="module")
def dashboard(store: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "pipetune", "ui", "--port", str(port)], cwd=store)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer at {url}")


def test_dashboard_pages(browser: Any, dashboard: str, store: Path) -> None:
    page, problems = visit(browser, dashboard + "/")
    assert problems == [] and page.locator("#runs tr").count() >= 3 and page.locator("#studies tr").count() == 2
    runs = json.loads(pipetune("runs", "--json", cwd=store).stdout)
    evil = next(r["id"] for r in runs if "evil" in r["script"])
    page, problems = visit(browser, f"{dashboard}/runs/{evil}")
    assert problems == [] and EVIL in page.inner_text("#tree")
    assert page.locator(".chart .main-svg").count() >= 3 and "no warning" in page.inner_text("#events")
    baseline, trial = study_runs(store)
    page, problems = visit(browser, f"{dashboard}/compare?a={baseline['run_id']}&b={trial['run_id']}")
    knob = trial["settings"][0].split("=")[0].split(".")[-1]  # what the trial changed, e.g. batch_size
    assert problems == [] and knob in page.inner_text("#deltas")
    study = page.goto(dashboard + "/")
    assert study is not None
    link = page.locator("#studies a").first.get_attribute("href")
    page, problems = visit(browser, dashboard + str(link))
    assert problems == [] and page.locator("#trials tr").count() == 3


def test_the_dashboard_shows_a_loops_iteration_section(browser: Any, dashboard: str, store: Path) -> None:
    runs = json.loads(pipetune("runs", "--json", cwd=store).stdout)
    looped = next(r["id"] for r in runs if "feeds_loop" in r["script"])
    page, problems = visit(browser, f"{dashboard}/runs/{looped}")
    assert problems == [] and "iter_batches" in page.inner_text("#consumers")
    assert page.locator("#chart-iter-blocked .main-svg").count() >= 1  # blocked time over time, per loop


def test_unknown_ids_and_paths_are_404_pages_and_nothing_else_is_served(dashboard: str) -> None:
    for path in ("/runs/nope", "/studies/nope", "/etc/passwd", "/runs/..%2F..%2Fetc%2Fpasswd", "/assets/x.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(dashboard + path, timeout=5)
        assert err.value.code == 404
        assert "Traceback" not in err.value.read().decode()


def test_trace_is_valid_chrome_trace_json(store: Path) -> None:
    out = store / "trace.json"
    baseline, _ = study_runs(store)  # its tasks ran (a trial stopped at its box may have finished none)
    assert pipetune("trace", baseline["run_id"], "-o", out, cwd=store).returncode == 0
    events = json.loads(out.read_text())["traceEvents"]
    phases = {e["ph"] for e in events}
    assert {"M", "X", "C"} <= phases
    assert all(isinstance(e["ts"], (int, float)) for e in events if e["ph"] != "M")
    assert all(e["dur"] > 0 for e in events if e["ph"] == "X")
