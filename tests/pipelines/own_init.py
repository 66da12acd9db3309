"""Starts (or joins) Ray itself, as many scripts do, then runs a pipeline and materialises it twice."""

import os
import sys

import ray

# Ray workers do not share the driver's working directory: give them absolute paths.
OUT = os.path.abspath("out")

ray.init()
ds = ray.data.range(2000).map(lambda row: {"id": row["id"], "sq": row["id"] ** 2})
ds = ds.filter(lambda row: row["id"] >= 0)  # count() must now execute: a filter may drop rows
print("rows:", ds.count())
ds.write_json(OUT)
assert sys.argv[1:] == ["--flag", "value"], sys.argv
