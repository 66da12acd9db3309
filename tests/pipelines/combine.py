"""Two branches joined: union, then a shuffle-style repartition, then a write."""

import os

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def tag(batch):
    batch["branch"] = [1] * len(batch["id"])
    return batch


left = ray.data.range(3000)
right = ray.data.range(2000).map_batches(tag, batch_format="pandas")
right = right.drop_columns(["branch"])
both = left.union(right).repartition(4)
both.write_parquet(OUT)
