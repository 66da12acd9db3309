"""The cluster a plan is for: read from a recorded run or this machine, or described with ``--cluster``.

``--cluster "4x(16 CPU, 1 A10G)"`` is four nodes of 16 CPUs and one A10G each; groups are joined with ``+``
(``"1x(8 CPU) + 2x(32 CPU, 4 A100, 256 GB)"``). Memory defaults to 4 GB per CPU when not given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipetune.errors import UsageError
from pipetune.model import Run
from pipetune.plan.tables import gpu_memory_gb

_GROUP = re.compile(r"^\s*(\d+)\s*x\s*\((.*)\)\s*$", re.IGNORECASE)
_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z][\w-]*)\s*$")
DEFAULT_GB_PER_CPU = 4.0


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float = 0.0
    gpu_model: str = ""
    gpu_memory_gb: float = 0.0
    memory_gb: float = 0.0


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    source: str  # where the description came from

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    @property
    def mixed(self) -> bool:
        """Some nodes with GPUs and some without: the guide's mixed cluster."""
        return 0 < sum(1 for n in self.nodes if n.gpus) < len(self.nodes)

    @property
    def gpu_memory_gb(self) -> float:
        return min((n.gpu_memory_gb for n in self.nodes if n.gpus), default=0.0)

    @property
    def memory_gb(self) -> float:
        return sum(n.memory_gb for n in self.nodes)

    def describe(self) -> str:
        gpu = f", {self.gpus:g} GPU ({self.nodes[0].gpu_model or 'unknown model'})" if self.gpus else ""
        return f"{len(self.nodes)} node(s), {self.cpus:g} CPU{gpu}, {self.memory_gb:.0f} GB ({self.source})"


def parse_cluster(text: str) -> Cluster:
    nodes: list[Node] = []
    for group in text.split("+"):
        match = _GROUP.match(group)
        if not match:
            raise UsageError(f"--cluster '{group.strip()}' is not COUNTx(N CPU[, M GPUMODEL][, G GB])",
                             'e.g. --cluster "4x(16 CPU, 1 A10G)"')  # fmt: skip
        nodes += [_node(match.group(2))] * int(match.group(1))
    return Cluster(tuple(nodes), f"--cluster {text}")


def _node(text: str) -> Node:
    cpus = gpus = memory = 0.0
    model = ""
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise UsageError(f"--cluster part '{part.strip()}' is not a count and a name", "e.g. 16 CPU, 1 A10G, 64 GB")
        count, name = float(match.group(1)), match.group(2)
        if name.upper() == "CPU":
            cpus = count
        elif name.upper() in ("GB", "GIB"):
            memory = count
        else:
            gpus, model = count, name
    if model and gpu_memory_gb(model) is None and model.upper() != "GPU":
        raise UsageError(f"unknown GPU model '{model}'", "use T4, A10G, L4, A100, A100-80, H100 or H200")
    per_gpu = float(gpu_memory_gb(model) or 16) if gpus else 0.0
    return Node(cpus, gpus, model.upper(), per_gpu, memory or cpus * DEFAULT_GB_PER_CPU)


def from_run(run: Run) -> Cluster:
    nodes = tuple(
        Node(
            cpus=n.resources.get("CPU", 0.0),
            gpus=n.resources.get("GPU", 0.0),
            memory_gb=n.resources.get("memory", 0.0) / 1e9,
            gpu_memory_gb=16.0 if n.resources.get("GPU") else 0.0,
        )
        for n in run.env.nodes
    )
    return Cluster(nodes, f"the cluster of run {run.id}")


def this_machine() -> Cluster:
    import os

    import psutil

    from pipetune.record import local_gpus

    gpus = local_gpus()
    node = Node(float(len(os.sched_getaffinity(0))), float(gpus), "", 16.0 if gpus else 0.0,
                psutil.virtual_memory().total / 1e9)  # fmt: skip
    return Cluster((node,), "this machine")
