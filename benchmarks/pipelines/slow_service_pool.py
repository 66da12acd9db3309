"""An actor pool that calls a slow service: each batch waits ~40 ms on the service and computes almost nothing.

Shipped with one replica, so the pool waits one call at a time. More replicas overlap the waits, but each is a
process to start, so past a few the start-ups cost more than they save (the pool's best size is several).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import ray


class ServiceClient:
    def __init__(self) -> None:
        time.sleep(0.5)  # open a connection pool, authenticate

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.04)  # the service's latency, per request
        batch["answer"] = batch["id"] * 2
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "answers")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=40)
    ds = ds.map_batches(ServiceClient, batch_size=16, concurrency=1, num_cpus=1)
    ds.write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
