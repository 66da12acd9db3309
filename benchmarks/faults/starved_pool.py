"""An actor pool starved by its upstream reservation: a task stage and a one-replica pool both reserve 1 CPU on
a 2-CPU machine, and the pool mostly waits on a service.

Guide branch: one slow stage (the pool) held to one replica: more replicas, each reserving less, in the room the
upstream tasks leave. Eight blocks of 3,750 rows: with sixty blocks of 500 the reads' per-task overhead is the
larger fault (the many-blocks branch), and the case would measure that branch instead of this one.
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


ds = ray.data.range(30_000, override_num_blocks=8).map_batches(parse, batch_size=100, num_cpus=1)
ds.map_batches(Lookup, batch_size=100, concurrency=1, num_cpus=1).write_parquet(os.path.abspath("out"))
