"""A download stand-in: each batch waits 200 ms on I/O and computes nothing, with a whole CPU reserved per task.

Guide branch: low CPU utilisation, data loading: num_cpus 0.025-0.1, so many fetches wait at once.
"""

import os
import time

import ray


def fetch(batch):
    time.sleep(0.2)
    return batch


ray.data.range(2_000, override_num_blocks=20).map_batches(fetch, batch_size=20, num_cpus=1).write_parquet(
    os.path.abspath("out")
)
