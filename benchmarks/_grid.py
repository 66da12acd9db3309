"""The knob space of the tuning benchmark: one coarse grid per bundled example, shared by the grid oracle and
Optuna's TPE (so both search exactly the same space). pipetune's tuner is not limited to it.

Each grid names stage knobs by the stage's index in the example (``--set INDEX.KNOB=VALUE``); ``None`` is the
script's own value.
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
