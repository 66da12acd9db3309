"""Large blocks streamed under a small object store, with a stage whose reservation keeps it apart from the read.

Guide branch: memory, "spilling" (object store full). The read and ``grow`` would fuse if they reserved alike;
apart, every 100 MiB block between them and every 200 MiB block ``grow`` makes goes through the object store,
which the case's Ray is started too small to hold (``faults.py``: ``small_object_store``).
"""

import numpy as np
import ray


def grow(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    data = batch["data"]
    return {"data": np.concatenate([data, data], axis=1)}  # twice the bytes out


def shrink(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"s": batch["data"].reshape(len(batch["data"]), -1).sum(axis=1)}


ds = ray.data.range_tensor(2_400, shape=(256, 256), override_num_blocks=12)  # 512 KiB a row, 100 MiB a block
ds = ds.map_batches(grow, num_cpus=0.25)
ds = ds.map_batches(shrink, num_cpus=1)
ds.write_parquet("out")
