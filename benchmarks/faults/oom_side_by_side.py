"""Tasks that each fit the node's memory alone but not two at a time: Ray's memory monitor kills one of every
pair running side by side, Ray retries it, and the run ends only after the kills and retries.

Guide branch: workers OOM-killed -> raise num_cpus so fewer tasks run at once (then lower batch_size).
Run it under a lowered memory threshold (``RAY_memory_usage_threshold``) a few GiB above what the machine uses
now (OOM_HEADROOM_GIB in benchmarks/_examples.py). A task of a whole block (100 rows) holds ``--task-gib`` for
2 s, a smaller batch its share of both (with ``--fixed``, its share of the time and the whole memory: the
held-out case where a smaller batch does not help).
"""

import argparse
import os
import time

import numpy as np
import ray

parser = argparse.ArgumentParser()
parser.add_argument("--task-gib", type=float, default=2.2)
parser.add_argument("--blocks", type=int, default=6)
parser.add_argument("--out", default="out")
parser.add_argument("--fixed", action="store_true", help="every batch holds the whole --task-gib (a model's)")
args = parser.parse_args()
TASK_BYTES = int(args.task_gib * 1024**3)


ROWS_PER_BLOCK = 100


def hold(batch):
    share = len(batch["id"]) / ROWS_PER_BLOCK  # a batch's working set and time grow with its rows
    held = 1.0 if args.fixed else share  # --fixed: memory that is not in the rows (weights each call loads)
    block = np.ones(int(TASK_BYTES * held) // 8)  # touched: resident, as a real batch's working set is
    time.sleep(2.0 * share)
    batch["sum"] = batch["id"] + int(block[0])
    return batch


ds = ray.data.range(args.blocks * ROWS_PER_BLOCK, override_num_blocks=args.blocks)
ds.map_batches(hold, batch_size=None).write_parquet(os.path.abspath(args.out))
