"""Shared fixtures. Integration tests share ONE local Ray cluster for the whole session (two nodes with
different resources), and drive the real ``pipetune`` command in a child process against it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = Path(__file__).resolve().parent / "pipelines"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Two Ray nodes on this machine: a head with 2 CPUs and a worker with 1 CPU and an ``accel`` resource.
    Started as a tuning study starts its own Ray (``record.shared``): its workers inherit the one socket each
    run's recorder listens on in turn, so they count the rows of running tasks (``record.in_task``)."""
    from ray.cluster_utils import Cluster

    from pipetune.record.remote import ENV_WORKERS_SOCKET

    os.environ[ENV_WORKERS_SOCKET] = str(tmp_path_factory.mktemp("ray") / "events.sock")
    common = {"include_dashboard": False, "object_store_memory": 400 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, **common})
    cluster.add_node(num_cpus=1, resources={"accel": 1}, **common)
    cluster.wait_for_nodes()
    # Cluster() leaves its address where a bare ray.init() finds it; tests that want a fresh local Ray
    # (the default pipetune promises) must not silently join this one.
    from ray._common.utils import reset_ray_address

    reset_ray_address()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def address(ray_cluster: object) -> str:
    return str(ray_cluster.address)  # type: ignore[attr-defined]


def pipetune(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    inherited = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # tests say where Ray is
    full_env = {**inherited, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipetune", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def pandas_study(tmp_path_factory: pytest.TempPathFactory, address_of_session: str) -> tuple[Path, dict[str, object]]:
    """One small study (``tune --budget 1`` on a copy of pandas_batches.py, 400 rows), run once for the session:
    the tune tests assert on what it reported and stored, the page tests render it. Returns its directory (its
    store is ``.pipetune/pipetune.db`` there) and its ``--json`` view."""
    import json

    where = tmp_path_factory.mktemp("study")
    (where / "pandas_batches.py").write_text((PIPELINES / "pandas_batches.py").read_text())
    done = pipetune("tune", "pandas_batches.py", "--budget", "1", "--no-warmup", "--address", address_of_session,
                    "--json", "--", "400", cwd=where)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return where, json.loads(done.stdout)


@pytest.fixture(scope="session")
def address_of_session(ray_cluster: object) -> str:
    return str(ray_cluster.address)  # type: ignore[attr-defined]


def sigint_as_a_terminal_gives_it() -> None:
    """For Popen's preexec_fn: a harness that starts the suite in the background (``cmd &`` in a script) leaves
    SIGINT ignored, and ignored signals are inherited; a Ctrl-C test must see Ctrl-C as a terminal delivers it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.startswith("pipetune:")]
    return lines[-1] if lines else ""


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_repo() -> Iterator[None]:
    """Ray workers run in the cluster's directory, not the driver's: a relative output path in a test
    pipeline lands in the repository. Fail the session if one did."""
    before = {p.name for p in ROOT.iterdir()}
    yield
    leaked = sorted({p.name for p in ROOT.iterdir()} - before - {".pytest_cache", ".pipetune"})
    assert not leaked, f"tests wrote into the repository: {leaked}"
