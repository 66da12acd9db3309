"""Per-node figures over time: CPU, memory, the node's Ray workers, and GPUs where NVML finds them.

Nodes whose raylet runs on this host (the usual case, and every node of a local multi-node test cluster) are
sampled from the driver with psutil: no extra process competes with the pipeline. Nodes on other hosts get a
zero-CPU sampling actor pinned to them.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import psutil

from pipetune.model import NodeInfo

try:  # NVML is optional: nodes without an NVIDIA driver simply report no GPU
    import pynvml
except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency, but stay usable without it
    pynvml = None


class HostSampler:
    """Samples one node from a process on the same host, given its raylet's pid."""

    def __init__(self, raylet_pid: int | None) -> None:
        self._raylet = _process(raylet_pid)
        self._workers: dict[int, psutil.Process] = {}
        psutil.cpu_percent(interval=None)  # primes the counter: the first call always returns 0

    def sample(self) -> dict[str, float]:
        mem = psutil.virtual_memory()
        values = {
            "cpu_pct": psutil.cpu_percent(interval=None),
            "mem_used_bytes": float(mem.total - mem.available),
            "mem_total_bytes": float(mem.total),
        }
        values.update(self._ray_workers())
        values.update(gpu_sample())
        return values

    def _ray_workers(self) -> dict[str, float]:
        if self._raylet is None:
            return {}
        rss, cpu = 0.0, 0.0
        with contextlib.suppress(psutil.Error):
            children = {p.pid: p for p in self._raylet.children(recursive=True)}
            for pid, proc in children.items():
                known = self._workers.setdefault(pid, proc)
                with contextlib.suppress(psutil.Error):
                    rss += known.memory_info().rss
                    cpu += known.cpu_percent(interval=None)
            self._workers = {pid: self._workers[pid] for pid in children}
        return {"ray_rss_bytes": rss, "ray_cpu_pct": cpu}


def _process(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


_nvml_ready: bool | None = None


def gpu_sample() -> dict[str, float]:
    """Utilisation and memory summed over the host's GPUs; empty when NVML finds none."""
    global _nvml_ready
    if pynvml is None or _nvml_ready is False:
        return {}
    try:
        if _nvml_ready is None:
            pynvml.nvmlInit()
            _nvml_ready = True
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no driver, no device: this node has no GPU to report
        _nvml_ready = False
        return {}
    return _gpu_values(handles) if handles else {}


def _gpu_values(handles: list[Any]) -> dict[str, float]:
    utils = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles]
    mems = [pynvml.nvmlDeviceGetMemoryInfo(h) for h in handles]
    return {
        "gpu_count": float(len(handles)),
        "gpu_util_pct": sum(utils) / len(utils),
        "gpu_mem_used_bytes": float(sum(m.used for m in mems)),
        "gpu_mem_total_bytes": float(sum(m.total for m in mems)),
    }


def local_gpus() -> int:
    """GPUs on this host (NVML), 0 where there is no driver."""
    if pynvml is None:
        return 0
    try:
        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # no driver, no device: NVML's errors are its own classes
        return 0


def local_raylets() -> dict[str, tuple[int, str]]:
    """node id -> (raylet pid, raylet.out path) for every raylet running on this host."""
    found: dict[str, tuple[int, str]] = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != "raylet":
            continue
        flags = _flags(proc.info["cmdline"] or [])
        if "node_id" in flags:
            found[flags["node_id"]] = (proc.pid, flags.get("stdout_filepath", ""))
    return found


def _flags(cmdline: list[str]) -> dict[str, str]:
    out = {}
    for arg in cmdline:
        if arg.startswith("--") and "=" in arg:
            key, _, value = arg[2:].partition("=")
            out[key] = value
    return out


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]


def cluster_resources() -> dict[str, float]:
    """The cluster's totals (CPU, GPU, memory, custom resources), without per-node markers."""
    import ray

    totals = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return {k: float(v) for k, v in totals.items() if not k.startswith("node:")}


def cluster_nodes(driver_node: str) -> list[NodeInfo]:
    return [
        NodeInfo(
            node_id=n["NodeID"],
            address=n.get("NodeManagerAddress", ""),
            resources={k: float(v) for k, v in n.get("Resources", {}).items() if not k.startswith("node:")},
            is_driver=n["NodeID"] == driver_node,
        )
        for n in alive_nodes()
    ]


def remote_sampler(node_id: str) -> Any:
    """A zero-CPU actor pinned to a node on another host, sampling that host for the driver."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class NodeProbe:
        def __init__(self) -> None:
            import os

            self._sampler = HostSampler(os.getppid())  # a worker's parent is its node's raylet

        def sample(self) -> dict[str, float]:
            return self._sampler.sample()

    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    return NodeProbe.options(scheduling_strategy=strategy, name=None).remote()  # type: ignore[attr-defined]


def hostname() -> str:
    return socket.gethostname()
