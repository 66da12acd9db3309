"""Two blocks of ten carry most of the work."""

import os
import time

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


def work(batch):
    time.sleep(2.0 if batch["id"][0] < 200 else 0.1)
    return batch


ray.data.range(1_000, override_num_blocks=10).map_batches(work, batch_size=None).write_parquet(OUT)
