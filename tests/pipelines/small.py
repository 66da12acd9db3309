"""A small pipeline with every kind of stage: read, transform, filter, actor, write."""

import argparse
import os

import ray


def double(batch):
    batch["y"] = batch["id"] * 2
    return batch


class Scale:
    def __init__(self):
        self.k = 3

    def __call__(self, batch):
        batch["z"] = batch["y"] * self.k
        return batch


parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=20_000)
parser.add_argument("--out", default="out")
args = parser.parse_args()

ds = ray.data.range(args.rows, override_num_blocks=8)
ds = ds.map_batches(double, batch_size=500)
ds = ds.filter(lambda row: row["id"] % 2 == 0)
ds = ds.map_batches(Scale, batch_size=1000, concurrency=1)
ds.write_parquet(os.path.abspath(args.out))  # workers do not share our cwd
print("small pipeline done as", __name__)
