"""`pipetune run` on real pipelines, against the session's two-node local Ray cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipetune.model import EventKind, RunStatus, StageKind
from pipetune.record.launcher import Launch, record
from pipetune.store import open_store
from pipetune.tune import objective
from tests.conftest import PIPELINES, last_line, pipetune

pytestmark = pytest.mark.ray


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for script in PIPELINES.glob("*.py"):
        shutil.copy(script, tmp_path)
    return tmp_path


def run_json(work: Path, address: str, *args: str) -> dict:
    result = pipetune("run", "--address", address, "--json", *args, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_records_every_stage_with_keys_kinds_knobs_and_figures(work: Path, address: str) -> None:
    view = run_json(work, address, "small.py", "--", "--rows", "20000", "--out", "out")
    stages = view["stages"]
    assert [s["key"] for s in stages] == [
        "0:range",
        "1:map_batches:double",
        "2:filter:<lambda>",
        "3:map_batches:Scale",
        "4:write_parquet",
    ]
    assert [s["kind"] for s in stages] == ["read", "transform", "filter", "actor", "write"]
    assert stages[1]["knobs"]["batch_size"] == 500 and stages[3]["knobs"]["concurrency"] == 1
    assert stages[1]["site"] == "small.py:29"
    # Ray fuses map_batches(double) and the filter into one operator: both stages map back to it.
    assert stages[1]["operator"] == stages[2]["operator"] == "MapBatches(double)->Filter(<lambda>)"
    assert view["rows"] == 10_000 and view["status"] == "succeeded"
    assert view["bottleneck"]["stages"] and view["bottleneck"]["evidence"]
    flagged = [s for s in stages if s["bottleneck"]]  # the stages of one operator: which one is measured
    assert flagged and len({s["operator"] for s in flagged}) == 1
    run = open_store(work / ".pipetune" / "pipetune.db").load(view["id"])
    sampled = {s.source for s in run.op_samples}
    assert {op.uid for _, op in run.operators()} <= sampled
    stats = {op.name: run.stats_of(op.uid) for _, op in run.operators()}
    fused, pool = stats["MapBatches(double)->Filter(<lambda>)"], stats["MapBatches(Scale)"]
    assert fused is not None and fused.frame_s is None  # a row-based filter: Ray timed the chain whole
    assert pool is not None and pool.frame_s is not None and pool.frame_s > 0  # Ray's framing, from exec stats
    assert run.env.ray_version.startswith("2.") and run.env.cluster_resources["CPU"] == 3.0
    assert len(run.script_sha256) == 64 and run.args == ("--rows", "20000", "--out", "out")
    assert list(work.glob("out/*.parquet"))  # the script really ran, writing beside the caller
    sink = objective.sink_of(run)  # what a tuning probe of this pipeline would be predicted for
    assert sink is not None and (sink.rows, sink.stage) == (10_000, 4), sink  # the write, on its own
    done = [d for _, d in objective.sink_points(run, sink)]  # Ray's counters, as the probe reads them
    assert done == sorted(done) and done[-1] == pytest.approx(1.0)  # the whole, as a share
    estimated = [d for _, d in objective.sink_points(run, None)]  # against Ray's own estimate, as a baseline's
    assert estimated and estimated[-1] == pytest.approx(1.0)  # probe reads it: it had the rows right by the end


def test_overrides_from_a_config_file_and_set_reach_ray_and_are_recorded(work: Path, address: str) -> None:
    """The --config file's settings, then every --set on top of them (a --set of the same knob wins)."""
    config = {"stages": {"Scale": {"batch_size": 250}, "double": {"batch_size": 100}}, "context": {}}
    (work / "best.json").write_text(json.dumps(config))
    sets = ("1.num_cpus=0.5", "double.batch_size=default", "3.concurrency=2", "ctx.target_max_block_size=64MiB")
    args = [a for s in sets for a in ("--set", s)]
    view = run_json(work, address, "small.py", "--config", "best.json", *args, "--", "--rows", "4000")
    stages = view["stages"]
    assert stages[1]["knobs"]["num_cpus"] == 0.5 and set(stages[1]["overridden"]) == {"num_cpus", "batch_size"}
    assert "batch_size" not in stages[1]["knobs"]  # the file's 100, then --set default: Ray Data's own default
    assert stages[3]["knobs"]["batch_size"] == 250 and stages[3]["knobs"]["concurrency"] == 2  # 250 from the file
    assert "ctx.target_max_block_size=67108864" in view["overrides"]
    ops = {o["name"]: o for e in view["executions"] for o in e["operators"]}
    # num_cpus 0.5 on map_batches(double) only: Ray can no longer fuse it with range()
    assert "ReadRange" in ops and not any(name.startswith("ReadRange->") for name in ops)


# An unknown stage, a knob the stage lacks, a GPU the cluster lacks: test_failure_paths.py's refusals.


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("2.num_cpus=-1", "num_cpus is a number of CPUs per task or actor, 0 or more"),
        ("Scale.batch_size=0", "batch_size is a whole number of rows, 1 or more"),
        ("ctx.no_such_field=1", "DataContext has no field 'no_such_field'"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(work: Path, setting: str, message: str) -> None:
    result = pipetune("run", "small.py", "--set", setting, cwd=work, timeout=60)
    assert result.returncode == 2 and message in last_line(result.stderr)
    assert not (work / ".pipetune").exists() or not open_store(work / ".pipetune" / "pipetune.db").runs()


def test_udf_exception_is_stored_with_stage_and_traceback(work: Path, address: str) -> None:
    result = pipetune("run", "raises.py", "--address", address, cwd=work)
    assert result.returncode == 1
    assert "ValueError" in last_line(result.stderr)
    run = open_store(work / ".pipetune" / "pipetune.db").load("last")
    assert run.status is RunStatus.FAILED and "bad row in batch" in run.traceback
    udf_errors = [e for e in run.events if e.kind is EventKind.UDF_ERROR]
    assert udf_errors and udf_errors[0].stage == 1 and "bad row in batch" in udf_errors[0].detail


def test_not_a_ray_data_pipeline(work: Path, address: str) -> None:
    result = pipetune("run", "not_pipeline.py", "--address", address, cwd=work)
    assert result.returncode == 1
    assert "without building a Ray Data pipeline" in last_line(result.stderr)


def test_a_driver_killed_with_sigkill_keeps_what_was_recorded(work: Path, address: str) -> None:
    result = pipetune("run", "self_kill.py", "--address", address, cwd=work)
    assert result.returncode != 0
    run = open_store(work / ".pipetune" / "pipetune.db").load("last")
    assert run.status is RunStatus.KILLED and "SIGKILL" in run.error
    assert [s.kind for s in run.stages] == [StageKind.READ, StageKind.TRANSFORM, StageKind.WRITE]
    assert len({s.t for s in run.op_samples}) >= 2


def test_scripts_that_init_ray_themselves_and_execute_twice(work: Path, address: str) -> None:
    result = pipetune("run", "own_init.py", "--address", address, "--json", "--", "--flag", "value", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    view = json.loads(result.stdout)
    assert len(view["executions"]) == 2  # count(), then the write
    assert view["rows"] == 2000


def test_per_node_figures_from_both_nodes(work: Path, address: str) -> None:
    view = run_json(work, address, "accel.py")
    run = open_store(work / ".pipetune" / "pipetune.db").load(view["id"])
    assert len(run.env.nodes) == 2
    sampled_nodes = {s.source for s in run.node_samples}
    assert sampled_nodes == {f"node:{n.node_id}" for n in run.env.nodes}
    assert all("cpu_pct" in s.values and "ray_rss_bytes" in s.values for s in run.node_samples)
    accel_node = next(n.node_id for n in run.env.nodes if "accel" in n.resources)
    accel_stats = next(s for e in run.executions for s in e.stats if "on_accel" in s.uid)
    assert accel_stats.nodes == (accel_node,)


def test_the_script_runs_as_python_would_then_is_in_the_history(work: Path, address: str) -> None:
    result = pipetune("run", "small.py", "--address", address, "--", "--rows", "1000", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "small pipeline done as __main__" in result.stdout
    assert "bottleneck" in result.stdout  # the summary table follows the script's own output
    history = pipetune("runs", "--json", cwd=work)
    rows = json.loads(history.stdout)
    assert rows[0]["script"] == "small.py" and rows[0]["status"] == "succeeded" and rows[0]["rows"] == 500
    assert rows[0]["bottleneck"]
    shown = pipetune("show", rows[0]["id"][:17], "--width", "200", cwd=work)
    assert shown.returncode == 0 and "map_batches(Scale)" in shown.stdout and "bottleneck" in shown.stdout
    exported = pipetune("export", "last", "run.json", cwd=work)
    assert exported.returncode == 0
    imported = pipetune("import", "run.json", "--store", "other.db", cwd=work)
    assert imported.returncode == 0
    assert open_store(work / "other.db").load("last") == open_store(work / ".pipetune" / "pipetune.db").load("last")


def test_branches_and_all_to_all_stages(work: Path, address: str) -> None:
    view = run_json(work, address, "combine.py")
    assert [(s["method"], s["kind"]) for s in view["stages"]] == [
        ("range", "read"),
        ("range", "read"),
        ("map_batches", "transform"),
        ("drop_columns", "transform"),  # Ray implements it with its own map_batches: one stage, not two
        ("union", "all-to-all"),
        ("repartition", "all-to-all"),
        ("write_parquet", "write"),
    ]
    assert view["rows"] == 5000


def test_nodes_on_other_hosts_are_sampled_by_a_pinned_actor(ray_cluster: object) -> None:
    import ray

    from pipetune.record import nodes

    ray.init(address=ray_cluster.address)  # type: ignore[attr-defined]
    try:
        for node in nodes.alive_nodes():
            sampler = nodes.remote_sampler(node["NodeID"])
            values = ray.get(sampler.sample.remote(), timeout=60)
            assert 0 <= values["cpu_pct"] <= 100 and values["mem_total_bytes"] > 0
            assert values["ray_rss_bytes"] > 0  # the sampler runs under that node's raylet
            ray.kill(sampler)
    finally:
        ray.shutdown()


def test_a_hang_is_stopped_at_its_time_limit_kept_and_its_stuck_frame_named(work: Path, address: str) -> None:
    result = pipetune("run", "hangs.py", "--address", address, "--stall-after", "5", "--timeout", "20", cwd=work)
    assert result.returncode != 0
    run = open_store(work / ".pipetune" / "pipetune.db").load("last")
    assert run.status is RunStatus.KILLED and "time limit" in run.error
    assert run.stages and run.executions and run.op_samples  # everything recorded until then is kept
    [stall] = [e for e in run.events if e.kind is EventKind.STALL]
    assert "stuck (hangs.py:11)" in stall.message and "MapBatches(stuck)" in stall.message
    assert "time.sleep" in stall.detail or "stuck" in stall.detail
    shown = pipetune("stacks", "last", cwd=work)
    assert "stuck (hangs.py:11)" in shown.stdout
    doctor = pipetune("doctor", "last", "--json", cwd=work)
    stalls = [f for f in json.loads(doctor.stdout)["findings"] if f["rule"] == "stall"]
    assert stalls and "stuck (hangs.py:11)" in stalls[0]["cause"]


def test_a_tuning_trials_driver_leaves_as_soon_as_its_outcome_is_sent(tmp_path: Path, address: str) -> None:
    """A trial (sandboxed) skips the interpreter's and Ray's teardown, which the study would wait for; what the
    script printed is flushed first. A user's own run ends as Python ends it, its exit handlers included."""
    marker = tmp_path / "teardown-ran"
    script = tmp_path / "ends.py"
    script.write_text(
        f"import atexit, pathlib, ray\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'x')\n"
        "ray.data.range(10).materialize()\nprint('it ran')\n"
    )
    store = open_store(tmp_path / "s.db")
    (tmp_path / "sandbox").mkdir()
    trial = record(Launch(script, address=address, sandbox=tmp_path / "sandbox", output=tmp_path / "trial.log"), store)
    assert trial.status is RunStatus.SUCCEEDED and not marker.exists()
    assert "it ran" in (tmp_path / "trial.log").read_text()
    own = record(Launch(script, address=address, output=tmp_path / "own.log"), store)
    assert own.status is RunStatus.SUCCEEDED and marker.exists()


def test_a_per_row_functions_rows_are_counted_while_its_one_task_runs_and_give_no_call_figures(
    work: Path, address: str
) -> None:
    """``map`` over one block: one task of about 4 s. Its rows are counted in the worker while the task runs
    (``udf_rows`` before Ray's own count moves), against the rows Ray's read metadata says the read will output;
    the calls are not timed, so the stage has no call figures."""
    view = run_json(work, address, "slow_rows.py", "--", "1000")
    run = open_store(work / ".pipetune" / "pipetune.db").load(view["id"])
    (op,) = [op for _, op in run.operators() if 1 in op.stages]
    assert op.name == "ReadRange->Map(parse)->Write"  # the wrapper is named after the function, as Ray names it
    samples = [s.values for s in run.samples_of(op.uid)]
    running = [v.get("udf_rows", 0.0) for v in samples if not v.get("tasks_finished")]
    assert max(running) > 0 and running == sorted(running) and max(running) <= 1000
    assert {v.get("read_rows_planned") for v in samples} == {1000.0}  # the range's rows, from Ray's read metadata
    stats = run.stats_of(op.uid)
    assert stats is not None and stats.calls == () and view["rows"] == 1000


def test_a_running_tasks_rows_are_counted_in_its_workers_and_its_operator_keeps_its_name(
    work: Path, address: str
) -> None:
    """One block, 2-row batches: one long task. Ray counts its rows only when it ends; the wrapped batch function
    counts them while it runs, and the recorder adds them to the operator's samples (``udf_rows``)."""
    view = run_json(work, address, "pandas_batches.py", "--", "3000")
    run = open_store(work / ".pipetune" / "pipetune.db").load(view["id"])
    (op,) = [op for _, op in run.operators() if op.stages[:1] == (1,)]
    assert op.name == "MapBatches(scale)->Write"  # the wrapper is named after the function, as Ray names it
    counted = [s.values.get("udf_rows", 0.0) for s in run.samples_of(op.uid)]
    assert max(counted) > 0 and counted == sorted(counted)
    assert max(counted) <= 3000 and view["rows"] == 3000  # the script's own result is untouched
    stats = run.stats_of(op.uid)
    assert stats is not None and [c.stage for c in stats.calls] == [1]  # each call timed, with its rows
    assert stats.calls[0].count > 0 and stats.calls[0].rows == 2 * stats.calls[0].count <= 3000
