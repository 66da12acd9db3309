"""Many short tasks that each call out once per batch: 50 ms of waiting a batch and a little per row.

The shape a probe is for: a hundred tasks whose rows finish at a steady pace, so the sink's rate is known long
before the run ends. Written for the probe benchmark (benchmarks/probes.py); no rule or number of the tuner was
chosen on it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import ray


def call(batch: dict[str, Any]) -> dict[str, Any]:
    time.sleep(0.05 + 0.001 * len(batch["id"]) ** 0.5)  # a round trip, and a payload that grows with the batch
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "calls")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=100)
    ds.map_batches(call, batch_size=50).write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
