"""An actor pool starved by its upstream reservation: a task stage and a one-replica pool both reserve 1 CPU on
a 2-CPU machine, and the pool mostly waits on a service.

Guide branch: one slow stage whose upstream over-reserves ("decrease upstream num_cpus").
"""

import os
import time

import ray


def parse(batch):
    batch["y"] = batch["id"] * 2
    return batch


class Lookup:
    def __call__(self, batch):
        time.sleep(0.03)  # the service's latency
        return batch


ds = ray.data.range(30_000, override_num_blocks=60).map_batches(parse, batch_size=100, num_cpus=1)
ds.map_batches(Lookup, batch_size=100, concurrency=1, num_cpus=1).write_parquet(os.path.abspath("out"))
