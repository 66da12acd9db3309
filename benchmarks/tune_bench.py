"""The tuning benchmark: on each bundled example, side by side on one machine and one shared Ray:

- shipped: the example as it is;                 - defaults: knob arguments removed (Ray Data's defaults);
- static: the guide's matrix by operation type;  - oracle: the best point of a coarse grid (benchmarks/oracle.json);
- TPE: Optuna's TPE sampler over the same grid, replayed on the grid's measured table (5 seeds);
- pipetune: `pipetune tune --budget 3`, run as a user runs it (its own Ray, warm-up, trials), timed end to end.

The oracle's and pipetune's settings are re-run side by side (twice each, alternating) for the comparison.

    .venv/bin/python benchmarks/tune_bench.py [--only etl] [--budget 3] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _examples import EXAMPLES, ROOT, SharedRay, run_example
from _grid import GRIDS, key, points

from pipetune.plan.static import static_settings
from pipetune.store import open_store
from pipetune.tune.patch import without_knobs

CACHE = ROOT / "benchmarks" / "oracle.json"


def flat(config: dict[str, Any]) -> dict[str, Any]:
    """--config form -> {"INDEX.KNOB": value}."""
    return {f"{s}.{k}": v for s, knobs in config.get("stages", {}).items() for k, v in knobs.items()}


def defaults_run(name: str, ray: SharedRay, store: Path, limit: float) -> dict[str, Any]:
    script = ROOT / EXAMPLES[name][0]
    copy = script.with_name(f".bench_defaults_{script.name}")  # beside the original: same paths and imports
    copy.write_text(without_knobs(script.read_text()))
    try:
        return run_example(name, {}, ray, store, limit, script=str(copy.relative_to(ROOT)))
    finally:
        copy.unlink()


def tpe(name: str, oracle: dict[str, Any], seeds: int, budget: int) -> dict[str, Any]:
    """Optuna TPE over the grid, its objective the grid's measured time (a killed run costs its time limit)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table, best = oracle["table"], oracle["best_s"]
    grid = GRIDS[name]
    to_5pct, at_budget, hung = [], [], []
    for seed in range(seeds):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        found, hangs = None, 0
        for n in range(1, 4 * len(points(name)) + 1):
            trial = study.ask()
            point = {
                k: v for k, v in ((k, trial.suggest_categorical(k, vs)) for k, vs in grid.items()) if v is not None
            }
            results = table[key(point)]
            wall = statistics.median(r["wall_s"] for r in results)
            hangs += results[0]["status"] != "succeeded"
            study.tell(trial, wall)
            if n == budget:
                at_budget.append(best / study.best_value * 100)
                hung.append(hangs)
            if found is None and study.best_value <= best * 1.05:
                found = n
            if found is not None and n >= budget:
                break
        to_5pct.append(found or 4 * len(points(name)))
    return {
        "trials_to_5pct": statistics.median(to_5pct),
        "pct_of_oracle": statistics.median(at_budget),
        "hung_in_budget": statistics.median(hung),
        "per_seed": to_5pct,
    }


def tune(name: str, budget: int, store: Path, oracle_s: float) -> dict[str, Any]:
    script, args = EXAMPLES[name]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "pipetune", "tune", "--json", "--store", str(store), "--budget", str(budget)]
        cmd += [script, "--", *args, "--out", str(Path(out) / "out")]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    view = json.loads(done.stdout)
    trials = [t for t in view["trials"] if t["role"] in ("trial", "repeat")]
    measured = [(t["measured_s"] or t["wall_s"]) if t["status"] == "succeeded" or t["probe"] else None for t in trials]
    hits = [n for n, s in enumerate(measured, 1) if s is not None and s <= 1.05 * oracle_s]  # a probe: predicted
    return {
        "view": view,
        "wall_s": wall,
        "trials": len(trials),
        "trials_to_5pct": hits[0] if hits else None,
        "runs": [
            (t["role"], t["change"], t["wall_s"], t["measured_s"], t["probe"], t["status"], t["verdict"])
            for t in view["trials"]
        ],
        "reason": view["reason"],
        "failed": sum(t["status"] != "succeeded" and not t["probe"] and "time box" not in t["verdict"] for t in trials),
        "probes": sum(bool(t["probe"]) for t in trials),
    }


def side_by_side(
    name: str, configs: dict[str, dict[str, Any]], ray: SharedRay, store: Path, limit: float, repeats: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in configs}
    for i in range(repeats):
        order = list(configs) if i % 2 == 0 else list(reversed(configs))
        for label in order:
            r = run_example(name, configs[label], ray, store, limit)
            times[label].append(r["wall_s"] if r["status"] == "succeeded" else float("inf"))
    return times


def bench(name: str, ns: argparse.Namespace, ray: SharedRay, store: Path, oracle: dict[str, Any]) -> dict[str, Any]:
    run_example(name, {}, ray, store, 600)  # warm-up
    shipped = run_example(name, {}, ray, store, 600)
    limit = 3 * shipped["wall_s"]
    static = static_settings(open_store(store).load(shipped["id"]))
    row: dict[str, Any] = {"shipped": shipped["wall_s"]}
    row["defaults"] = _time(defaults_run(name, ray, store, limit))
    row["static"] = _time(run_example(name, flat(static), ray, store, limit))
    row["static_settings"] = flat(static)
    tuned = tune(name, ns.budget, store, oracle["best_s"])
    row["tune"] = {k: v for k, v in tuned.items() if k != "view"}
    row["tuned_settings"] = flat(tuned["view"]["best"])
    row["bound"] = tuned["view"]["bound"]
    times = side_by_side(name, {"oracle": oracle["best"], "tuned": row["tuned_settings"]}, ray, store, limit, 2)
    row["oracle"], row["tuned"] = statistics.median(times["oracle"]), statistics.median(times["tuned"])
    row["side_by_side"] = times
    row["tpe"] = tpe(name, oracle, ns.seeds, ns.budget)
    return row


def _time(result: dict[str, Any]) -> float | str:
    return result["wall_s"] if result["status"] == "succeeded" else f"{result['status']} at {result['wall_s']:.0f}s"


def table(rows: dict[str, dict[str, Any]], budget: int) -> None:
    print(f"tuning benchmark, {os.cpu_count()} cores, budget {budget} trial runs after the baseline; times in s")
    head = (
        "example",
        "shipped",
        "defaults",
        "static",
        "oracle",
        "tuned",
        "speedup",
        "% oracle",
        "trials",
        "probes",
        "->5%",
        "failed",
        "tune wall",
        "x shipped",
        "TPE ->5%",
        f"TPE %@{budget}",
        "bound gap",
    )
    print(" ".join(f"{h:>9}" for h in head))
    for name, r in rows.items():
        gap = r["bound"]["gap_pct"] if r["bound"] and r["bound"]["gap_pct"] is not None else None
        cells = (
            name,
            _fmt(r["shipped"]),
            _fmt(r["defaults"]),
            _fmt(r["static"]),
            _fmt(r["oracle"]),
            _fmt(r["tuned"]),
            f"{r['shipped'] / r['tuned']:.2f}x",
            f"{r['oracle'] / r['tuned'] * 100:.0f}%",
            str(r["tune"]["trials"]),
            str(r["tune"].get("probes", 0)),
            str(r["tune"].get("trials_to_5pct") or "-"),
            str(r["tune"]["failed"]),
            f"{r['tune']['wall_s']:.0f}",
            f"{r['tune']['wall_s'] / r['shipped']:.1f}x",
            f"{r['tpe']['trials_to_5pct']:g}",
            f"{r['tpe']['pct_of_oracle']:.0f}%",
            "unknown" if gap is None else f"{gap:+.0f}%",
        )
        print(" ".join(f"{c:>9}" for c in cells))
    print(
        "speedup: shipped / tuned; % oracle: the oracle's time / tuned time (throughput ratio); trials: pipetune's "
        "trial runs after the baseline; probes: how many of them were stopped early (their time predicted); "
        "->5%: the trial that first came within 5% of the oracle; tune wall: the "
        "whole `pipetune tune` (Ray start, warm-up, baseline, trials); TPE ->5%: median trials over the seeds; "
        f"TPE %@{budget}: TPE's best after {budget} trials as % of the oracle's throughput; bound gap: the tuned "
        "run above its hardware bound"
    )


def _fmt(value: float | str) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(EXAMPLES), action="append")
    parser.add_argument("--budget", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--save", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--table", type=Path, help="print the table of rows saved by --save, run nothing")
    ns = parser.parse_args()
    if ns.table:
        table(json.loads(ns.table.read_text()), ns.budget)
        return
    oracle = json.loads(CACHE.read_text())["examples"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, SharedRay() as ray:
        for name in ns.only or [n for n in EXAMPLES if n in oracle]:  # every example with a measured grid
            rows[name] = bench(name, ns, ray, Path(tmp) / "bench.db", oracle[name])
            print(f"{name}: {json.dumps(rows[name], default=str)}", file=sys.stderr, flush=True)
    if ns.save:
        ns.save.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    table(rows, ns.budget)


if __name__ == "__main__":
    main()
