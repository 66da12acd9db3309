"""Memory per task from what Ray's memory monitor logged: the room on the node, the tasks at once, the batch
that fits; and the doctor's OOM fix that follows from them."""

from __future__ import annotations

from dataclasses import replace

from pipetune.diagnose.capacity import BATCH_MEMORY_SHARE
from pipetune.diagnose.engine import diagnose
from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Level
from pipetune.diagnose.task_memory import GB, batch_that_fits, parse_kill, room
from pipetune.model import Event, EventKind, Run
from tests.unit.builders import op_stats, two_stage_run, with_

# Ray 2.60's kill details, cut to the lines read (a real kill on the memory benchmark, 2026-12-06)
DETAIL = (
    "Memory on the node (IP: 192.0.2.2, ID: d7a4) was 4.50GB used / 23.54GB limit (0.191295)\n"
    "OOM kill reason: Memory usage 4826828800B exceeded threshold of 4802478592B (19.0% of 25276203008B limit)\n"
    "Considered workers: [\n"
    "Selected to kill: (Task: job ID=01, lease ID=01, task name=MapBatches(work), required resources={CPU: 1}, "
    "pid=20871, actual memory used=1.60GB, worker ID=cb)\n"
    "(Task: job ID=01, lease ID=00, task name=MapBatches(work), required resources={CPU: 1}, pid=20872, "
    "actual memory used=1.81GB, worker ID=2f)\n"
    "(Actor(ef44): job ID=01, lease ID=01, task name=datasets_stats_actor:_StatsActor.__init__, "
    "required resources={}, pid=20806, actual memory used=0.10GB, worker ID=fd)\n]"
)
# the form older Rays print (2.x before the bytes line): GB, and the threshold as a fraction of the limit
OLD = (
    "Memory on the node (IP: 10.0.0.1, ID: 1) where the task (task ID: 2, name=MapBatches(work), pid=3, "
    "memory used=7.00GB) was running was 109.73GB / 121.63GB (0.902205), which exceeds the memory usage "
    "threshold of 0.900000. Ray killed this worker (ID: 4) because it was the most recently scheduled task"
)


def killed_run(batch: int | None, peak_gib: float, detail: str = DETAIL) -> Run:
    """two_stage_run's map (100-row tasks) with the kill above and a measured peak USS per task."""
    run = two_stage_run()
    work = with_(run.stages[1], knobs=run.stages[1].knobs.replace(batch_size=batch))  # type: ignore[arg-type]
    stats = op_stats("0/MapBatches(work)_2", 10_000, 20.0, 20.0, tasks=100, peak_uss_bytes=peak_gib * 2**30)
    kill = Event(3.0, EventKind.OOM_KILL, "Ray's memory monitor killed 1 worker(s) running MapBatches(work)")
    [execution] = run.executions
    execution = replace(execution, stats=(execution.stats[0], stats))
    return with_(run, stages=(run.stages[0], work), executions=(execution,), events=(replace(kill, detail=detail),))


def test_a_kill_reads_the_threshold_the_usage_and_each_workers_memory() -> None:
    kill = parse_kill(DETAIL)
    assert kill is not None and (kill.used, kill.threshold) == (4826828800.0, 4802478592.0)
    assert kill.running("MapBatches(work)") == [1.60 * GB, 1.81 * GB]
    assert f"{kill.used / GB:.2f}GB used" in DETAIL  # the unit Ray prints: 4826828800 B as "4.50GB" (not 4.83)
    old = parse_kill(OLD)
    assert old is not None and round(old.used / 2**30, 2) == 109.73
    assert round(old.threshold / 2**30, 3) == round(0.9 * 121.63, 3)
    cut = parse_kill(DETAIL[: DETAIL.index("(Actor(")])  # the list of workers cut off: others' use unknown
    assert cut is not None and not cut.complete
    assert parse_kill("Ray killed a worker") is None


def test_the_room_is_the_threshold_less_everything_else_on_the_node() -> None:
    measured = room(killed_run(None, 2.3), "MapBatches(work)")
    assert measured is not None and measured.at_once == 2
    assert round(measured.bytes / GB, 3) == round((4802478592 - (4826828800 - 3.41 * GB)) / GB, 3)
    assert measured.idle_worker == 0.10 * GB
    assert room(killed_run(None, 2.3), "ReadFiles") is None  # no worker of that operator was considered
    assert room(killed_run(None, 2.3, DETAIL[: DETAIL.index("(Actor(")]), "MapBatches(work)") is None  # cut off
    crowded = DETAIL.replace("4802478592B", "800000000B")  # the others alone over the threshold: not this stage's
    assert room(killed_run(None, 2.3, crowded), "MapBatches(work)") is None


def test_the_batch_that_fits_as_many_tasks_at_once_keeps_within_the_share_of_the_room() -> None:
    facts = Facts.of(killed_run(None, 2.3))  # whole blocks: 100 rows a task, 2.3 GiB at its peak
    measured = room(facts.run, "MapBatches(work)")
    assert measured is not None
    per_row = (2.3 * 2**30 - 0.1 * GB) / 100
    fits = (BATCH_MEMORY_SHARE * measured.bytes / 2 - 0.1 * GB) / per_row
    batch = batch_that_fits(facts, facts.run.stages[1], BATCH_MEMORY_SHARE)
    assert batch is not None and batch <= fits < 2 * batch and batch & (batch - 1) == 0  # a power of two under it
    sixteen = Facts.of(killed_run(16, 2.3))  # the same peak at 16 rows: a row holds 6x as much
    assert batch_that_fits(sixteen, sixteen.run.stages[1], BATCH_MEMORY_SHARE) == batch // 8
    small = Facts.of(killed_run(None, 0.09))  # the task holds less than an idle worker: not the rows' memory
    assert batch_that_fits(small, small.run.stages[1], BATCH_MEMORY_SHARE) is None


def test_the_doctor_shrinks_the_batch_where_the_kills_measured_what_fits_and_raises_num_cpus_where_not() -> None:
    [f] = [f for f in diagnose(killed_run(None, 2.3)).findings if f.rule == "workers-oom"]
    assert f.fix is not None and (f.fix.knob, f.fix.current, f.fix.level) == ("batch_size", None, Level.BATCH)
    assert any(e.metric == "its tasks running at once when killed" and e.value == 2 for e in f.evidence)
    [g] = [f for f in diagnose(killed_run(None, 2.3, detail="")).findings if f.rule == "workers-oom"]
    assert g.fix is not None and (g.fix.knob, g.fix.proposed) == ("num_cpus", 2.0)  # the guide's first step


def test_the_tuner_proposes_the_smaller_batch_as_the_doctor_sized_it() -> None:
    """A batch fix that asks for fewer rows is not handed to the batch search (which only grows batches)."""
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided, View

    run = killed_run(64, 2.3)
    [f] = [f for f in diagnose(run).findings if f.rule == "workers-oom"]
    assert f.fix is not None and f.fix.proposed < 64
    proposal = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert proposal is not None and proposal.settings.to_args() == (f"1.batch_size={f.fix.proposed}",)


def test_once_the_smaller_batch_lost_the_guides_larger_reservation_is_next() -> None:
    """Memory that is not in the rows (a model each task loads) is not cured by a smaller batch: the trial says
    so, and the guide's first step comes next rather than nothing."""
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided, View

    run = killed_run(64, 2.3)
    first = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert first is not None and first.rule == "workers-oom"
    [lost] = first.settings.stages
    tried = frozenset({first.settings.key()})
    view = View(Settings(), run, tried, lost=frozenset({lost}))  # type: ignore[arg-type]
    second = ModelGuided().propose(view)
    assert second is not None and second.rule == "workers-oom (guide)"
    assert second.settings.to_args() == ("1.num_cpus=2",)


def test_settings_that_would_hold_more_than_the_kills_measured_are_never_tried() -> None:
    """Room for two 100-row tasks' worth at 2.47 GB less: 32-row batches fit two at once, not four."""
    from pipetune.diagnose import Limit
    from pipetune.settings import Settings
    from pipetune.tune.feasible import over_memory

    run = two_stage_run()  # 2 CPUs
    limits = {1: Limit(3.35 * GB, 2, base=0.1 * GB, per_row=0.0237 * GB, task_rows=100.0, rows=100.0)}

    def over(**knobs: object) -> str | None:
        return over_memory(run, Settings.from_config({"stages": {"1": knobs}}), limits)

    assert over(batch_size=32) is None  # 2 x 0.86 GB
    assert over(batch_size=64) is not None  # 2 x 1.62 GB: under the room, over the guide's 85% of it
    assert over(batch_size=32, num_cpus=0.5) == (
        "stage 1:map_batches:work: 4 tasks at once would hold more memory than the kills measured"
    )
    assert over(batch_size=32, num_cpus=0.5, concurrency=2) is None  # the cap keeps it at two
    assert over(batch_size=32, num_cpus=0.5, concurrency=(1, 2)) is None  # an autoscaling pool: at most two
    assert over(batch_size=32, num_cpus=0.0) is not None  # no reservation: no bound on the tasks at once
    assert over() is not None  # whole tasks, two at once: what was killed
    assert over_memory(run, Settings(), {}) is None  # nothing measured: nothing judged


def test_the_study_keeps_the_tightest_room_any_run_measured_and_the_policy_respects_it() -> None:
    """A waiting stage the model would give forty slots (0.05 CPU) is not proposed them where kills measured
    room for ten, and is where forty fit."""
    from pipetune.diagnose import Limit
    from pipetune.settings import Settings
    from pipetune.tune.feasible import over_memory
    from pipetune.tune.policy import ModelGuided, View
    from tests.unit.test_rules import download_run

    run = download_run()
    free = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    tight = {1: Limit(2.0 * GB, 2, 0.1 * GB, 0.01 * GB, task_rows=10.0, rows=10.0)}  # 0.2 GB a task: 10 fit
    assert free is not None and over_memory(run, free.settings, tight) is not None  # 40 tasks at 0.05 CPU
    bounded = ModelGuided().propose(View(Settings(), run, frozenset(), memory=tight))  # type: ignore[arg-type]
    assert bounded is None  # its one move is ruled out, and the run sets no knob to take back to Ray's default
    roomy = {1: replace(tight[1], room=100 * GB)}  # 40 tasks of 0.2 GB fit
    same = ModelGuided().propose(View(Settings(), run, frozenset(), memory=roomy))  # type: ignore[arg-type]
    assert same is not None and same.settings.to_args() == free.settings.to_args()


def test_the_study_keeps_the_tightest_room_and_fits_task_memory_over_its_batch_sizes() -> None:
    """Kills at 100 rows and at 32 with the same peak: the memory is not in the rows (a model each task loads),
    which one run alone can only assume it is; where the peaks scale with the rows, the line says so."""
    from pipetune._serde import to_plain
    from pipetune.diagnose import Limit
    from pipetune.tune.steps import memory_limits
    from pipetune.tune.study import Study

    def stored(seq: int, limits: dict[str, object]) -> dict[str, object]:
        return {"seq": seq, "role": "trial" if seq else "baseline", "config": {}, "change": "", "settings": [],
                "rule": "", "reason": "", "run_id": f"r{seq}", "status": "succeeded", "wall_s": 3.0, "rows": 10,
                "verdict": "kept", "memory_limits": limits}  # fmt: skip

    def limits(*runs: list[float]) -> dict[int, Limit]:
        return memory_limits(Study.fold("s1", {"script": "pipe.py"}, [("trial", stored(i, {"1": to_plain(Limit(*r))}))
                                                                       for i, r in enumerate(runs)]))  # fmt: skip

    whole, fixed = [3e9, 2, 1e8, 2.4e7, 100.0, 100.0], [2.8e9, 2, 1e8, 7.5e7, 100.0, 32.0]  # both peak at 2.5 GB
    [kept] = limits(whole, fixed).values()
    assert kept.room == 2.8e9 and kept.per_row == 0.0 and round(kept.base / 1e9, 2) == 2.5
    assert kept.holds(1, None, 0.9) and not kept.holds(2, 16)  # one whole task fits; two at any batch do not
    scaled = [2.8e9, 2, 1e8, 2.4e7, 100.0, 32.0]  # 0.87 GB at 32 rows: the same line as at 100
    [line] = limits(whole, scaled).values()
    assert round(line.per_row / 1e7, 3) == 2.4 and round(line.base / 1e8, 3) == 1.0
    assert limits(whole) == {1: Limit(*whole)}


def test_a_read_fused_into_the_killed_tasks_does_not_block_every_configuration() -> None:
    """The read and the map ran in one operator's tasks: the room is judged at the map's batches, once. (Judged
    for the read too, at whole tasks, it had ruled out every configuration: the study stopped after its baseline.)"""
    from pipetune.diagnose import oom_limits
    from pipetune.model import Operator
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided, View

    run = killed_run(None, 2.3, DETAIL.replace("task name=MapBatches(work)", "task name=ReadFiles->MapBatches(work)"))
    [execution] = run.executions
    fused = Operator("0/ReadFiles->MapBatches(work)_1", "ReadFiles->MapBatches(work)", (0, 1), num_cpus=1.0)
    stats = replace(execution.stats[1], uid=fused.uid)
    run = with_(run, executions=(replace(execution, operators=(fused,), stats=(stats,)),))
    limits = oom_limits(Facts.of(run))
    assert list(limits) == [1]
    proposal = ModelGuided().propose(View(Settings(), run, frozenset(), memory=limits))  # type: ignore[arg-type]
    assert proposal is not None and proposal.rule == "workers-oom" and proposal.settings.stages[0].knob == "batch_size"


def test_the_tuner_takes_the_doctors_halved_batch_after_a_cuda_oom_as_it_is() -> None:
    """The other batch fix that asks for fewer rows (the guide: CUDA OOM -> halve the batch). Handed to the batch
    search, which only grows batches, it had become no proposal or a larger batch."""
    from pipetune.model import Event, EventKind
    from pipetune.settings import Settings
    from pipetune.tune.policy import ModelGuided, View
    from tests.unit.test_rules import gpu_run

    oom = Event(2.0, EventKind.UDF_ERROR, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", 1)
    run = with_(gpu_run(90, 30, batch=64), events=(oom,))
    proposal = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert proposal is not None and proposal.rule == "gpu-oom"
    assert proposal.settings.to_args() == ("1.batch_size=32",)
