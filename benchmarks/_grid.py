"""The knob space of the tuning benchmark: one coarse grid per bundled example, shared by the grid oracle and
Optuna's TPE (so both search exactly the same space). pipetune's tuner is not limited to it.

Each grid names stage knobs by the stage's index in the example (``--set INDEX.KNOB=VALUE``); ``None`` is the
script's own value, ``"default"`` Ray Data's (the argument removed).
"""

from __future__ import annotations

import itertools
from typing import Any

GRIDS: dict[str, dict[str, list[Any]]] = {
    # read_parquet -> filter -> map_batches(enrich) -> write_parquet
    "etl": {
        "0.repartition": [None, 8, 16],
        "2.num_cpus": [1, 0.5, 0.25],
        "2.batch_size": [64, 4096],
    },
    # range -> map(fetch) -> filter -> write_parquet; fetch waits ~50 ms on a remote service
    "http": {
        "1.num_cpus": [1, 0.5, 0.25, 0.1, 0.05],
        "0.override_num_blocks": [None, 150],
    },
    # range -> map_batches(clean) -> map_batches(Embedder actor pool) -> write_parquet
    "embed": {
        "2.batch_size": [4, 16, 64, 256],
        "2.concurrency": [1, 2],
        "2.num_cpus": [1, 0.5],
    },
    # range -> map_batches(ServiceClient actor pool, 40 ms a batch) -> write_parquet. Ray's defaults for each knob
    # the script sets are points of the grid: a first grid without them (pool sizes and reservations only) found
    # 17.7 s at best, where Ray's defaults ran 7.0 s (benchmarks/results/tune_bench_intask_2026-12-06.md, C).
    "service-pool": {
        "0.override_num_blocks": [None, "default"],
        "1.batch_size": [None, "default"],
        "1.concurrency": [1, 2, 4, 8, "default"],
        "1.num_cpus": [1, 0.25],
    },
    # range -> map(parse) -> map_batches(clean) -> map_batches(score) -> map_batches(Lookup) -> filter -> write
    # Ray's defaults for each knob the script sets are points of the grid: a first grid without the Lookup's batch
    # size and the read's blocks found 10.8 s at best, where Ray's defaults ran 5.9 s (same results file, C).
    "etl-6": {
        "0.override_num_blocks": [None, "default"],
        "1.num_cpus": [None, 0.5],
        "2.batch_size": [None, "default"],
        "3.batch_size": [None, "default"],
        "4.batch_size": [None, "default"],
        "4.concurrency": [None, "default"],
    },
    # read_parquet (24 small files, one read task) -> map_batches(features, 16 rows a batch) -> write_parquet
    "packed": {
        "0.repartition": [None, 8],
        "1.batch_size": [16, 256, "default"],
        "1.num_cpus": [1, 0.5],
    },
    # range (16 blocks, 3 heavy) -> map_batches(work, 4096 rows a batch) -> write_parquet
    "skew": {
        "0.repartition": [None, 32],
        "1.batch_size": [None, 1000, 256],
    },
    # range (6 blocks) -> map_batches(hold 2.2 GiB a task) -> write_parquet, under a lowered memory limit
    "memory": {
        "1.num_cpus": [None, 2],
        "1.batch_size": [None, 50, 25],
    },
    # range -> map_batches(parse, 1 CPU) -> map_batches(Scorer actor pool, 1 x 1.5 CPU) -> write_parquet, on a
    # 2-CPU head and a 1-CPU worker. The Scorer waits per call, not per row, so its batch size matters as much
    # as its replicas; Ray's defaults (an autoscaling pool, whole blocks) are points of the grid. A first grid
    # without batch sizes (and with the parse stage's num_cpus 1 or 0.25: no difference beyond one run's noise)
    # found 22 s at best, where Ray's defaults ran 8.6 s (benchmarks/results/tune_bench_two_nodes_2026-12-05.md).
    # The grid after it (pool size, reservation, batch; measured on a 150 MiB object store) found 11.5 s at best
    # where Ray's defaults ran 4.3 s; this one takes Ray's default for every knob the script sets
    # (benchmarks/results/tune_bench_grids_2026-12-06.md).
    "two-nodes": {
        "0.override_num_blocks": [None, "default"],
        "1.batch_size": [None, "default"],
        "2.concurrency": [1, 2, "default"],
        "2.num_cpus": [None, "default"],
        "2.batch_size": [None, "default"],
    },
    # range -> map_batches(Model actor pool, 4 x 0.25 CPU) -> write_parquet
    "model-pool": {
        "1.concurrency": [1, 2, 4],
        "1.num_cpus": [None, 0.5, 1],
    },
}


def points(example: str) -> list[dict[str, Any]]:
    """Every combination of the example's grid, as ``{"INDEX.KNOB": value}`` without the script's own values."""
    grid = GRIDS[example]
    combos = itertools.product(*grid.values())
    return [{k: v for k, v in zip(grid, combo, strict=True) if v is not None} for combo in combos]


def sets(point: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(point.items())]


def key(point: dict[str, Any]) -> str:
    return " ".join(sets(point)) or "(shipped)"
