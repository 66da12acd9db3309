"""A pipeline the script's own loop consumes, as a training loop would: read -> a slow map -> iter_batches.

The map waits (a stand-in for a download or a decode), the loop does almost nothing: the loop is data-bound.
The same iter_batches call is iterated once per epoch, so it is one consumer stage.
"""

import argparse
import time

import ray


def slow(batch):
    time.sleep(0.02)
    return batch


parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=4_000)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--out", help="ignored: the loop writes nothing")
args = parser.parse_args()

ds = ray.data.range(args.rows, override_num_blocks=8).map_batches(slow, batch_size=50)
loop = ds.iter_batches(batch_size=100, prefetch_batches=1, drop_last=False)
rows = 0
for _epoch in range(args.epochs):
    for batch in loop:
        rows += len(batch["id"])
print("loop took", rows, "rows")
