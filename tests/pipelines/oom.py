"""A UDF that blows past the node's memory threshold once: Ray's memory monitor kills the worker and
Ray Data retries the task silently, so the run succeeds and only the raylet log knows."""

import os
import time

import numpy as np
import psutil
import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")

MARK = os.path.abspath("oom_marker")


def hog(batch):
    if not os.path.exists(MARK):
        open(MARK, "w").close()
        mem = psutil.virtual_memory()  # as much as takes the node 1 GiB past the threshold, whatever is in use
        threshold = float(os.environ.get("RAY_memory_usage_threshold", "0.95"))  # noqa: SIM112 - Ray spells it so
        need = max(threshold * mem.total - (mem.total - mem.available), 0.0) + 1024**3
        block = np.ones(int(need) // 8)  # touched
        time.sleep(10)
        del block
    return batch


ray.data.range(10, override_num_blocks=1).map_batches(hog).write_parquet(OUT)
