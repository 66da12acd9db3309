"""Two blocks of ten carry most of the work."""

import time

import ray


def work(batch):
    time.sleep(2.0 if batch["id"][0] < 200 else 0.1)
    return batch


ray.data.range(1_000, override_num_blocks=10).map_batches(work, batch_size=None).write_parquet("out")
