"""Pandas batches of two rows over one block: fixed per-batch costs are nearly all of the work."""

import os
import sys

import ray

OUT = os.path.abspath("out")
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 6_000  # tests pass fewer: the mechanism, not the speed


def scale(batch):
    batch["x"] = batch["id"] * 0.5
    return batch


ds = ray.data.range(ROWS, override_num_blocks=1)
ds.map_batches(scale, batch_format="pandas", batch_size=2).write_parquet(OUT)
