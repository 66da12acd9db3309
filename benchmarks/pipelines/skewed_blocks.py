"""Skewed partitions: 3 of 16 blocks carry about 20x the work of the others, and large batches bundle blocks.

With batch_size=4096 a task takes several blocks, so the heavy ones end up in one long task while the other
core idles. Smaller bundles or a repartition spread the heavy rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray


def work(batch: dict[str, Any]) -> dict[str, Any]:
    ids = batch["id"]
    heavy = np.isin((ids // 1000) % 16, (3, 7, 11))  # the rows of 3 blocks out of 16
    cost = float(np.where(heavy, 3e-3, 1.5e-4).sum())  # CPU seconds: a heavy row costs 20x a light one
    started = time.process_time()
    while time.process_time() - started < cost:
        pass
    batch["x"] = ids * 2
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=16_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "skewed")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=16)
    ds.map_batches(work, batch_size=4096).write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
