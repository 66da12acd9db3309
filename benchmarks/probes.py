"""Do probes rank configurations as full runs do, and how far is a probe's predicted full-run time off?

For each pipeline, on one shared Ray: the shipped settings run once as the tuner's baseline does (a probe
itself where the pipeline writes: its sink, what later probes are predicted for, is then Ray's estimate of the
whole), then every configuration runs in full and as a probe, interleaved (full, probe, full, probe ...) for
``--pairs`` rounds; the shipped settings' probe is a baseline probe each time. A probe is a run under the
tuner's own stop rule (``objective.SinkProbeDone``, at the noise floor the tuner starts from); one the rule
did not stop ran in full, and its figure is then measured.

Prints, per configuration: the full runs' median, the probe's predicted median, its error, what the probe cost
against a full run, and how many probes stopped early; per pipeline: the pairs of configurations the probes
order as the full runs do.

    .venv/bin/python benchmarks/probes.py [--only etl] [--pairs 2]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _examples import EXAMPLES, ROOT, SharedRay

from pipetune.diagnose import thresholds as th
from pipetune.record import Launch, record
from pipetune.settings import Settings
from pipetune.store import open_store
from pipetune.tune import objective
from pipetune.tune.study import Sink

# Configurations that change the sink's pace (grid points of benchmarks/_grid.py), the shipped settings first.
CASES: dict[str, list[dict[str, Any]]] = {
    "etl": [{}, {"0.repartition": 8}, {"2.batch_size": 4096}, {"2.num_cpus": 0.5}],
    # Ray's defaults fuse the read, the per-row fetch and the write into one operator of four long tasks,
    # measured against the rows Ray's read metadata gives (``objective.own_share``)
    "http": [
        {},
        {"1.num_cpus": 0.25},
        {"1.num_cpus": 0.05},
        {"0.override_num_blocks": "default", "1.num_cpus": "default"},
    ],
    "skew": [{}, {"0.repartition": 32}, {"1.batch_size": 256}],
    "calls": [{}, {"1.batch_size": 100}, {"1.batch_size": 25}, {"0.override_num_blocks": 200}],
    # a sink read at the operator feeding it (``objective.measured_at``): a write behind a model or a pool
    "embed": [
        {},
        {"2.concurrency": 2, "2.num_cpus": 0.5},
        {"2.batch_size": 16},
        {"2.batch_size": 64, "2.concurrency": 2, "2.num_cpus": 0.5},
    ],
    "model-pool": [{}, {"1.concurrency": 1}, {"1.concurrency": 2, "1.num_cpus": 0.5}],
    # held out: a parquet read fused with small batches; its study's trials are probes at the read's share
    "packed": [
        {},
        {"0.repartition": 8},
        {"0.repartition": 8, "1.batch_size": 64},
        {"0.repartition": 8, "1.batch_size": 256},
    ],
    "service-pool": [
        {},
        {"1.concurrency": 4, "1.num_cpus": 0.25},
        {"1.concurrency": "default", "1.batch_size": "default"},
    ],
}


def one_run(
    name: str, point: dict[str, Any], ray: SharedRay, store: Any, sink: Sink | None, probe: bool = True
) -> dict[str, Any]:
    """A run of ``point``: in full, or (``probe``) under the tuner's stop rule for ``sink`` (None: a baseline's)."""
    script, args = EXAMPLES[name]
    settings = Settings.from_args([f"{k}={v}" for k, v in point.items()])
    stop = objective.SinkProbeDone(sink, th.NOISE_PCT.value) if probe else None
    with tempfile.TemporaryDirectory() as scratch:
        quiet = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        launch = Launch(ROOT / script, tuple(args), settings, address=ray.cluster.address, sandbox=Path(scratch),
                        stop=stop, extra_env=quiet, stdout_to_stderr=True)  # fmt: skip
        run = record(launch, store)
    figure = objective.seconds(run, {}, None, sink or objective.sink_of(run))
    return {"wall_s": run.wall_s, "figure": figure, "probe": objective.is_probe(run), "run": run}


def concordant(full: list[float], probe: list[float]) -> tuple[int, int]:
    pairs = list(itertools.combinations(range(len(full)), 2))
    agree = sum((full[i] - full[j]) * (probe[i] - probe[j]) > 0 for i, j in pairs)
    return agree, len(pairs)


def bench(name: str, pairs: int, ray: SharedRay, store: Any) -> None:
    base = one_run(name, {}, ray, store, None)
    sink = objective.sink_of(base["run"])
    how = f"a probe of {base['wall_s']:.1f} s" if base["probe"] else f"{base['wall_s']:.1f} s in full"
    print(f"\n## {name}: baseline {how}; sink {sink}", flush=True)
    if sink is None:
        print("no sink a probe can be predicted for (a loop, several executions, or no progress Ray reports)")
        return
    full: dict[int, list[float]] = {i: [] for i in range(len(CASES[name]))}
    probes: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(CASES[name]))}
    for _ in range(pairs):
        for i, point in enumerate(CASES[name]):
            f = one_run(name, point, ray, store, None, probe=False)
            if f["figure"]:
                full[i].append(f["figure"])
            probes[i].append(one_run(name, point, ray, store, sink if i else None))  # shipped: as a baseline
    print("| config | full runs (median, s) | probe predicts (median, s) | error | probe cost / full | stopped early |")
    print("| --- | --- | --- | --- | --- | --- |")
    medians: list[tuple[float, float]] = []
    for i, point in enumerate(CASES[name]):
        predicted = [p["figure"] for p in probes[i] if p["figure"]]
        cost = [p["wall_s"] for p in probes[i] if p["wall_s"]]
        if not full[i] or not predicted:
            print(f"| {point or 'shipped'} | {full[i]} | {predicted} | - | - | - |")
            continue
        f_med, p_med = statistics.median(full[i]), statistics.median(predicted)
        medians.append((f_med, p_med))
        early = sum(p["probe"] for p in probes[i])
        spread = f"{min(full[i]):.1f}-{max(full[i]):.1f}"
        print(f"| {point or 'shipped'} | {f_med:.1f} ({spread}) | {p_med:.1f} | {(p_med - f_med) / f_med * 100:+.0f}% "
              f"| {statistics.median(cost) / f_med:.2f} | {early}/{len(probes[i])} |")  # fmt: skip
    agree, total = concordant([m[0] for m in medians], [m[1] for m in medians])
    print(f"\nprobes order {agree} of {total} pairs of configurations as the full runs do", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(CASES))
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as where, SharedRay(as_a_study=True) as ray:  # the tuner probes on its own Ray
        store = open_store(Path(where) / "probes.db")
        for name in args.only or list(CASES):
            bench(name, args.pairs, ray, store)


if __name__ == "__main__":
    main()
