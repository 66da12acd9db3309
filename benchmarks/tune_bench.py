"""The tuning benchmark: on each bundled example, on one machine, these variants side by side:

- shipped: the example as it is;                 - defaults: knob arguments removed (Ray Data's defaults);
- static: the guide's matrix by operation type;  - oracle: the best point of a coarse grid (benchmarks/oracle.json);
- tuned: what `pipetune tune --budget 3` chose, run as a user runs it (its own Ray, warm-up, trials), its whole
  tuning timed end to end;
- TPE: Optuna's TPE sampler over the same grid, replayed on the grid's measured table (10 seeds);
- placeable, where the oracle's settings ask for actors no node has room for (settings pipetune never
  proposes: such a pool can hang): the grid's fastest settings whose every actor finds a node.

The five configurations are then run ``--repeats`` times each, interleaved (a new seeded order each round), each
run on a local Ray of its own, as a user's ``python script.py`` runs; with ``--shared-ray``, all on one local Ray
started for the example and kept warm, as `pipetune tune` runs its trials and as the grid was measured. The two
can rank configurations differently (workers already started, or not), which is why both exist.

    .venv/bin/python benchmarks/tune_bench.py [--only etl] [--budget 3] [--seeds 10] [--repeats 3]

``--cost FILE...`` prints, from rows saved with ``--save``, where each study's time went (``cost``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _examples import CLUSTERS, EXAMPLES, ROOT, SAME_GRID, SharedRay, example_env, idle_check, run_example
from _grid import GRIDS, key, points, sets

from pipetune.diagnose import Facts
from pipetune.model import Run
from pipetune.plan.static import static_settings
from pipetune.settings import Settings
from pipetune.store import open_store
from pipetune.tune.feasible import unschedulable
from pipetune.tune.patch import without_knobs
from pipetune.tune.policy import ray_defaults

CACHE = ROOT / "benchmarks" / "oracle.json"


def flat(config: dict[str, Any]) -> dict[str, Any]:
    """--config form -> {"INDEX.KNOB": value}."""
    return {f"{s}.{k}": v for s, knobs in config.get("stages", {}).items() for k, v in knobs.items()}


def defaults_settings(run: Run) -> dict[str, Any]:
    """Ray Data's defaults as ``--set`` knobs, read from the shipped run as the tuner reads them (a task's
    ``num_cpus=1`` is Ray's default already, so it is not among them): tuned settings equal to these are the
    "defaults" variant under another name."""
    proposal = ray_defaults(Facts.of(run))
    return flat(proposal.settings.to_config()) if proposal is not None else {}


@contextlib.contextmanager
def defaults_script(name: str) -> Iterator[str]:
    """A copy of the example with every knob argument removed (Ray Data's defaults), beside the original (same
    paths and imports), for as long as the comparison runs."""
    script = ROOT / EXAMPLES[name][0]
    copy = script.with_name(f".bench_defaults_{script.name}")
    copy.write_text(without_knobs(script.read_text()))
    try:
        yield str(copy.relative_to(ROOT))
    finally:
        copy.unlink()


def tpe(name: str, oracle: dict[str, Any], seeds: int, budget: int) -> dict[str, Any]:
    """Optuna TPE over the grid (``search``)."""
    import optuna

    return search(name, oracle, seeds, budget, lambda seed: optuna.samplers.TPESampler(seed=seed))


def random_search(name: str, oracle: dict[str, Any], seeds: int, budget: int) -> dict[str, Any]:
    """Random search over the grid (``search``; Optuna's RandomSampler: points drawn with replacement)."""
    import optuna

    return search(name, oracle, seeds, budget, lambda seed: optuna.samplers.RandomSampler(seed=seed))


def search(name: str, oracle: dict[str, Any], seeds: int, budget: int, sampler: Any) -> dict[str, Any]:
    """A black-box search over the grid, one study per seed, its objective the grid's measured time (a killed
    run costs its time limit). Every point it asks for is a trial, a point asked for again included: a search
    that repeats itself pays for it, as a user running it would."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table, best = oracle["table"], oracle["best_s"]
    name = SAME_GRID.get(name, name)
    grid = GRIDS[name]
    to_5pct, at_budget, hung = [], [], []
    for seed in range(seeds):
        study = optuna.create_study(sampler=sampler(seed))
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


def tune(name: str, budget: int, store: Path, cluster: SharedRay | None) -> dict[str, Any]:
    """The whole ``pipetune tune``, timed: on a Ray it starts, or attached to the example's ``cluster``."""
    script, args = EXAMPLES[name]
    env = example_env(name)
    with tempfile.TemporaryDirectory() as out:
        cmd = [*_tune_cmd(store, cluster), "--budget", str(budget), script, "--", *args, "--out", f"{out}/out"]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        view = json.loads(done.stdout)
        confirmed = confirm(view["study"], store, cluster, env)
    trials = [t for t in view["trials"] if t["role"] in ("trial", "repeat")]
    return {
        "view": view,
        "wall_s": wall,
        "confirmed": confirmed,
        "trials": len(trials),
        "runs": [
            (
                t["role"],
                t["change"],
                t["wall_s"],
                t["measured_s"],
                t["probe"],
                t["status"],
                t["verdict"],
                flat(t["config"]),
            )
            for t in view["trials"]
        ],
        "reason": view["reason"],
        "failed": sum(t["status"] != "succeeded" and not t["probe"] and "time box" not in t["verdict"] for t in trials),
    }


class Variant(NamedTuple):
    point: dict[str, Any]  # --set knobs
    script: str | None = None  # another script than the example's (its defaults copy)


def side_by_side(
    name: str, variants: dict[str, Variant], ray: SharedRay | None, store: Path, limit: float, orders: list[list[str]]
) -> dict[str, list[float]]:
    """Every variant once a round, in each round's order (``rounds``), on ``ray`` or (None) each run on a local
    Ray of its own: a run past ``limit`` counts as inf. A rotation would keep each variant's predecessor, and a
    run can slow the one after it (on a shared Ray, its actors and workers are still being torn down), which
    would then weigh on one variant every round."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for order in orders:
        for label in order:
            v = variants[label]
            r = run_example(name, v.point, ray, store, limit, script=v.script)
            times[label].append(r["wall_s"] if r["status"] == "succeeded" else float("inf"))
    return times


def rounds(labels: list[str], repeats: int, seed: int = 0, tries: int = 1000) -> list[list[str]]:
    """``repeats`` orders of ``labels``, shuffles of a generator seeded once (a benchmark reruns the same way),
    each drawn again until no variant follows the one it followed in an earlier round (while ``tries`` allow:
    with more rounds than that permits, a repeat is kept)."""
    rng, seen, out = random.Random(seed), set[tuple[str, str]](), list[list[str]]()
    for _ in range(repeats):
        for _ in range(tries):
            order = rng.sample(labels, len(labels))
            pairs = set(itertools.pairwise(order))
            if not pairs & seen:
                break
        seen |= pairs
        out.append(order)
    return out


def bench(name: str, ns: argparse.Namespace, store: Path, oracle: dict[str, Any]) -> dict[str, Any]:
    """The example's row; an example of ``CLUSTERS`` runs everything on one cluster of its shape started for it."""
    with SharedRay(CLUSTERS[name]) if name in CLUSTERS else contextlib.nullcontext() as cluster:
        return _bench(name, ns, store, oracle, cluster)


def _bench(
    name: str, ns: argparse.Namespace, store: Path, oracle: dict[str, Any], cluster: SharedRay | None
) -> dict[str, Any]:
    run_example(name, {}, cluster, store, 600)  # warm-up: the OS's caches, not compared
    shipped = run_example(name, {}, cluster, store, 600)  # the static table reads this run
    limit = 3 * shipped["wall_s"]
    shipped_run = open_store(store).load(shipped["id"])
    static = flat(static_settings(shipped_run))
    tuned = tune(name, ns.budget, store, cluster)
    row: dict[str, Any] = {
        "static_settings": static,
        "oracle_settings": oracle["best"],
        "shared_ray": ns.shared_ray or cluster is not None,
    }
    row["tune"] = {k: v for k, v in tuned.items() if k != "view"}
    row["tuned_settings"] = flat(tuned["view"]["best"])
    row["defaults_settings"] = defaults_settings(shipped_run)
    row["bound"] = tuned["view"]["bound"]
    placeable = placeable_oracle(SAME_GRID.get(name, name), shipped_run, oracle)
    if placeable is not None:
        row["placeable"] = {"settings": placeable[0], "oracle_unplaced": placeable[1]}
    with defaults_script(name) as plain:
        variants = {"shipped": Variant({}), "defaults": Variant({}, plain), "static": Variant(static),
                    "oracle": Variant(oracle["best"]), "tuned": Variant(row["tuned_settings"])}  # fmt: skip
        if placeable is not None:
            variants["placeable"] = Variant(placeable[0])
        orders = rounds(list(variants), ns.repeats)
        if cluster is not None:
            times = side_by_side(name, variants, cluster, store, limit, orders)
        elif ns.shared_ray:
            with SharedRay() as ray:
                times = side_by_side(name, variants, ray, store, limit, orders)
        else:
            times = side_by_side(name, variants, None, store, limit, orders)
    row.update({label: statistics.median(times[label]) for label in LABELS})
    row["side_by_side"] = times
    row["orders"] = orders
    row["tpe"] = tpe(name, oracle, ns.seeds, ns.budget)
    row["random"] = random_search(name, oracle, ns.seeds, ns.budget)
    return row


def placeable_oracle(grid: str, shipped: Run, oracle: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """Where the oracle's settings ask for actors that no node has room for (``feasible.unschedulable`` on the
    shipped run's nodes: settings pipetune never proposes, since such a pool can hang), the fastest point of the
    ``grid`` whose every actor finds a node, by its median on the grid's table as the oracle was chosen, and why
    the oracle's settings do not; None where they can be placed."""
    why = unschedulable(shipped, Settings.from_args(sets(oracle["best"])))
    if why is None:
        return None
    table = oracle["table"]
    measured = sorted((p for p in points(grid) if table.get(key(p))), key=lambda p: _median_s(table[key(p)]))
    placed = (p for p in measured if unschedulable(shipped, Settings.from_args(sets(p))) is None)
    return next(((p, why) for p in placed), None)


def _median_s(results: list[dict[str, Any]]) -> float:
    return statistics.median(r["wall_s"] for r in results)


def _placeable_lines(rows: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Per row whose oracle cannot place its actors: the best grid settings that can, run side by side."""
    for name, r in rows.items():
        if "placeable" not in r["side_by_side"]:
            continue
        p, placed_s = r["placeable"], statistics.median(r["side_by_side"]["placeable"])
        same = sets(r["tuned_settings"]) == sets(p["settings"])
        pct = "same settings" if same else f"tuned at {placed_s / r['tuned'] * 100:.0f}% of their throughput"
        yield (f"{name}: the oracle's settings leave actors unplaced ({p['oracle_unplaced']}); the grid's fastest "
               f"that place all ({key(p['settings'])}) ran "
               f"{_spread(r['side_by_side']['placeable'])} side by side: {pct}")  # fmt: skip


def table(rows: dict[str, dict[str, Any]], budget: int) -> None:
    print(f"tuning benchmark, {os.cpu_count()} cores, budget {budget} trial runs after the baseline; times in s")
    head = ("example", *LABELS, "speedup", "% oracle", "vs defaults", "trials", "probes", "->5%", "failed",
            "tune wall", "x shipped", "TPE ->5%", f"TPE %@{budget}", "rand ->5%", f"rand %@{budget}", "bound gap",
            "confirm")  # fmt: skip
    print(" ".join(f"{h:>9}" for h in head))
    for name, r in rows.items():
        print(" ".join(f"{c:>9}" for c in (name, *_cells(r))))
    print(
        "each variant's median of its side-by-side runs (interleaved; each on a Ray of its own, or with "
        "--shared-ray all on one warm Ray), +-half the "
        "spread in %; speedup: shipped / tuned; % oracle: the oracle's time / tuned time (throughput ratio), "
        "'same settings' where they are; vs defaults: tuned against Ray Data's defaults ('same settings' where "
        "they are), 'within noise' where the runs' ranges overlap; trials: pipetune's trial runs after the "
        "baseline; probes: how many of the baseline and the trials were stopped "
        "early (their time predicted); ->5%: the first trial whose speed-up over the study's baseline came within 5% "
        "of the oracle's over the shipped settings; tune "
        "wall: the whole `pipetune tune` (Ray start, warm-up, baseline, trials); TPE ->5%: median trials over the "
        f"seeds; TPE %@{budget}: TPE's best after {budget} trials as % of the oracle's throughput, on the grid's "
        "table (measured on one shared Ray); rand: the same for random search (points drawn with replacement, "
        "a repeat counted as a trial); bound gap: the tuned run above its hardware bound; confirm: the "
        "winner's figure in the study against its full run after the study, on a Ray of the study's kind "
        "(`tune --resume S --confirm`, not in tune wall), * where that figure was a probe's prediction"
    )
    for line in _placeable_lines(rows):
        print(line)
    for name, r in rows.items():
        if r.get("machine"):
            print(f"{name}: {r['machine']}")
        if r.get("bound"):
            print(f"{name}: the tuned run's {r['bound']['text']}")


LABELS = ("shipped", "defaults", "static", "oracle", "tuned")


def confirm(study: str, store: Path, cluster: SharedRay | None, env: dict[str, str]) -> dict[str, Any] | None:
    """The study's best settings once in full, after the timed tuning and outside it (``tune --resume S
    --confirm``, on a Ray of the study's kind): what the winner's figure in the study said against what its full
    run measures. None where the confirming run printed nothing to read."""
    cmd = [*_tune_cmd(store, cluster), "--resume", study, "--confirm"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        confirmed: dict[str, Any] | None = json.loads(done.stdout).get("confirmed")
    except json.JSONDecodeError:
        return None
    return confirmed


def _tune_cmd(store: Path, cluster: SharedRay | None) -> list[str]:
    """``pipetune tune --json`` on the benchmark's store, attached to the example's cluster where it has one."""
    cmd = [sys.executable, "-m", "pipetune", "tune", "--json", "--store", str(store)]
    return cmd + (["--address", cluster.cluster.address] if cluster is not None else [])


COST_PARTS = ("outside", "warm-up", "baseline", "in full", "at box", "probes")


def cost(files: list[Path]) -> None:
    """Where each saved study's time went, as multiples of the row's shipped run (side by side): outside the
    runs (the CLI, Ray's start and stop, each driver's start, the decisions), the warm-up, the baseline, the
    trials (repeats too) that ran in full, those stopped at their time box, and those stopped as probes."""
    print("where the tuning time went, x one shipped run; " + ", ".join(COST_PARTS) + ", total")
    shares = []
    for path in files:
        for name, r in json.loads(path.read_text()).items():
            parts = (*_cost_parts(r["tune"], r["shipped"]), r["tune"]["wall_s"] / r["shipped"])
            shares.append(parts)
            cells = " ".join(f"{v:9.2f}" for v in parts)
            print(f"{path.stem[:34]:>34} {name:>12} {cells}")
    if shares:
        medians = " ".join(f"{statistics.median(col):9.2f}" for col in zip(*shares, strict=True))
        print(f"{'median of ' + str(len(shares)) + ' studies':>47} {medians}")


def _cost_parts(tune: dict[str, Any], shipped: float) -> tuple[float, ...]:
    """``COST_PARTS`` of one study, each over ``shipped``."""
    seconds = dict.fromkeys(COST_PARTS, 0.0)
    for role, _, wall, _, probe, status, *_ in tune["runs"]:
        trial = "probes" if probe else "at box" if status == "stopped" else "in full"
        seconds[role if role in ("warm-up", "baseline") else trial] += wall or 0.0
    seconds["outside"] = tune["wall_s"] - sum(seconds.values())
    return tuple(seconds[p] / shipped for p in COST_PARTS)


def _confirmed(r: dict[str, Any]) -> str:
    """The winner's figure in the study against its full run (``confirm``), ``*`` where the figure was a probe's."""
    c = r["tune"].get("confirmed")
    if not c or not c.get("predicted_s") or not c.get("measured_s"):
        return "-"
    return f"{(c['predicted_s'] - c['measured_s']) / c['measured_s'] * 100:+.0f}%" + ("*" if c.get("probe") else "")


def _cells(r: dict[str, Any]) -> list[str]:
    gap = r["bound"]["gap_pct"] if r["bound"] and r["bound"]["gap_pct"] is not None else None
    same = r["tuned_settings"] == r["oracle_settings"]
    return [
        *(_spread(r["side_by_side"][label]) for label in LABELS),
        f"{r['shipped'] / r['tuned']:.2f}x",
        "same settings" if same else f"{r['oracle'] / r['tuned'] * 100:.0f}%",
        "same settings" if _at_defaults(r) else _versus(r),
        str(r["tune"]["trials"]),
        str(sum(bool(probe) for role, _, _, _, probe, *_ in r["tune"]["runs"] if role != "warm-up")),  # baseline too
        str(_trials_to_5pct(r) or "-"),
        str(r["tune"]["failed"]),
        f"{r['tune']['wall_s']:.0f}",
        f"{r['tune']['wall_s'] / r['shipped']:.1f}x",
        *_search_cells(r.get("tpe")),
        *_search_cells(r.get("random")),
        "unknown" if gap is None else f"{gap:+.0f}%",
        _confirmed(r),
    ]


def _search_cells(found: dict[str, Any] | None) -> list[str]:
    """A black-box search's median trials to come within 5% of the oracle, and its best after the budget."""
    if not found:
        return ["-", "-"]  # a row saved before this search was run
    return [f"{found['trials_to_5pct']:g}", f"{found['pct_of_oracle']:.0f}%"]


def _at_defaults(r: dict[str, Any]) -> bool:
    """Whether the tuned settings are Ray Data's defaults: every knob they set is back at its default, and so is
    every knob the script sets (a knob the script leaves alone, at its default already, may be named or not)."""
    tuned = r["tuned_settings"]
    knobs = r.get("defaults_settings") or {}
    return all(v == "default" for v in tuned.values()) and all(tuned.get(k) == "default" for k in knobs)


def _trials_to_5pct(r: dict[str, Any]) -> int | None:
    """The first trial after the baseline that ran the oracle's settings, or whose speed-up over the study's
    baseline (both measured by the tuner, a probe's figure predicted) came within 5% of the oracle's over the
    shipped settings side by side: ratios, so that neither footing (the tuner's one Ray, the side-by-side's) is
    held against the other. The oracle's own point counts whatever its run measured, as it does for TPE and
    random search, which are scored on the grid's table. None if none (rows saved before each run's settings
    were: by the speed-up alone)."""
    runs = r["tune"]["runs"]
    base = next((measured or wall for role, _, wall, measured, *_ in runs if role == "baseline"), None)  # a probe's
    # figure is what it predicts, not the time it ran before it was stopped
    trials = [t for t in runs if t[0] in ("trial", "repeat")]
    figures = [measured or wall if status == "succeeded" or probe else None
               for _, _, wall, measured, probe, status, *_ in trials]  # fmt: skip
    wanted = r["shipped"] / r["oracle"] / 1.05
    oracle = [len(t) > 7 and t[7] == r["oracle_settings"] for t in trials]
    hits = [n for n, s in enumerate(figures, 1) if oracle[n - 1] or (base and s and base / s >= wanted)]
    return hits[0] if hits else None


def _spread(times: list[float]) -> str:
    mid = statistics.median(times)
    if math.isinf(mid):
        return "timed out"
    half = (max(times) - min(times)) / 2 / mid * 100
    return f"{mid:.1f}+-{half:.0f}%" if not math.isinf(half) else f"{mid:.1f}+-inf"


def _versus(r: dict[str, Any]) -> str:
    tuned, defaults = r["side_by_side"]["tuned"], r["side_by_side"]["defaults"]
    if max(tuned) < min(defaults):
        return "faster"
    if min(tuned) > max(defaults):
        return "slower"
    return "within noise"


def searches(oracle: dict[str, Any], names: list[str], seeds: int, budget: int) -> None:
    """TPE and random search replayed on each grid's measured table: no run, only the grids' figures."""
    print(f"black-box searches on the grids of benchmarks/oracle.json, {seeds} seeds, budget {budget}")
    print(
        " ".join(f"{h:>12}" for h in ("grid", "points", "TPE ->5%", f"TPE %@{budget}", "rand ->5%", f"rand %@{budget}"))
    )
    for name in names:
        found = oracle[SAME_GRID.get(name, name)]
        cells = [
            *_search_cells(tpe(name, found, seeds, budget)),
            *_search_cells(random_search(name, found, seeds, budget)),
        ]
        print(" ".join(f"{c:>12}" for c in (name, str(len(points(SAME_GRID.get(name, name)))), *cells)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(EXAMPLES), action="append")
    parser.add_argument("--budget", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, interleaved")
    parser.add_argument("--shared-ray", action="store_true", help="the side-by-side runs on one warm local Ray")
    parser.add_argument("--save", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--store", type=Path, help="keep the studies' runs in this store (default: scratch)")
    parser.add_argument("--table", type=Path, help="print the table of rows saved by --save, run nothing")
    parser.add_argument("--searches", action="store_true", help="TPE and random search on the grids, run nothing")
    parser.add_argument("--cost", type=Path, nargs="+", help="where the tuning time went in rows saved by --save")
    ns = parser.parse_args()
    if ns.cost:
        cost(ns.cost)
        return
    if ns.table:
        table(json.loads(ns.table.read_text()), ns.budget)
        return
    oracle = json.loads(CACHE.read_text())["examples"]
    if ns.searches:
        searches(oracle, ns.only or sorted(oracle), ns.seeds, ns.budget)
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.only or [n for n in EXAMPLES if SAME_GRID.get(n, n) in oracle]:  # those with a measured grid
            machine = idle_check()
            found = oracle[SAME_GRID.get(name, name)]
            rows[name] = {**bench(name, ns, ns.store or Path(tmp) / "bench.db", found), "machine": machine}
            print(f"{name}: {json.dumps(rows[name], default=str)}", file=sys.stderr, flush=True)
    if ns.save:
        ns.save.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    table(rows, ns.budget)


if __name__ == "__main__":
    main()
