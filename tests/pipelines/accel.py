"""Needs the custom ``accel`` resource that only one node of the test cluster advertises."""

import os
import time

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def on_accel(batch):
    time.sleep(0.2)
    return batch


def prep(batch):
    time.sleep(0.1)
    return batch


ds = ray.data.range(3000, override_num_blocks=12).map_batches(prep, num_cpus=0.5)
ds.map_batches(on_accel, resources={"accel": 1}, num_cpus=0).write_parquet(OUT)
