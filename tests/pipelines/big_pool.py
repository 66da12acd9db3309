"""An actor pool sized to every CPU of the cluster, fed by CPU tasks that then cannot be scheduled."""

import os
import sys

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")


class Model:
    def __call__(self, batch):
        return batch


cpus = int(sys.argv[1])
ds = ray.data.range(2_000, override_num_blocks=8).map_batches(lambda b: b, batch_size=100)
ds.map_batches(Model, concurrency=cpus, num_cpus=1, batch_size=100).write_parquet(OUT)
