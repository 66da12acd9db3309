"""Real CPU work on a dataset read as one block: one task does everything while the other cores idle.

Guide branch: too few blocks (tasks < CPUs): more blocks (override_num_blocks or repartition).
"""

import os

import numpy as np
import ray


def work(batch):
    x = batch["id"].astype(np.float64)
    for k in range(1, 480):
        x = np.sin(x + k) * 0.5 + x * 0.5
    batch["y"] = x
    return batch


ray.data.range(2_000_000, override_num_blocks=1).map_batches(work, batch_size=4096).write_parquet(
    os.path.abspath("out")
)
