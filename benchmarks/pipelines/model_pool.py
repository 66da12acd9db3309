"""A CPU model on an actor pool: each replica loads for a second, then computes per batch.

Shipped with 4 replicas of num_cpus=0.25 on whatever cores there are: on a small machine the replicas fight
for the cores and each pays its load; fewer replicas with a whole CPU each do better.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import ray


class Model:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.w = rng.standard_normal((256, 256))
        for _ in range(1500):  # loading and warming up: a second or two of one core
            self.w = np.tanh(self.w @ self.w.T / 256)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = np.outer(batch["id"].astype(np.float64), np.ones(256)) / 1e4
        for _ in range(20):  # a few layers
            x = np.tanh(x @ self.w)
        batch["y"] = x.sum(axis=1)
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "scores")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=20)
    ds.map_batches(Model, batch_size=256, concurrency=4, num_cpus=0.25).write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
