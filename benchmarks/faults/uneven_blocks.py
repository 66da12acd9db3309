"""Skew from uneven blocks: a filter keeps every row of the first block and one row in a hundred of the others,
so the CPU stage after it gets one block with most of the rows; that task runs long after the rest while the
other core idles.

Guide branch: uneven progress / data skew ("some tasks much slower than others? use repartition() for better
distribution"): task durations and block sizes far apart, one slot busy while the others idle.
"""

import os
import time

import ray

ROWS_PER_BLOCK = 2_000


def kept(row):
    return row["id"] < ROWS_PER_BLOCK or row["id"] % 100 == 0


def work(batch):
    cost = 6e-3 * len(batch["id"])  # CPU seconds: the same cost for every row (12 s in the big block)
    started = time.process_time()
    while time.process_time() - started < cost:
        pass
    return batch


ds = ray.data.range(16 * ROWS_PER_BLOCK, override_num_blocks=16).filter(kept)
ds.map_batches(work, batch_size=None).write_parquet(os.path.abspath("out"))
