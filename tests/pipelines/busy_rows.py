"""Pandas batches of two rows over one block, each row two milliseconds of CPU: whatever settings a study
tries, a run is seconds of work on two cores, so a test that stops a trial mid-run finds it still running (with
cheap rows, a trial at 128-row batches ended 0.2 s after its first samples)."""

import os
import sys
import time

import ray

OUT = os.path.abspath("out")
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000


def scale(batch):
    end = time.process_time() + 0.002 * len(batch)
    while time.process_time() < end:
        pass
    batch["x"] = batch["id"] * 0.5
    return batch


ds = ray.data.range(ROWS, override_num_blocks=1)
ds.map_batches(scale, batch_format="pandas", batch_size=2).write_parquet(OUT)
