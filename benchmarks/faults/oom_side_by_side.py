"""Tasks that each fit the node's memory alone but not two at a time: Ray's memory monitor kills one of every
pair running side by side, Ray retries it, and the run ends only after the kills and retries.

Guide branch: workers OOM-killed -> raise num_cpus so fewer tasks run at once (then lower batch_size).
Run it under a lowered memory threshold (``RAY_memory_usage_threshold``) that leaves ``--headroom-gib`` above
what the machine uses now; each task holds ``--task-gib`` for a while (benchmarks/faults.py sets both).
"""

import argparse
import os
import time

import numpy as np
import ray

parser = argparse.ArgumentParser()
parser.add_argument("--task-gib", type=float, default=2.2)
parser.add_argument("--blocks", type=int, default=6)
args = parser.parse_args()
TASK_BYTES = int(args.task_gib * 1024**3)


def hold(batch):
    block = np.ones(TASK_BYTES // 8)  # touched: resident, as a real batch's working set is
    time.sleep(2.0)
    batch["sum"] = batch["id"] + int(block[0])
    return batch


ds = ray.data.range(args.blocks * 100, override_num_blocks=args.blocks)
ds.map_batches(hold, batch_size=None).write_parquet(os.path.abspath("out"))
