"""``pipetune batch-size``: the batch-size loop on the real stage, over a slice of the real input.

Each probe is a recorded run of the user's script with the stage's batch_size set, every source cut to a few
thousand rows and every write sent to a scratch directory, on one Ray shared by all probes. Memory is the
stage's workers' peak (USS) against a worker's share of its node's memory on CPU, or the GPU memory NVML saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipetune.diagnose import Facts
from pipetune.errors import UsageError
from pipetune.model import Run, Stage
from pipetune.plan.batch_search import Probe, fastest, next_batch
from pipetune.record import Launch, record, scratch, shared_ray
from pipetune.settings import Settings, StageSetting
from pipetune.store import Store


@dataclass(frozen=True)
class SearchResult:
    stage: str
    device: str  # "cpu" or "gpu"
    probes: tuple[Probe, ...]
    best: Probe | None
    note: str


def search(
    store: Store, script: Path, args: tuple[str, ...], stage: str, start: int, rows: int,
    address: str | None = None, say: Callable[[str], None] = lambda line: None, max_probes: int = 8,
    max_batch: int = 1 << 16,
) -> SearchResult:  # fmt: skip
    probes: list[Probe] = []
    batch: int | None = start
    device = "cpu"
    with shared_ray(address) as where, scratch("pipetune-batch-") as sandbox:
        while batch is not None and len(probes) < max_probes:
            run = _probe_run(store, script, args, stage, batch, rows, where, sandbox)
            device = _device(run, stage)
            probes.append(_measure(run, stage, batch, device))
            say(_line(probes[-1]))
            batch = next_batch(probes, max_batch)
    note = "" if device == "gpu" else "no GPU on this cluster: the CPU path was measured, the GPU path was not"
    return SearchResult(stage, device, tuple(probes), fastest(probes), note)


def _probe_run(
    store: Store, script: Path, args: tuple[str, ...], stage: str, batch: int, rows: int,
    address: str | None, sandbox: Path,
) -> Run:  # fmt: skip
    overrides = Settings((StageSetting(stage, "batch_size", batch),))
    launch = Launch(script, args, overrides, address=address, sandbox=sandbox / str(batch), sample_rows=rows,
                    output=sandbox / f"{batch}.log", extra_env={"RAY_DATA_DISABLE_PROGRESS_BARS": "1"})  # fmt: skip
    run = record(launch, store)
    if run.exit_code == 2:  # refused by pipetune in the script's driver: e.g. no such stage
        raise UsageError(run.error or "the stage cannot be found", "name the stage by index, key or UDF name")
    return run


def _device(run: Run, stage: str) -> str:
    target = _stage(run, stage)
    return (
        "gpu"
        if target is not None and (target.knobs.num_gpus or 0) > 0 and run.env.cluster_resources.get("GPU")
        else "cpu"
    )


def _stage(run: Run, selector: str) -> Stage | None:
    probe = StageSetting(selector, "batch_size", 1)
    return next((s for s in run.stages if probe.matches(s)), None)


def _measure(run: Run, stage: str, batch: int, device: str) -> Probe:
    target = _stage(run, stage)
    if not run.status.ok or target is None:
        return Probe(batch, False, None, None, run.error or run.status.value)
    facts = Facts.of(run)
    index = target.index
    rate, stats = facts.rate_of(index), facts.stage_stats(index)
    speed = rate.per_slot if rate else None
    return Probe(batch, True, speed, _gpu_memory(run) if device == "gpu" else _cpu_memory(run, stats))


def _cpu_memory(run: Run, stats: object | None) -> float | None:
    peak = getattr(stats, "peak_uss_bytes", 0.0)
    nodes = [n.resources for n in run.env.nodes if n.resources.get("CPU")]
    if not peak or not nodes:
        return None
    per_worker = min(n.get("memory", 0.0) / n["CPU"] for n in nodes)
    return float(peak / per_worker) if per_worker else None


def _gpu_memory(run: Run) -> float | None:
    shares = [
        s.values["gpu_mem_used_bytes"] / s.values["gpu_mem_total_bytes"]
        for s in run.node_samples
        if s.values.get("gpu_mem_total_bytes")
    ]
    return max(shares) if shares else None


def _line(p: Probe) -> str:
    if not p.ok:
        return f"batch_size {p.batch}: failed ({p.error})"
    speed = f"{p.rows_per_s:,.0f} rows/s per task" if p.rows_per_s else "no rate"
    memory = f"{p.memory * 100:.1f}% of a worker's memory" if p.memory is not None else "memory not measured"
    return f"batch_size {p.batch}: {speed}, {memory}"
