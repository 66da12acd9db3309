"""Holds far more blocks than a small object store fits."""

import ray

ds = ray.data.range_tensor(3_000, shape=(128, 128), override_num_blocks=30)
ds = ds.map_batches(lambda b: b)
kept = ds.materialize()
print("kept", kept.count())
