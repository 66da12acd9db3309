"""Small parquet files that Ray packs into one read task, then CPU-heavy features per row in small batches.

Ray reads many small files in one task, so the feature stage gets one block and runs on one core while the
other idles; its 16-row batches also pay a per-call cost of their own (a lookup table built on every call).
Unlike the ETL example, the per-row work stays heavy at any batch size, so a split that spreads the rows
over the cores keeps paying after the batches grow. Held out: written to check the tuner's handling of a
repartition it adds, never used to choose its rules or numbers.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

HERE = Path(__file__).resolve().parent


def generate(src: Path, rows: int, files: int) -> None:
    """Synthetic readings over ``files`` parquet files, written once (a marker names the shape they have)."""
    if (src / f".rows-{rows}-files-{files}").exists():
        return
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    values = np.random.default_rng(11).normal(size=rows)
    for i, ids in enumerate(np.array_split(np.arange(rows), files)):
        pq.write_table(pa.table({"sensor": ids, "v": values[ids]}), src / f"readings-{i:03d}.parquet")
    (src / f".rows-{rows}-files-{files}").touch()


def features(batch: dict[str, Any]) -> dict[str, Any]:
    """A per-call table (built on every call, as a careless UDF does) and per-row work on a 256-wide matrix."""
    table = np.cos(np.outer(np.arange(256), np.arange(256)) / 256.0)  # per call
    x = np.outer(batch["v"], np.ones(256))
    for _ in range(36):  # per row
        x = np.tanh(x @ table / 32.0)
    batch["score"] = x.sum(axis=1)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "readings")
    parser.add_argument("--out", type=Path, default=Path("out") / "features")
    args = parser.parse_args()
    data = args.data.resolve()
    generate(data, args.rows, args.files)
    ds = ray.data.read_parquet(str(data))
    ds.map_batches(features, batch_size=16, batch_format="numpy").write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
