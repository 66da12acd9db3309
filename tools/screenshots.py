"""Screenshots of every page pipetune shows, for a person to look at: `make screenshots` -> screenshots/.

Uses the store in the current directory; when it holds no study yet, it first tunes the bundled ETL example
(which records runs too). Then: the HTML report of the last run and of the last study, each dashboard page
(runs, a run, a study, a comparison) in headless Chromium, and the live terminal view captured from tmux
halfway through a run.

    .venv/bin/python tools/screenshots.py [--out screenshots]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def pipetune(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipetune", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"pipetune {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def ensure_data() -> tuple[str, list[str]]:
    if not pipetune("studies").strip():
        pipetune("tune", "examples/etl_parquet.py", "--budget", "2")
    study = pipetune("studies").split()[0]
    runs = [r["id"] for r in json.loads(pipetune("runs", "--json")) if r["status"] == "succeeded"]
    return study, runs


def shoot(out: Path, study: str, runs: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    pipetune("report", runs[0], "-o", str(out / "report-run.html"))
    pipetune("report", study, "-o", str(out / "report-study.html"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "pipetune", "ui", "--port", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    pages = {
        "report-run": (out / "report-run.html").as_uri(),
        "report-study": (out / "report-study.html").as_uri(),
        "ui-index": f"{base}/",
        "ui-run": f"{base}/runs/{runs[0]}",
        "ui-study": f"{base}/studies/{study}",
        "ui-compare": f"{base}/compare?a={runs[-1]}&b={runs[0]}",
    }
    try:
        _wait(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            for name, url in pages.items():
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.wait_for_timeout(800)  # charts draw after load
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(f"{out / name}.png")
            browser.close()
    finally:
        ui.terminate()


def terminal(out: Path) -> None:
    """The live view in a 140x30 tmux pane, captured while the ETL example runs."""
    if shutil.which("tmux") is None:
        print("tmux is missing: no terminal capture")
        return
    session = f"pipetune-shot-{int(time.time())}"
    command = f"cd {ROOT} && .venv/bin/pipetune run examples/etl_parquet.py; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "30", command], check=True)
    try:
        time.sleep(14)
        shot = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
        (out / "terminal-live.txt").write_text(shot.stdout)
        print(out / "terminal-live.txt")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def _wait(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the dashboard did not answer at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    study, runs = ensure_data()
    shoot(ns.out, study, runs)
    terminal(ns.out)


if __name__ == "__main__":
    main()
