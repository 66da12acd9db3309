"""A per-row function over one block: one task of a few seconds, whose rows Ray counts only when it ends."""

import os
import sys
import time

import ray

OUT = os.path.abspath("out")
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000


def parse(row):
    time.sleep(0.004)  # a row's parse: the task runs about ROWS * 4 ms
    return {"id": row["id"], "y": row["id"] * 2}


ds = ray.data.range(ROWS, override_num_blocks=1)
ds.map(parse).write_parquet(OUT)
