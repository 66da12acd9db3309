"""ETL over parquet files: read -> keep valid orders -> enrich -> write.

The example writes its own input (many small parquet files of synthetic orders) the first time it runs.
Its settings are the ones people often ship: a row-by-row lambda filter, a tiny batch_size and a full CPU
per task for cheap work. ``pipetune run examples/etl_parquet.py`` records it; ``pipetune tune`` fixes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

HERE = Path(__file__).resolve().parent
COUNTRIES = np.array(["de", "fr", "us", "jp", "br", "in", "ng", "au"])


def generate(src: Path, rows: int, files: int) -> None:
    """Synthetic orders, split over ``files`` parquet files; kept between runs."""
    marker = src / f".rows-{rows}-files-{files}"
    if marker.exists():
        return
    src.mkdir(parents=True, exist_ok=True)
    for old in src.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(7)
    per_file = rows // files
    for i in range(files):
        ids = np.arange(i * per_file, (i + 1) * per_file)
        table = pa.table(
            {
                "order_id": ids,
                "country": rng.choice(COUNTRIES, per_file),
                "amount": np.round(rng.normal(60, 40, per_file), 2),
                "quantity": rng.integers(0, 12, per_file),
                "note": [f"order {j} shipped by courier {j % 17} to depot {j % 101}" for j in ids],
            }
        )
        pq.write_table(table, src / f"orders-{i:03d}.parquet")
    marker.touch()


def enrich(batch: pd.DataFrame) -> pd.DataFrame:
    """Derive the columns the reporting job needs: VAT, a risk score and a text fingerprint."""
    vat = batch["country"].map({"de": 0.19, "fr": 0.2, "us": 0.07, "jp": 0.1}).fillna(0.15)
    batch["gross"] = (batch["amount"] * (1 + vat)).round(2)
    noise = np.sin(batch["order_id"].to_numpy()[:, None] * np.arange(1, 48)).sum(axis=1)
    batch["risk"] = np.tanh(batch["amount"].to_numpy() / 100 + noise / 10)
    batch["note_len"] = batch["note"].str.len()
    batch["fingerprint"] = batch["note"].map(lambda s: hash(s) & 0xFFFF)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "orders")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "orders_enriched")
    args = parser.parse_args()
    data, out = args.data.resolve(), args.out.resolve()  # Ray workers do not share the driver's directory
    generate(data, args.rows, args.files)

    ds = ray.data.read_parquet(str(data))
    ds = ds.filter(lambda row: row["amount"] > 0 and row["quantity"] > 0)
    ds = ds.map_batches(enrich, batch_format="pandas", batch_size=64, num_cpus=1)
    ds.write_parquet(str(out))


if __name__ == "__main__":
    main()
