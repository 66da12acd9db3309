"""The grid-search oracle: run every point of each example's coarse grid (``_grid.py``) and cache the result.

Every point runs once under ``pipetune run`` on one local Ray started for the example (of its cluster's shape,
``CLUSTERS``), after one warm-up run, with a time limit so configurations that hang (an actor pool that leaves
the upstream tasks no CPU) cost a bounded time; the three fastest points then run twice more and the oracle is
the best median. The table of every point is kept too: the tuning benchmark replays Optuna's TPE over it.

    .venv/bin/python benchmarks/oracle.py [--only etl] [--limit-s 120]   # writes benchmarks/oracle.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _examples import CLUSTERS, EXAMPLES, SharedRay, run_example
from _grid import GRIDS, key, points

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / "oracle.json"


def grid(name: str, ray: SharedRay, limit_s: float, store: Path) -> dict[str, Any]:
    run_example(name, {}, ray, store, limit_s)  # warm-up, not compared
    table: dict[str, list[dict[str, Any]]] = {}
    for point in points(name):
        result = run_example(name, point, ray, store, limit_s)
        table[key(point)] = [result]
        print(f"  {name} {key(point):60} {result['status']:10} {result['wall_s']:7.2f} s", flush=True)
    ranked = sorted((p for p in points(name) if _ok(table[key(p)])), key=lambda p: _median(table[key(p)]))
    for point in ranked[:3]:
        for _ in range(2):
            table[key(point)].append(run_example(name, point, ray, store, limit_s))
    best = min(ranked[:3], key=lambda p: _median(table[key(p)]))
    return {"best": best, "best_key": key(best), "best_s": _median(table[key(best)]), "table": table}


def _ok(results: list[dict[str, Any]]) -> bool:
    return all(r["status"] == "succeeded" for r in results)


def _median(results: list[dict[str, Any]]) -> float:
    return statistics.median(r["wall_s"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(EXAMPLES), action="append")
    parser.add_argument("--limit-s", type=float, default=120.0)
    ns = parser.parse_args()
    cached: dict[str, Any] = json.loads(CACHE.read_text()) if CACHE.exists() else {"examples": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.only or [n for n in EXAMPLES if n in GRIDS]:
            started = time.perf_counter()
            with SharedRay(CLUSTERS.get(name)) as ray:  # a Ray per example, of the example's shape
                cached["examples"][name] = grid(name, ray, ns.limit_s, Path(tmp) / "oracle.db")
            cached["examples"][name]["grid_wall_s"] = time.perf_counter() - started
            cached["examples"][name]["measured"] = f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores"
    cached["command"] = "benchmarks/oracle.py " + " ".join(sys.argv[1:])
    cached["machine"] = f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    CACHE.write_text(json.dumps(cached, indent=1, sort_keys=True) + "\n")
    for name, entry in cached["examples"].items():
        print(f"{name}: oracle {entry['best_key']} {entry['best_s']:.2f} s")


if __name__ == "__main__":
    main()
