"""A filter that waits on a service for every row, reserving a whole CPU per task, upstream of a CPU stage that
reserves the other: each gets one task at a time, and the filter's input queue fills while its output is empty.

Guide branch: one slow stage, empty output queue: decrease its num_cpus (more parallelism).
"""

import os
import time

import ray


def reachable(row):
    time.sleep(0.004)  # a check against a service: waits, burns nothing
    return row["id"] % 10 != 0


def embed(batch):
    start = time.process_time()
    while time.process_time() - start < 0.1:  # CPU work: one core for 0.1 s a batch
        pass
    return batch


ds = ray.data.range(8_800, override_num_blocks=40).filter(reachable, num_cpus=1)
ds.map_batches(embed, batch_size=50, num_cpus=1).write_parquet(os.path.abspath("out"))
