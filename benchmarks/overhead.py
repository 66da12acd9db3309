"""Recording overhead on the bundled examples: paired runs with and without ``pipetune run``.

Both variants run the same script in a fresh driver attached to one shared local Ray (so Ray's start-up is
not part of either), alternating which goes first. The figure is the script's own wall time; the recorder's
parent process (store writes) runs beside it on the same cores, so its cost is included.

    .venv/bin/python benchmarks/overhead.py [--pairs 5] [--only etl]

``--whole`` measures what a user feels instead: ``python S`` against ``pipetune run S`` as whole processes,
each starting its own local Ray, timed from outside, interleaved. It splits the difference into the part
inside the script (the child's own figure against the plain script's) and the part outside it (the CLI's and
the child's start-up, storing and closing the run).

    .venv/bin/python benchmarks/overhead.py --whole [--pairs 3] [--only etl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "etl": ("examples/etl_parquet.py", ["--rows", "200000"]),
    "embed": ("examples/embed_minilm.py", ["--rows", "1000"]),
    "http": ("examples/download_http.py", ["--docs", "300"]),
}


def plain(script: str, args: list[str], env: dict[str, str]) -> float:
    with tempfile.NamedTemporaryFile("r") as out:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "_plain.py"), script, *args]
        subprocess.run(cmd, cwd=ROOT, env={**env, "PIPETUNE_BENCH_OUT": out.name}, check=True, capture_output=True)
        return float(Path(out.name).read_text())


def recorded(script: str, args: list[str], env: dict[str, str], store: Path) -> float:
    import json

    cmd = [sys.executable, "-m", "pipetune", "run", "--json", "--store", str(store), script, "--", *args]
    result = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return float(json.loads(result.stdout)["wall_s"])


def measure(name: str, pairs: int, env: dict[str, str], store: Path) -> dict[str, float]:
    script, args = EXAMPLES[name]
    plain(script, args, env)  # warm-up: the first run after Ray starts pays for worker start-up
    ratios, bare, rec = [], [], []
    for i in range(pairs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        times = {}
        for which in order:
            times[which] = plain(script, args, env) if which == 0 else recorded(script, args, env, store)
        bare.append(times[0])
        rec.append(times[1])
        ratios.append(times[1] / times[0])
    return {
        "plain_s": statistics.median(bare),
        "recorded_s": statistics.median(rec),
        "overhead_pct": (statistics.median(ratios) - 1) * 100,
        "low_pct": (min(ratios) - 1) * 100,
        "high_pct": (max(ratios) - 1) * 100,
        "noise_pct": _spread(bare),
    }


def whole(name: str, pairs: int, env: dict[str, str], store: Path) -> dict[str, float]:
    """Whole processes, each with its own Ray: (wall, time inside the script) for both, pair by pair."""
    import time

    script, args = EXAMPLES[name]
    rows: dict[str, list[float]] = {"plain": [], "plain_in": [], "rec": [], "rec_in": [], "ratio": []}
    for i in range(pairs + 1):  # the first pair warms the disk cache and the interpreter's bytecode
        order = ("plain", "rec") if i % 2 == 0 else ("rec", "plain")
        seen: dict[str, tuple[float, float]] = {}
        for which in order:
            start = time.perf_counter()
            inside = plain(script, args, env) if which == "plain" else recorded(script, args, env, store)
            seen[which] = (time.perf_counter() - start, inside)
        if i == 0:
            continue
        for which in ("plain", "rec"):
            rows[which].append(seen[which][0])
            rows[which + "_in"].append(seen[which][1])
        rows["ratio"].append(seen["rec"][0] / seen["plain"][0])
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "plain_s": med["plain"],
        "recorded_s": med["rec"],
        "overhead_pct": (med["ratio"] - 1) * 100,
        "low_pct": (min(rows["ratio"]) - 1) * 100,
        "high_pct": (max(rows["ratio"]) - 1) * 100,
        "noise_pct": _spread(rows["plain"]),
        "inside_s": med["rec_in"] - med["plain_in"],
        "outside_s": (med["rec"] - med["rec_in"]) - (med["plain"] - med["plain_in"]),
    }


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100 if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", choices=sorted(EXAMPLES), action="append")
    parser.add_argument("--whole", action="store_true", help="python S against pipetune run S, each its own Ray")
    ns = parser.parse_args()
    if ns.whole:
        return _print_whole(ns)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": os.cpu_count(), "include_dashboard": False})
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = {name: measure(name, ns.pairs, env, Path(tmp) / "bench.db") for name in ns.only or EXAMPLES}
    finally:
        cluster.shutdown()
    print(f"recording overhead, median of {ns.pairs} paired runs (plain vs recorded), {os.cpu_count()} cores")
    print(f"{'example':8} {'plain s':>8} {'recorded s':>11} {'overhead':>9} {'pair range':>16} {'plain spread':>13}")
    for name, r in rows.items():
        span = f"{r['low_pct']:+.1f}..{r['high_pct']:+.1f}%"
        print(
            f"{name:8} {r['plain_s']:8.2f} {r['recorded_s']:11.2f} {r['overhead_pct']:+8.1f}% {span:>16} "
            f"{r['noise_pct']:12.1f}%"
        )


def _print_whole(ns: argparse.Namespace) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: whole(name, ns.pairs, env, Path(tmp) / "bench.db") for name in ns.only or EXAMPLES}
    print(f"whole-process cost of recording, median of {ns.pairs} interleaved pairs, each run its own Ray")
    print(f"{'example':8} {'python s':>9} {'pipetune s':>11} {'overhead':>9} {'pair range':>16} "
          f"{'in script':>10} {'outside':>8}")  # fmt: skip
    for name, r in rows.items():
        span = f"{r['low_pct']:+.1f}..{r['high_pct']:+.1f}%"
        print(f"{name:8} {r['plain_s']:9.2f} {r['recorded_s']:11.2f} {r['overhead_pct']:+8.1f}% {span:>16} "
              f"{r['inside_s']:+9.2f}s {r['outside_s']:+7.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
