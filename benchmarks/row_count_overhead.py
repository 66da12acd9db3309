"""What counting a per-row ``map`` inside its tasks costs (``record.in_task``): the same trivial ``map`` over
``--rows`` rows with its function as written and as the recorder wraps it, in interleaved pairs on one local
Ray, the materialised dataset's wall time each. A trivial function is the worst case: any real work per row
makes the count a smaller share.

    .venv/bin/python benchmarks/row_count_overhead.py [--rows 2000000] [--pairs 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import ray

from pipetune.record import in_task


def plus_one(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"] + 1}


def timed(fn: Callable[[dict[str, Any]], dict[str, Any]], rows: int) -> float:
    began = time.perf_counter()
    ray.data.range(rows, override_num_blocks=20).map(fn).materialize()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    counted = in_task.counting(plus_one, 1, "plus_one", per_row=True)
    timed(plus_one, args.rows // 10)  # workers started and warm before the first timed pair
    runs: dict[str, list[float]] = {"as written": [], "counted": []}
    for i in range(args.pairs):
        pair = [("as written", plus_one), ("counted", counted)]
        for name, fn in pair if i % 2 == 0 else pair[::-1]:  # alternate which goes first
            runs[name].append(timed(fn, args.rows))
    for name, seconds in runs.items():
        print(f"{name:>10}: median {statistics.median(seconds):.2f} s, {min(seconds):.2f}-{max(seconds):.2f} s")


if __name__ == "__main__":
    main()
