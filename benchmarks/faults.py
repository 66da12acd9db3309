"""The doctor's fault-injection table: one small real pipeline per branch of the guide, the doctor's first fix
applied, before and after measured side by side.

For each case, on one shared local Ray: the shipped script and the script with the first fix's ``--set``
arguments run interleaved (A B A B ...), ``--pairs`` times each; the table gives the symptom the doctor names,
the stage, whether that is the branch the case was built for, the first fix, both medians with their spread,
and the verdict: ``helped`` only when the gain is beyond the noise (the larger of the two spreads, at least
5%), ``no gain`` inside it, ``slower`` beyond it the other way; a crash or a call to remove has no ``--set``
and is judged by whether the doctor named it. A case whose fault is a failure, not slowness (workers OOM-killed),
is judged by the first finding's own check (the guide's verification: no more kills) on the fixed runs; such a
case may need Ray started its own way (a lowered memory threshold): each of its runs then starts its own local Ray
with those settings, on both sides alike.

    .venv/bin/python benchmarks/faults.py --pairs 3
    .venv/bin/python benchmarks/faults.py --only io-wait --only one-block
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from _examples import ROOT, SharedRay, idle_check, lowered_memory_threshold, own_ray_env

from pipetune.diagnose import Outcome, compare
from pipetune.diagnose.noise import spread_pct


@dataclass(frozen=True)
class Case:
    name: str
    branch: str  # the guide's branch the pipeline is built to show
    rules: tuple[str, ...]  # the doctor rules that name that branch
    stage: str  # the stage the doctor should name (the one that limits, or holds the fault)
    script: str
    args: tuple[str, ...] = ()
    ray_env: Callable[[], dict[str, str]] | None = None  # set: each run starts its own Ray with this environment
    options: tuple[str, ...] = ()  # pipetune's own options for the case's runs (a stall's watchdog)
    judged_by_check: bool = False  # the first finding's check on the fixed runs, not their time


OOM_TASK_GIB = 2.2  # the case's own sizing: one task of this fits under the threshold, two side by side do not

SMALL_STORE_MIB = 200  # the case's own sizing: two of its 100 MiB input blocks and one 200 MiB output fill it


def small_object_store() -> dict[str, str]:
    """Ray's object store started at ``SMALL_STORE_MIB`` (as a share of the machine's memory, Ray's own knob)."""
    share = SMALL_STORE_MIB * 2**20 / psutil.virtual_memory().total
    return {"RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": f"{share:.6f}"}


# fmt: off
CASES = (
    Case("io-wait", "low CPU: data loading", ("low-cpu", "slow-stage"), "1:map_batches:fetch",
         "benchmarks/faults/io_wait.py"),
    Case("low-cpu-filter", "low CPU: filtering", ("low-cpu", "slow-stage"), "1:filter:keep",
         "benchmarks/faults/half_waiting.py", ("filter",)),
    Case("low-cpu-map", "low CPU: CPU preprocessing", ("low-cpu", "slow-stage"), "1:map_batches:enrich",
         "benchmarks/faults/half_waiting.py", ("map",)),
    Case("one-thread-model", "low CPU: heavy compute (CPU inference)", ("low-cpu", "slow-stage"),
         "2:map_batches:Encoder", "benchmarks/faults/one_thread_model.py"),
    Case("tiny-batches", "small batches (vectorised UDF)", ("batch-size",), "1:map_batches:scale",
         "tests/pipelines/tiny_batches.py"),
    Case("pandas-2-rows", "small batches, one block", ("batch-size", "few-blocks"), "1:map_batches:scale",
         "tests/pipelines/pandas_batches.py"),
    Case("one-block", "too few blocks", ("few-blocks",), "1:map_batches:work", "benchmarks/faults/one_block.py"),
    Case("skew", "uneven progress / data skew", ("skew",), "2:map_batches:work", "benchmarks/faults/uneven_blocks.py"),
    Case("bundled-skew", "data skew that batching bundles", ("skew",), "1:map_batches:work",
         "benchmarks/faults/bundled_skew.py"),
    Case("pool-too-large", "actor pool too large for the cores", ("oversized-pool",), "1:map_batches:Model",
         "benchmarks/pipelines/model_pool.py"),
    Case("starved-pool", "actor pool starved by an upstream reservation", ("slow-stage", "blocking-actor-pool"),
         "2:map_batches:Lookup", "benchmarks/faults/starved_pool.py"),
    Case("waiting-filter", "one slow stage, empty output queue", ("slow-stage", "low-cpu"), "1:filter:reachable",
         "benchmarks/faults/waiting_filter.py"),
    Case("service-pool", "one slow stage, full input queue", ("slow-stage",), "1:map_batches:ServiceClient",
         "benchmarks/pipelines/slow_service_pool.py"),
    Case("count-middle", "materialising call mid-pipeline", ("materialize-mid-pipeline",), "1:filter:<lambda>",
         "tests/pipelines/count_middle.py"),
    Case("crash", "a UDF crash", ("crash",), "1:map_batches:explode", "tests/pipelines/raises.py"),
    Case("stall", "no progress: one stage stuck", ("stall",), "1:map_batches:stuck", "tests/pipelines/hangs.py",
         options=("--stall-after", "6", "--timeout", "20")),
    Case("workers-oom", "workers OOM-killed (lowered memory limit)", ("workers-oom",), "1:map_batches:hold",
         "benchmarks/faults/oom_side_by_side.py", ("--task-gib", str(OOM_TASK_GIB)), ray_env=lowered_memory_threshold,
         judged_by_check=True),
    Case("spilling", "object store full: spilling (small object store)", ("object-store",), "1:map_batches:grow",
         "benchmarks/faults/stream_spill.py", ray_env=small_object_store, judged_by_check=True),
    Case("data-bound-loop", "training ingest: data-bound loop", ("data-bound", "batch-size"),
         "1:map_batches:featurize", "examples/train_loop.py"),
)
# fmt: on


def run(case: Case, sets: list[str], ray: SharedRay, store: Path, limit_s: float) -> dict[str, Any]:
    """One recorded run in a scratch directory (the pipelines write to ./out)."""
    with tempfile.TemporaryDirectory() as cwd:
        cmd = [sys.executable, "-m", "pipetune", "run", "--json", "--store", str(store), "--timeout", str(limit_s)]
        cmd += [*case.options, *(a for s in sets for a in ("--set", s)), str(ROOT / case.script), "--", *case.args]
        done = subprocess.run(cmd, cwd=cwd, env=_env(case, ray), capture_output=True, text=True)
    try:
        view = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"status": "error", "wall_s": None, "id": None, "error": done.stderr.strip().splitlines()[-1:]}
    return {"status": view["status"], "wall_s": view["wall_s"], "id": view["id"]}


def _env(case: Case, ray: SharedRay) -> dict[str, str]:
    if case.ray_env is None:
        return ray.env
    return own_ray_env(case.ray_env())  # pipetune starts a local Ray of its own, with the case's settings


def check_after(row: dict[str, Any], store: Path) -> str:
    """The first finding's check (``doctor --verify``) on the fixed runs: ``fixed: no more crashes ..., 3 -> 0``."""
    ids = [[r["id"] for r in row[side] if r["id"]] for side in ("before", "after")]
    cmd = [sys.executable, "-m", "pipetune", "doctor", "--verify", ",".join(ids[0]), ",".join(ids[1])]
    done = subprocess.run([*cmd, "--json", "--store", str(store)], cwd=ROOT, capture_output=True, text=True)
    checks = json.loads(done.stdout).get("checks", []) if done.stdout.strip() else []
    mine = [c for c in checks if c["rule"] == row["found"]["rule"]]
    if not mine:
        return "not checked: " + (done.stderr.strip().splitlines() or ["no check"])[-1]
    c = mine[0]
    word = "fixed" if c["holds"] else "not fixed" if c["holds"] is False else "cannot tell"
    return f"{word}: {c['criterion']}, {_num(c['before'])} -> {_num(c['after'])}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def first_finding(run_id: str, store: Path) -> dict[str, Any] | None:
    cmd = [sys.executable, "-m", "pipetune", "doctor", run_id, "--json", "--store", str(store)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # a stored run: no Ray needed
    findings = json.loads(done.stdout).get("findings", []) if done.stdout.strip() else []
    return dict(findings[0]) if findings else None


def measure(case: Case, pairs: int, ray: SharedRay, store: Path, limit_s: float) -> dict[str, Any]:
    first = run(case, [], ray, store, limit_s)
    found = first_finding(first["id"], store) if first["id"] else None
    fix = (found or {}).get("fix") or {}
    sets = list(fix.get("sets") or [])
    before, after = [first], []
    for i in range(pairs):
        if sets:
            after.append(run(case, sets, ray, store, limit_s))
        if i < pairs - 1:
            before.append(run(case, [], ray, store, limit_s))
    row = {"case": case, "found": found, "sets": sets, "before": before, "after": after}
    if case.judged_by_check and found and after:
        row["check"] = check_after(row, store)
    return row


def verdict(row: dict[str, Any]) -> str:
    """How the first fix did; a fix from another branch's rule says so (it may help, but not as the case asks)."""
    found, case = row["found"], row["case"]
    if found is None:
        return "missed: no finding"
    named = found["rule"] in case.rules
    if not row["sets"]:
        return ("named" if named else f"first finding is {found['rule']}") + "; no --set fix (a code change)"
    other = "" if named else f"; by {found['rule']}, not this branch's rule"
    return _measured(row) + other


def _measured(row: dict[str, Any]) -> str:
    if "check" in row:
        return str(row["check"])
    walls = [r["wall_s"] for r in row["before"] if r["status"] == "succeeded" and r["wall_s"]]
    fixed = [r["wall_s"] for r in row["after"] if r["status"] == "succeeded" and r["wall_s"]]
    if not walls or not fixed:
        return "the fixed runs failed" if walls else "the shipped runs failed"
    seen = compare(walls, fixed)
    word = {Outcome.IMPROVED: "helped", Outcome.REGRESSED: "slower"}.get(seen.outcome, "no gain (within noise)")
    return f"{word} ({seen.improvement_pct:+.0f}%, noise {seen.noise_pct:.0f}%)"


def _timing(runs: list[dict[str, Any]]) -> str:
    walls = [r["wall_s"] for r in runs if r["status"] == "succeeded" and r["wall_s"]]
    if not walls:
        return ", ".join(sorted({r["status"] for r in runs})) or "-"
    return f"{statistics.median(walls):.1f} s ±{spread_pct(walls) / 2:.0f}% (n={len(walls)})"


def _stage(case: Case, found: dict[str, Any]) -> str:
    named = found.get("stage_key") or "-"
    return named if named == case.stage else f"{named} (expected {case.stage})"


def _evidence(found: dict[str, Any]) -> str:
    """The first measured figure that has a threshold, as the doctor words it: what the finding was decided on."""
    texts = found.get("evidence_text") or []
    decided = [t for e, t in zip(found.get("evidence") or [], texts, strict=False) if e.get("threshold") is not None]
    return (decided or texts or ["-"])[0]


def table(rows: list[dict[str, Any]]) -> str:
    head = ("case", "branch", "symptom named", "stage", "evidence", "first fix", "before", "after", "verdict")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        f = r["found"] or {}
        fix = (f.get("fix") or {}).get("text", "-") if f else "-"
        lines.append(" | ".join((r["case"].name, r["case"].branch, f.get("symptom", "-"),
                                 _stage(r["case"], f) if f else "-", _evidence(f) if f else "-", fix,
                                 _timing(r["before"]), _timing(r["after"]) if r["sets"] else "-",
                                 verdict(r))))  # fmt: skip
    return "\n".join(f"| {line} |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="runs of each side, interleaved")
    parser.add_argument("--only", action="append", default=[], help="a case by name (repeatable)")
    parser.add_argument("--limit-s", type=float, default=90.0, help="a run past this is stopped")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or c.name in args.only]
    rows, machine = [], idle_check()
    with tempfile.TemporaryDirectory() as tmp, SharedRay() as ray:
        for case in cases:
            rows.append(measure(case, args.pairs, ray, Path(tmp) / "faults.db", args.limit_s))
            print(f"{case.name}: {verdict(rows[-1])}", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(f"`{' '.join(sys.argv)}`\n\n{machine}\n\n{text}\n")


if __name__ == "__main__":
    main()
