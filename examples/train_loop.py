"""Training ingest: a small CPU training loop fed by a Ray Data pipeline through ``iter_torch_batches``.

The pipeline featurises synthetic sensor windows (a spectrum per row, then a random projection) and the loop
trains a two-layer MLP on them for a few steps per batch. As shipped, the featuriser runs on batches of 8
rows: every call pays a fixed cost (it builds its projection basis), so the loop spends most of its time
waiting for data. ``pipetune doctor examples/train_loop.py`` says so ("data-bound: the loop waited ...");
``pipetune tune examples/train_loop.py --budget 3`` finds settings that feed it. The loop's own batch size
(256) is a training hyperparameter: tuning never changes it unless ``--allow iterator.batch_size``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
import torch

FEATURES = 64
WINDOW = 128


def featurize(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Spectrum of each row's window, projected onto an orthonormal basis built for the call."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((WINDOW // 2 + 1, FEATURES)))  # the per-call fixed cost
    ids = batch["id"].astype(np.float64)
    t = np.arange(WINDOW)
    windows = np.sin(np.outer(ids % 97 + 1, t) / 7.0) + 0.1 * np.cos(np.outer(ids, t))
    spectrum = np.abs(np.fft.rfft(windows, axis=1))
    return {
        "x": (spectrum @ basis).astype(np.float32),
        "y": (ids % 10).astype(np.int64),
    }


def train(ds: ray.data.Dataset, steps_per_batch: int) -> tuple[int, float]:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the loop's one core; the pipeline has the rest
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rows, loss = 0, torch.tensor(0.0)
    for batch in ds.iter_torch_batches(batch_size=256):
        for _ in range(steps_per_batch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])
            loss.backward()
            opt.step()
        rows += len(batch["y"])
    return rows, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=80_000)
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per batch")
    parser.add_argument("--out", help="ignored: the loop writes nothing (accepted like the other examples)")
    args = parser.parse_args()
    ds = ray.data.range(args.rows, override_num_blocks=16).map_batches(featurize, batch_size=8)
    started = time.perf_counter()
    rows, loss = train(ds, args.steps)
    print(f"trained on {rows} rows in {time.perf_counter() - started:.1f} s, last loss {loss:.3f}")


if __name__ == "__main__":
    main()
