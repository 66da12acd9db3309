"""`plan`, `checklist` and `batch-size` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PIPELINES, ROOT, pipetune


def test_plan_for_a_gpu_cluster_cites_the_guides_rows(tmp_path: Path) -> None:
    args = ("--cluster", "4x(16 CPU, 1 A10G)", "--model", "resnet152", "--resolution", "448", "--json")
    done = pipetune("plan", PIPELINES / "gpu_infer.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    infer = next(s for s in view["stages"] if s["type"] == "GPU inference")["settings"]
    assert infer["concurrency"]["value"] == 4 and infer["num_gpus"]["value"] == 1.0
    assert infer["batch_size"]["value"] == 64 and "divide by 4" in infer["batch_size"]["source"]
    assert "no recorded run" in view["basis"]


def test_plan_of_a_missing_script_and_a_bad_cluster_are_one_line(tmp_path: Path) -> None:
    assert pipetune("plan", "nope.py", cwd=tmp_path).returncode == 2
    bad = pipetune("plan", PIPELINES / "gpu_infer.py", "--cluster", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "COUNTx" in bad.stderr


@pytest.mark.ray
def test_checklist_judges_a_recorded_run(tmp_path: Path, address: str) -> None:
    assert pipetune("run", PIPELINES / "small.py", "--address", address, cwd=tmp_path).returncode == 0
    done = pipetune("checklist", "last", "--json", cwd=tmp_path)
    items = {i["item"]: i for i in json.loads(done.stdout)}
    assert done.returncode == 1  # small.py sets no num_cpus: a failed item
    assert items["num_cpus set for every stage"]["state"] == "failed"
    assert items["batch_size tested with production data"]["state"] == "passed"
    assert items["concurrency matches resources"]["state"] == "passed"
    assert len(items) == 9
    plan = json.loads(pipetune("plan", PIPELINES / "small.py", "--json", cwd=tmp_path).stdout)
    assert "measured in run" in plan["basis"] and plan["prediction"]["rows_per_s"] > 0


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_batch_size_search_on_the_real_minilm_model(tmp_path: Path, address: str) -> None:
    script = ROOT / "examples" / "embed_minilm.py"
    out = ROOT / "examples" / "out"
    before = sorted(out.rglob("*")) if out.exists() else []
    args = ("--stage", "Embedder", "--start", "8", "--max", "16", "--rows", "128", "--address", address, "--json")
    done = pipetune("batch-size", script, *args, cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["device"] == "cpu" and "GPU path was not" in view["note"]
    probes = view["probes"]
    assert [p["batch"] for p in probes] == [8, 16]  # the climb stops at --max
    assert all(p["ok"] and p["memory"] and 0 < p["memory"] < 0.5 for p in probes)
    best = max(probes, key=lambda p: p["rows_per_s"])
    assert view["best"]["batch"] == best["batch"]
    assert (sorted(out.rglob("*")) if out.exists() else []) == before  # writes went to the scratch directory
