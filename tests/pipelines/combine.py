"""Two branches joined: union, then a shuffle-style repartition, then a write."""

import ray


def tag(batch):
    batch["branch"] = [1] * len(batch["id"])
    return batch


left = ray.data.range(3000)
right = ray.data.range(2000).map_batches(tag, batch_format="pandas")
right = right.drop_columns(["branch"])
both = left.union(right).repartition(4)
both.write_parquet("out")
