"""Skew that bundling makes worse: 4 of 16 blocks carry nearly all the work, and they are neighbours, so
batch_size=4096 (four blocks of 1,000 rows per task) puts all of them in one task while the other core idles.

Guide branch: uneven progress / data skew (task durations far apart, one slot busy while the others idle).
"""

import os
import time

import numpy as np
import ray


def work(batch):
    heavy = (batch["id"] // 1000) < 4  # the rows of blocks 0-3
    cost = float(np.where(heavy, 4e-3, 2e-5).sum())  # CPU seconds: a heavy row costs 200x a light one
    started = time.process_time()
    while time.process_time() - started < cost:
        pass
    return batch


ray.data.range(16_000, override_num_blocks=16).map_batches(work, batch_size=4096).write_parquet(os.path.abspath("out"))
