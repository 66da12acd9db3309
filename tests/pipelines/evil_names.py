"""A UDF whose name is markup: every page must show it as text, never run it."""

import os

import ray

OUT = os.path.abspath("out")


def scale(batch):
    batch["x"] = batch["id"] * 2
    return batch


scale.__name__ = "<script>alert('udf')</script>"
ray.data.range(2_000, override_num_blocks=2).map_batches(scale, batch_size=100).write_parquet(OUT)
