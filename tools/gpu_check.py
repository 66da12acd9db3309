"""The GPU check (``make gpu-check``): doctor, batch-size and tune on a real GPU stage, with what NVML saw.

On a machine where torch sees no CUDA device it says so and checks nothing (exit 0): the CPU suite covers the
GPU branches on hand-built runs. With a GPU it records ``tools/gpu_pipeline.py`` (MiniLM on CUDA), prints the
doctor's findings, the batch the memory loop chose and the GPU memory share it measured, a two-trial study,
and the mean NVML utilisation and peak GPU memory share of the first run and of the last measured trial.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "tools" / "gpu_pipeline.py"


def pipetune(*args: str, cwd: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pipetune", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if not done.stdout.strip():
        raise SystemExit(f"gpu-check: pipetune {args[0]} printed nothing: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout))


def gpu_figures(store: Path, run_id: str) -> str:
    from pipetune.store import open_store

    run = open_store(store).load(run_id)
    util = [s.values["gpu_util_pct"] for s in run.node_samples if "gpu_util_pct" in s.values]
    share = [s.values["gpu_mem_used_bytes"] / s.values["gpu_mem_total_bytes"] for s in run.node_samples
             if s.values.get("gpu_mem_total_bytes")]  # fmt: skip
    mean = f"{statistics.fmean(util):.0f}%" if util else "not sampled"
    peak = f"{100 * max(share):.0f}%" if share else "not sampled"
    return f"NVML utilisation (mean) {mean}, GPU memory share (peak) {peak}"


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device on this machine: nothing checked (the GPU branches are "
              "covered on hand-built runs in the CPU suite)")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        store = cwd / ".pipetune" / "pipetune.db"
        run = pipetune("run", str(PIPELINE), "--", "--rows", "20000", cwd=cwd)
        print(f"run {run['id']}: {run['status']}, {run['wall_s']:.1f} s; {gpu_figures(store, run['id'])}")
        for f in pipetune("doctor", run["id"], cwd=cwd)["findings"][:3]:
            print(f"  doctor: {f['symptom']} -> {(f.get('fix') or {}).get('text', 'no knob fix')}")
        found = pipetune("batch-size", str(PIPELINE), "--stage", "Embedder", "--start", "32", cwd=cwd)
        best = found.get("best") or {}
        print(f"batch-size on {found['device']}: chose {best.get('batch')} at GPU memory share "
              f"{best.get('memory')} ({len(found['probes'])} probes)")  # fmt: skip
        study = pipetune("tune", str(PIPELINE), "--budget", "2", "--", "--rows", "20000", cwd=cwd)
        print(f"tune: {study['reason']}; best {study['best']} ({study['speedup'] or 1:.2f}x)")
        last = [t for t in study["trials"] if t["status"] == "succeeded"][-1]
        print(f"last measured trial {last['run_id']}: {gpu_figures(store, last['run_id'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
