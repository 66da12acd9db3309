"""Pipelines the script's own loop consumes (training ingest), recorded, diagnosed and tuned on real Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipetune.diagnose import consumption, diagnose
from pipetune.model import StageKind
from pipetune.store import open_store
from pipetune.tune.study import Study
from tests.conftest import PIPELINES, pipetune

pytestmark = pytest.mark.ray


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name in ("feeds_loop.py", "two_splits.py", "split_actors.py", "merges.py", "train_workers.py"):
        shutil.copy(PIPELINES / name, tmp_path)
    return tmp_path


def _run(work: Path, address: str, *args: str) -> tuple[dict, object]:
    result = pipetune("run", "--address", address, "--json", *args, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    view = json.loads(result.stdout)
    return view, open_store(work / ".pipetune" / "pipetune.db").load(view["id"])


def test_a_loop_is_a_consumer_stage_with_rays_own_figures_over_both_epochs(work: Path, address: str) -> None:
    view, run = _run(work, address, "--set", "2.prefetch_batches=3", "feeds_loop.py")
    loop = view["stages"][2]
    assert (loop["key"], loop["kind"], loop["site"]) == ("2:iter_batches", "consume", "feeds_loop.py:25")
    assert loop["knobs"]["batch_size"] == 100 and loop["knobs"]["prefetch_batches"] == 3  # the override applied
    assert loop["knobs"]["drop_last"] is False
    assert len(view["stages"]) == 3  # two epochs of one call: one stage
    (c,) = consumption(run)  # type: ignore[arg-type]
    assert (c.source, c.batches, c.rows, c.from_ray) == ("consumer:2", 80.0, 8_000.0, True)
    assert run.stage(2).inputs == (1,) and view["consumers"][0]["rows"] == 8_000.0  # type: ignore[attr-defined]


def test_the_doctor_calls_a_waiting_loop_data_bound_on_the_slow_stage(work: Path, address: str) -> None:
    _, run = _run(work, address, "feeds_loop.py", "--", "--epochs", "1")
    found = {f.rule: f for f in diagnose(run).findings}  # type: ignore[arg-type]
    assert found["data-bound"].stage == 1  # the sleeping map, not the loop that waits for it
    result = pipetune("report", str(run.id), "-o", "r.html", "--store", ".pipetune/pipetune.db", cwd=work)  # type: ignore[attr-defined]
    page = (work / "r.html").read_text()
    assert result.returncode == 0 and 'id="consumers"' in page and "chart-iter-blocked" in page


def test_each_split_of_a_streaming_split_is_its_own_consumer(work: Path, address: str) -> None:
    _, run = _run(work, address, "two_splits.py")
    loops = {c.source: c for c in consumption(run)}  # type: ignore[arg-type]
    assert set(loops) == {"consumer:2/0", "consumer:2/1"}
    assert sum(c.rows for c in loops.values()) == 2_000  # equal=True: every row, to one split or the other
    assert run.stage(2).kind is StageKind.CONSUME and run.stage(2).inputs == (1,)  # type: ignore[attr-defined]


def test_splits_looped_over_in_actors_and_their_coordinator_are_recorded(work: Path, address: str) -> None:
    """Ray runs a streaming_split's execution in its coordinator actor, and the script hands each split to an
    actor that loops over it: both report to the recorder from their own processes."""
    view, run = _run(work, address, "split_actors.py")
    loops = {c.source: c for c in consumption(run)}  # type: ignore[arg-type]
    assert set(loops) == {"consumer:2/0", "consumer:2/1"} and all(c.from_ray for c in loops.values())
    assert sum(c.rows for c in loops.values()) == 4_000
    assert [s["key"] for s in view["stages"]] == ["0:range", "1:map_batches:slow", "2:iter_batches"]  # one loop
    (execution,) = run.executions  # type: ignore[attr-defined]
    owned = {op.name: op.stages for op in execution.operators}
    assert owned["ReadRange"] == (0,) and owned["MapBatches(slow)"] == (1,) and execution.ended_t is not None
    found = {f.rule: f for f in diagnose(run).findings}  # type: ignore[arg-type]
    assert found["data-bound"].stage == 1  # the producer the loops wait for, measured in the coordinator


def test_ray_train_workers_looping_over_their_shards_are_recorded(work: Path, address: str) -> None:
    """Ray Train (V2) splits the dataset in its own actor and hands each worker its shard: the plan carries
    pipetune there, so the shards' loops and the coordinator's execution are the run's, as in the driver."""
    view, run = _run(work, address, "train_workers.py")
    loops = {c.source: c for c in consumption(run)}  # type: ignore[arg-type]
    assert set(loops) == {"consumer:2/0", "consumer:2/1"} and sum(c.rows for c in loops.values()) == 4_000
    assert run.stage(2).method == "iter_batches" and run.stage(2).inputs == (1,)  # type: ignore[attr-defined]
    assert view["stages"][2]["site"] == "train_workers.py:23"  # as the driver reads it, not the worker's cwd
    owned = {op.name: op.stages for e in run.executions for op in e.operators}  # type: ignore[attr-defined]
    assert owned["MapBatches(slow)"] == (1,)
    found = {f.rule: f for f in diagnose(run).findings}  # type: ignore[arg-type]
    assert found["data-bound"].stage == 1


def test_a_union_and_a_zip_are_recorded_and_shown_as_the_tree_they_are(work: Path, address: str) -> None:
    view, run = _run(work, address, "merges.py")
    inputs = {s["key"]: tuple(run.stage(s["index"]).inputs) for s in view["stages"]}  # type: ignore[attr-defined]
    assert inputs == {
        "0:range": (), "1:map_batches:<lambda>": (0,), "2:filter:<lambda>": (1,), "3:filter:<lambda>": (1,),
        "4:range": (), "5:map:<lambda>": (4,), "6:union": (2, 3), "7:zip": (6, 5), "8:iter_batches": (7,),
    }  # fmt: skip
    shown = pipetune("show", view["id"], "--store", ".pipetune/pipetune.db", cwd=work)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "[merges 2:filter:<lambda> + 3:filter:<lambda>]" in shown.stdout and "→ 7:zip (shown above)" in shown.stdout
    assert "1:map_batches:<lambda>" in shown.stdout and "[read by 2 stages]" in shown.stdout


def test_a_trial_of_a_consumed_pipeline_is_a_probe_judged_by_its_loop(work: Path, address: str) -> None:
    args = ("feeds_loop.py", "--budget", "1", "--no-warmup", "--confirm", "--address", address, "--json")
    result = pipetune("tune", *args, "--", "--rows", "20000", "--epochs", "1", cwd=work, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    store = open_store(work / ".pipetune" / "pipetune.db")
    view = json.loads(result.stdout)
    study = Study.fold(*store.load_study(view["study"]))
    baseline, trial = study.trials
    assert baseline.consumed == {"consumer:2": 200.0} and not baseline.probe
    assert trial.status == "stopped" and trial.verdict.value != "reverted: failed"
    # a probe stops once the loop took 32 batches; a trial whose loop outruns the incumbent's whole loop time
    # (and its noise) first is stopped at its box: which one comes first is the machine's timing, both are
    # the loop's own clock (unit tests: test_consumers.py, test_a_probe_is_boxed_from_its_loops_start...)
    if trial.probe:
        assert 32 <= trial.consumed["consumer:2"] < 200 and trial.measured_s is not None
    else:
        assert trial.verdict.value == "reverted: stopped at its time box"
    assert all(s.knob != "batch_size" or s.selector != "2" for s in trial.settings.stages)
    confirmed = view["confirmed"]  # the best settings once more, in full: its loop time against the prediction
    assert confirmed["status"] == "succeeded" and confirmed["measured_s"] and confirmed["predicted_s"]
    assert store.load(confirmed["run_id"]).status.value == "succeeded"
