"""A download stand-in: each batch waits 200 ms on I/O and computes nothing, with a whole CPU reserved per task.

Guide branch: low CPU utilisation, data loading: num_cpus 0.025-0.1, so many fetches wait at once.

10,000 rows: 100 s of waiting in all. At 2,000 rows (20 s of waiting) a run was 23 s, about 13 s of it Ray
starting up and the workers importing Ray Data, so no reservation could change much. At this size the guide's fix
still does not help on this machine (benchmarks/results/faults.md says why).
"""

import os
import time

import ray


def fetch(batch):
    time.sleep(0.2)
    return batch


ray.data.range(10_000, override_num_blocks=100).map_batches(fetch, batch_size=20, num_cpus=1).write_parquet(
    os.path.abspath("out")
)
