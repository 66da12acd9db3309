import math

from pipetune.diagnose.bottleneck import find_bottleneck, usable_slots
from pipetune.model import Operator
from pipetune.report.figures import run_view, stage_figures
from tests.unit.builders import two_stage_run, with_


def test_the_stage_with_least_headroom_is_the_bottleneck() -> None:
    b = find_bottleneck(two_stage_run(read_busy=2.0, map_busy=20.0))
    assert b is not None
    assert b.rate.name == "MapBatches(work)"
    # 10,000 rows in 20 busy task-seconds = 500 rows/s per task, 2 CPUs -> 1,000 rows/s; ran at 1,000 rows/s
    assert math.isclose(b.rate.capacity, 1000.0)
    assert math.isclose(b.rate.headroom, 1.0)
    assert "headroom 1.00x" in b.evidence and "next: ReadFiles" in b.evidence


def test_service_rate_not_wall_time_decides() -> None:
    """A stage that waits (low CPU per task) has spare capacity if it could run more tasks: the one that
    computes is the limit, even with less busy time."""
    run = two_stage_run(read_busy=2.0, map_busy=8.0, map_cpus=2.0, map_cpu_s=8.0)
    b = find_bottleneck(run)
    assert b is not None and b.rate.name == "MapBatches(work)"  # only 1 slot at num_cpus=2
    assert b.rate.slots == 1


def test_slots_follow_reservations_caps_and_real_core_use() -> None:
    op = Operator("u", "op", (0,), num_cpus=0.25)
    assert usable_slots(op, cpus=2, gpus=0, cores_per_task=0.05) == 8  # reservations bind first
    assert usable_slots(op, cpus=2, gpus=0, cores_per_task=1.0) == 2  # CPU-bound: cores bind
    capped = Operator("u", "op", (0,), num_cpus=0.25, max_concurrency=3)
    assert usable_slots(capped, cpus=2, gpus=0, cores_per_task=0.05) == 3
    gpu = Operator("u", "op", (0,), num_cpus=1, num_gpus=1)
    assert usable_slots(gpu, cpus=16, gpus=2, cores_per_task=0.2) == 2


def test_no_finished_execution_means_no_bottleneck() -> None:
    run = two_stage_run()
    run = type(run)(**{**run.__dict__, "executions": ()})
    assert find_bottleneck(run) is None
    assert run_view(run)["bottleneck"] is None


def test_figures_mark_the_bottleneck_stage() -> None:
    figures = stage_figures(two_stage_run())
    assert [f.bottleneck for f in figures] == [False, True]
    assert figures[1].rows == 10_000 and math.isclose(figures[1].rows_per_s, 1000.0)
    assert math.isclose(figures[1].cpu_util, 1.0)
    assert figures[1].mean_inqueue == 4.0


def test_figures_read_from_running_tasks_say_so_in_the_table_and_the_report() -> None:
    from pipetune.report.html import run_report
    from pipetune.report.terminal import console, run_summary

    run = two_stage_run()
    running = with_(run.executions[0].stats[1], running=True)
    execution = with_(run.executions[0], stats=(run.executions[0].stats[0], running))
    stopped = with_(run, executions=(execution,))
    assert [f.running for f in stage_figures(stopped)] == [False, True]
    terminal = console(width=200)
    with terminal.capture() as shown:
        terminal.print(run_summary(stopped))
    assert "(running)" in shown.get()
    assert "(running)" in run_report(stopped) and "(running)" not in run_report(run)


def test_json_view_names_the_bottleneck_by_stage_key_and_udf() -> None:
    view = run_view(two_stage_run())
    assert [s["key"] for s in view["stages"]] == ["0:read_parquet", "1:map_batches:work"]
    assert view["bottleneck"]["stages"] == ["1:map_batches:work"]
    assert view["bottleneck"]["udfs"] == ["work"]
    assert view["stages"][1]["knobs"] == {"num_cpus": 1.0}
