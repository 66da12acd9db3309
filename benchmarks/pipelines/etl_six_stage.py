"""A six-stage ETL where several stages limit together: row-based maps, tiny pandas batches, a service call.

No single knob gains much: fixing one stage leaves the others to burn the same cores. Ray Data's defaults (whole
blocks as batches, no caps) and a joint change both do far better than any one change.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray


def parse(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "text": f"record {row['id']:08d} " * 4}


def clean(batch: pd.DataFrame) -> pd.DataFrame:
    batch["text"] = batch["text"].str.strip().str.lower()
    return batch


def score(batch: pd.DataFrame) -> pd.DataFrame:
    batch["score"] = batch["text"].str.len() * 0.5
    return batch


class Lookup:
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.002)  # a cache lookup per batch
        return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "etl")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=8)
    ds = ds.map(parse, num_cpus=1)
    ds = ds.map_batches(clean, batch_format="pandas", batch_size=4, num_cpus=1)
    ds = ds.map_batches(score, batch_format="pandas", batch_size=4, num_cpus=1)
    ds = ds.map_batches(Lookup, batch_size=8, concurrency=1)
    ds = ds.filter(lambda row: row["score"] > 0)
    ds.write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
