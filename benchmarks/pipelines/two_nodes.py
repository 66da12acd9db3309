"""A scoring pool on a cluster of two unequal nodes (the benchmark starts one: a 2-CPU head and a 1-CPU worker).

Each batch is parsed by a task stage (a little CPU, a short wait on storage), then scored by an actor that waits
on a service for most of its time and computes for the rest. Shipped with one scoring replica that reserves
1.5 CPUs: it fits on the head only, one replica scores one batch at a time, and the parse tasks get the head's
last half CPU and the worker's one. Two such replicas do not fit on either node beside the other (1.5 + 1.5 > 2,
and 1.5 > 1): a proposal that counts the cluster's 3 CPUs as one pool would hang. Smaller reservations let
replicas on both nodes overlap their waits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import ray


def busy(cpu_s: float) -> None:
    start = time.process_time()
    while time.process_time() - start < cpu_s:
        pass


def parse(batch: dict[str, Any]) -> dict[str, Any]:
    time.sleep(0.01)  # reading the record from storage
    busy(0.005)
    batch["x"] = batch["id"] % 97
    return batch


class Scorer:
    def __init__(self) -> None:
        time.sleep(0.5)  # connecting to the service

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.06)  # the service's answer
        busy(0.01)
        batch["score"] = batch["x"] * 2
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=8_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "scores")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=40)
    ds = ds.map_batches(parse, batch_size=50, num_cpus=1)
    ds = ds.map_batches(Scorer, batch_size=25, concurrency=1, num_cpus=1.5)
    ds.write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
