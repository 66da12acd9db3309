"""Small batches, and a UDF that fails on large ones (as a worker running out of memory would)."""

import os

import ray

OUT = os.path.abspath("out")


def scale(batch):
    if len(batch["id"]) > 64:
        raise MemoryError(f"a batch of {len(batch['id'])} rows does not fit")
    batch["x"] = batch["id"] * 0.5
    return batch


ray.data.range(1_200, override_num_blocks=4).map_batches(scale, batch_size=2).write_parquet(OUT)
