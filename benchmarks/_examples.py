"""What the benchmarks share: the bundled examples, one local Ray for a whole benchmark, one recorded run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES: dict[str, tuple[str, list[str]]] = {
    "etl": ("examples/etl_parquet.py", []),
    "embed": ("examples/embed_minilm.py", []),
    "http": ("examples/download_http.py", []),
    # A slow-service pool is the shape whose measurements (issue 10) motivated the pool model: not held out.
    "service-pool": ("benchmarks/pipelines/slow_service_pool.py", []),
    # Held out: written after the tuner's changes and never used to choose any of its rules or numbers.
    "etl-6": ("benchmarks/pipelines/etl_six_stage.py", []),
    "skew": ("benchmarks/pipelines/skewed_blocks.py", []),
    "model-pool": ("benchmarks/pipelines/model_pool.py", []),
    # Held out too: memory pressure. Tasks that fit one at a time under a lowered memory limit, not two
    # (faults.py's workers-oom case, run under OWN_RAY_ENV's lowered threshold).
    "memory": ("benchmarks/faults/oom_side_by_side.py", ["--task-gib", "2.2"]),
    # A cluster of two unequal nodes (CLUSTERS), where a reservation must fit a node, not the total. Held out
    # until 2026-12-06; since then its studies motivated the cost-per-call measurement and the pool-gain cap
    # (benchmarks/results/tune_bench_measure_first_2026-12-07.md): no longer held out.
    "two-nodes": ("benchmarks/pipelines/two_nodes.py", []),
    # The http example at 4x its data (a shipped run of over a minute): tuning must cost at most one shipped
    # run there, and must not grow with the data. Its grid is http's (SAME_GRID), measured at 1x.
    "http-4x": ("examples/download_http.py", ["--docs", "2400"]),
    # Held out: small parquet files packed into one read task before heavy per-row work in small batches, the
    # shape where a repartition the tuner adds must survive the batch change after it (written 2026-12-06 to
    # check that change; not used to choose any rule or number).
    "packed": ("benchmarks/pipelines/packed_parquet.py", []),
    # For the probe benchmark only (benchmarks/probes.py): a hundred short tasks at a steady pace.
    "calls": ("benchmarks/pipelines/steady_calls.py", []),
}


SAME_GRID = {"http-4x": "http"}  # an example at another size, searched over (and its TPE replayed on) that grid


BUSY_BEFORE_PCT = 25.0  # chosen: a machine busier than a quarter of its cores before a benchmark skews its times


def idle_check(seconds: float = 2.0) -> str:
    """One line on how busy the machine is before a benchmark times anything: its CPU use over ``seconds``
    and the other processes burning most. Where it is busier than ``BUSY_BEFORE_PCT`` the line says so, on
    stderr too: timings then measure the other load as much as the pipeline (earlier tables ran 2-4x slower
    beside a forgotten scratch cluster)."""
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != os.getpid()]
    for p in procs:
        _cpu(p)
    busy = psutil.cpu_percent(interval=seconds)
    top = sorted(((_cpu(p), p) for p in procs), key=lambda t: -t[0])[:3]
    names = ", ".join(f"{p.info['name']} (pid {p.pid}) {pct:.0f}%" for pct, p in top if pct >= 5) or "none over 5%"
    line = f"machine before the run: CPU {busy:.0f}% busy over {seconds:g} s; busiest others: {names}"
    if busy > BUSY_BEFORE_PCT:
        line = f"NOT IDLE: {line}: these timings are not comparable with an idle machine's"
        print(line, file=sys.stderr, flush=True)
    return line


def _cpu(proc: psutil.Process) -> float:
    try:
        return float(proc.cpu_percent(None))
    except psutil.Error:  # the process ended or is not ours to read
        return 0.0


OOM_HEADROOM_GIB = 4.0  # the memory example's own sizing: one 2.2 GiB task fits under the threshold, two do not


def lowered_memory_threshold() -> dict[str, str]:
    """Ray's memory monitor set to kill above what the machine uses now plus ``OOM_HEADROOM_GIB``."""

    mem = psutil.virtual_memory()
    threshold = (mem.total - mem.available + OOM_HEADROOM_GIB * 1024**3) / mem.total
    return {"RAY_memory_usage_threshold": f"{threshold:.3f}", "RAY_memory_monitor_refresh_ms": "100"}


# Examples that need Ray started their own way: each of their runs (and pipetune's tuning) starts a local Ray of
# its own with this environment, whatever the benchmark shares otherwise.
OWN_RAY_ENV: dict[str, Callable[[], dict[str, str]]] = {"memory": lowered_memory_threshold}


# Examples that run on a cluster of a given shape, one dict of ``ray start`` arguments per node (the head first):
# every run of theirs, pipetune's study included (``--address``), joins one such cluster started for the example,
# as a cluster's user attaches to the cluster there is; the nodes share this machine's cores.
CLUSTERS: dict[str, tuple[dict[str, Any], ...]] = {"two-nodes": ({"num_cpus": 2}, {"num_cpus": 1})}


class SharedRay:
    """One local Ray for every run of a benchmark, so Ray's start-up is paid once and by no variant: one node with
    the machine's CPUs, or the nodes given (``CLUSTERS``). ``as_a_study``: started as a tuning study starts its
    own Ray (``record.shared``), its workers given the socket each run recorded in this process listens on, so
    they count the rows of running tasks; else as a cluster a user attaches to, where they do not."""

    def __init__(self, nodes: tuple[dict[str, Any], ...] | None = None, as_a_study: bool = False) -> None:
        self.nodes = nodes or ({"num_cpus": os.cpu_count()},)
        self.as_a_study = as_a_study

    def __enter__(self) -> SharedRay:
        from ray.cluster_utils import Cluster

        from pipetune.record import local_object_store
        from pipetune.record.remote import ENV_WORKERS_SOCKET

        if self.as_a_study:
            self.socket_dir = tempfile.mkdtemp(prefix="pipetune-bench-ray-")
            os.environ[ENV_WORKERS_SOCKET] = os.path.join(self.socket_dir, "events.sock")

        store = local_object_store()  # what a user's own Ray gets here, not the helper's 150 MiB
        head, *others = self.nodes
        self.cluster = Cluster(initialize_head=True, head_node_args={**store, **head, "include_dashboard": False})
        for node in others:
            self.cluster.add_node(**store, **node)
        self.cluster.wait_for_nodes()
        from ray._common.utils import reset_ray_address

        reset_ray_address()  # Cluster() leaves its address where any bare ray.init() on this host would join it
        os.environ.pop("RAY_ADDRESS", None)
        self.env = {**os.environ, "RAY_ADDRESS": self.cluster.address, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.cluster.shutdown()
        if self.as_a_study:
            from pipetune.record.remote import ENV_WORKERS_SOCKET

            os.environ.pop(ENV_WORKERS_SOCKET, None)
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def own_ray_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run that starts its own local Ray, as ``python script.py`` does for a user, with
    ``extra`` settings for that Ray (a lowered memory threshold)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", **(extra or {})}


def example_env(name: str) -> dict[str, str]:
    """``own_ray_env`` with example ``name``'s own Ray settings (``OWN_RAY_ENV``)."""
    return own_ray_env(OWN_RAY_ENV.get(name, dict)())


def run_example(
    name: str, point: dict[str, Any], ray: SharedRay | None, store: Path, limit_s: float, script: str | None = None
) -> dict[str, Any]:
    """One recorded run of an example with ``--set`` knobs, its output in a scratch directory; on the shared
    ``ray``, or (None) on a local Ray of its own."""
    if ray is None and name in CLUSTERS:
        raise ValueError(f"{name} runs on a cluster of its shape: pass the SharedRay(CLUSTERS[{name!r}]) for it")
    default_script, args = EXAMPLES[name]
    sets = [a for k, v in sorted(point.items()) for a in ("--set", f"{k}={v}")]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "pipetune", "run", "--json", "--store", str(store), "--timeout", str(limit_s)]
        cmd += [*sets, script or default_script, "--", *args, "--out", str(Path(out) / "out")]
        env = ray.env if ray is not None and name not in OWN_RAY_ENV else example_env(name)
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        view = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"status": "error", "wall_s": limit_s, "error": done.stderr.strip().splitlines()[-1:]}
    return {"status": view["status"], "wall_s": view["wall_s"] or limit_s, "rows": view["rows"], "id": view["id"]}
