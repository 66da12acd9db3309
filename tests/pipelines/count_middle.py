"""Counts its rows halfway through building the pipeline, as people do to check a filter."""

import os

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def square(batch):
    batch["sq"] = batch["id"] ** 2
    return batch


ds = ray.data.range(20_000, override_num_blocks=8).filter(lambda row: row["id"] % 3 != 0)
print("rows after the filter:", ds.count())
ds = ds.map_batches(square)
ds.write_parquet(OUT)
