"""A UDF that blows past the node's memory threshold once: Ray's memory monitor kills the worker and
Ray Data retries the task silently, so the run succeeds and only the raylet log knows."""

import os
import time

import numpy as np
import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")

MARK = os.path.abspath("oom_marker")


def hog(batch):
    if not os.path.exists(MARK):
        open(MARK, "w").close()
        block = np.ones(3 * 1024**3 // 8)  # 3 GiB, touched
        time.sleep(10)
        del block
    return batch


ray.data.range(10, override_num_blocks=1).map_batches(hog).write_parquet(OUT)
