"""Pandas batches of two rows over one block: fixed per-batch costs are nearly all of the work."""

import os

import ray

OUT = os.path.abspath("out")


def scale(batch):
    batch["x"] = batch["id"] * 0.5
    return batch


ds = ray.data.range(6_000, override_num_blocks=1)
ds.map_batches(scale, batch_format="pandas", batch_size=2).write_parquet(OUT)
