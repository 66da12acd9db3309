"""The tuner's decisions, on hand-built runs: no Ray."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipetune.diagnose.facts import BatchCost, Facts
from pipetune.diagnose.noise import noise_band
from pipetune.model import Dist, Knobs, NodeInfo, Operator, Run, Sample, Stage, StageKind
from pipetune.settings import Settings, StageSetting
from pipetune.tune.bound import bound
from pipetune.tune.feasible import unschedulable
from pipetune.tune.judge import judge, time_box
from pipetune.tune.policy import ModelGuided, View, candidates, measurable_defaults
from pipetune.tune.steps import Finish, Step, conclude, next_step, runs_left
from pipetune.tune.study import Role, Spec, Study, Trial, Verdict, trial_payload, with_settings
from tests.unit.builders import DOMINANT_FRAME_S, node_cpu, op_stats, pipeline, stage, two_stage_run, with_

# -- runs ------------------------------------------------------------------------------------------------


def etl_run(batch: int = 64, wall: float = 24.0) -> object:
    """read -> map_batches(enrich) fused into one task over one block: tiny batches, fixed costs dominate."""
    read = stage(0, "read_parquet", kind=StageKind.READ)
    enrich = stage(1, "map_batches", "enrich", num_cpus=1.0, batch_size=batch)
    op = Operator("0/Read->MapBatches(enrich)_1", "Read->MapBatches(enrich)", (0, 1), num_cpus=1.0)
    frame_s = 340_000 / batch * DOMINANT_FRAME_S
    stats = op_stats(op.uid, 340_000, wall - 2, wall - 2, tasks=1, stage_time_s=(1.0, wall - 3), frame_s=frame_s)
    stats = dataclasses.replace(stats, block_rows=Dist.of([340_000.0]), block_bytes=Dist.of([34e6]))
    return pipeline([(read, op, stats), (enrich, op, stats)], wall=wall - 1)


def actor_run(concurrency: int = 1, num_cpus: float = 1.0) -> object:
    """range -> map_batches(clean) -> map_batches(Embed) on a pool that limits everything."""
    src = stage(0, "range", kind=StageKind.READ)
    clean = stage(1, "map_batches", "clean", batch_size=None)
    embed = Stage(
        2,
        "map_batches",
        "Embed",
        "pipe.py:12",
        StageKind.ACTOR,
        Knobs(num_cpus=num_cpus, batch_size=16, concurrency=concurrency, compute="actors"),
    )
    o1 = Operator("0/Range->MapBatches(clean)_1", "Range->MapBatches(clean)", (0, 1), num_cpus=1.0)
    o2 = Operator("0/MapBatches(Embed)_2", "MapBatches(Embed)", (2,), "actors", concurrency, num_cpus)
    s1 = op_stats(o1.uid, 3000, 1.0, 1.0, tasks=10)
    s2 = op_stats(o2.uid, 3000, 20.0, 20.0, tasks=100)
    return pipeline([(src, o1, s1), (clean, o1, s1), (embed, o2, s2)], wall=20.0)


# -- judge -----------------------------------------------------------------------------------------------


def test_a_change_inside_the_noise_is_not_a_win() -> None:
    assert judge([10.0], [9.7], can_repeat=True).verdict is Verdict.WITHIN_NOISE
    assert judge([10.0, 11.0], [10.0], can_repeat=True).noise_pct == pytest.approx(100 / 10.5)


def test_a_small_win_seen_once_is_repeated_and_a_large_one_kept() -> None:
    assert judge([10.0], [9.2], can_repeat=True).verdict is Verdict.REPEAT
    assert judge([10.0], [9.2], can_repeat=False).verdict is Verdict.UNCONFIRMED  # the last trial: not kept
    assert judge([10.0], [5.0], can_repeat=True).verdict is Verdict.KEPT
    assert judge([10.0], [12.0], can_repeat=True).verdict is Verdict.SLOWER


def test_the_time_box_is_the_incumbent_plus_the_noise() -> None:
    assert noise_band([10.0], []) == 5.0
    assert time_box([10.0]) == pytest.approx(10.0 * 1.05)


def test_a_run_past_its_time_box_is_one_the_judge_calls_slower() -> None:
    for incumbent in ([10.0], [10.0, 10.4], [10.0, 12.0, 11.0]):
        box = time_box(incumbent)
        assert judge(incumbent, [box * 1.001], can_repeat=True).verdict is Verdict.SLOWER
        assert judge(incumbent, [box * 0.999], can_repeat=True).verdict is not Verdict.SLOWER


# -- feasibility -----------------------------------------------------------------------------------------


def test_an_actor_pool_that_leaves_the_tasks_no_cpu_is_refused() -> None:
    run = actor_run()
    assert unschedulable(run, Settings.from_config({"stages": {"2": {"concurrency": 2}}})) is not None  # type: ignore[arg-type]
    assert unschedulable(run, Settings.from_config({"stages": {"2": {"concurrency": 2, "num_cpus": 0.5}}})) is None  # type: ignore[arg-type]


def test_a_task_bigger_than_any_node_is_refused() -> None:
    run = with_(actor_run(), env=dataclasses.replace(actor_run().env, nodes=(NodeInfo("n", "h", {"CPU": 2.0}),)))  # type: ignore[attr-defined]
    why = unschedulable(run, Settings.from_config({"stages": {"1": {"num_cpus": 4}}}))  # type: ignore[arg-type]
    assert why is not None and "largest node" in why


# -- the policy ------------------------------------------------------------------------------------------


def test_tiny_batches_are_grown_first_when_fixed_costs_dominate() -> None:
    proposal = ModelGuided().propose(View(Settings(), etl_run(), frozenset()))  # type: ignore[arg-type]
    assert proposal is not None and proposal.settings.to_args()[0].startswith("1.batch_size=")
    [grown] = [s for s in proposal.settings.stages if s.knob == "batch_size"]  # alone, or in the joint optimum
    assert grown.value == "default" or (isinstance(grown.value, int) and grown.value >= 64 * 16)  # or whole blocks
    assert proposal.predicted > 2


def test_a_predicted_gain_inside_the_noise_is_never_proposed() -> None:
    run = etl_run()
    costs = {1: BatchCost(DOMINANT_FRAME_S, 1e-5, (64, 256))}  # measured at two sizes: a prediction, not a bound
    best = ModelGuided().propose(View(Settings(), run, frozenset(), batch_costs=costs))  # type: ignore[arg-type]
    assert best is not None and best.predicted > 1 and not best.at_least
    just_below = (best.predicted - 1) * 100 * 0.99
    same = ModelGuided().propose(View(Settings(), run, frozenset(), noise_pct=just_below, batch_costs=costs))  # type: ignore[arg-type]
    assert same is not None and same.settings == best.settings  # a gain that clears the noise is proposed
    noise = (best.predicted - 1) * 100
    noisy = ModelGuided().propose(View(Settings(), run, frozenset(), noise_pct=noise, batch_costs=costs))  # type: ignore[arg-type]
    assert noisy is None or noisy.settings != best.settings  # no longer measurable: not proposed
    assert noisy is None or noisy.predicted == 1.0 or noisy.predicted > 1 + (best.predicted - 1)


def test_a_limiting_actor_pool_grows_with_smaller_reservations_so_it_fits() -> None:
    proposal = ModelGuided().propose(View(Settings(), actor_run(), frozenset()))  # type: ignore[arg-type]
    assert proposal is not None
    assert set(proposal.settings.to_args()) == {"2.concurrency=2", "2.num_cpus=0.5"}


def test_nothing_tried_twice() -> None:
    run = actor_run()
    first = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert first is not None
    tried = frozenset({with_settings(Settings(), first.settings).key()})
    second = ModelGuided().propose(View(Settings(), run, tried))  # type: ignore[arg-type]
    assert second is None or second.settings != first.settings


def test_a_proposal_that_would_hang_is_never_made() -> None:
    from pipetune.diagnose.findings import Level
    from pipetune.tune.policy import Proposal, viable

    run = actor_run()
    view = View(Settings(), run, frozenset())  # type: ignore[arg-type]
    hangs = Proposal(
        Settings.from_args(["2.concurrency=2"]), "stage 2 concurrency 1 -> 2", "test", "", Level.PARALLELISM, 2.0
    )
    assert not viable(hangs, view)  # two 1-CPU actors on 2 CPUs leave the upstream tasks nothing
    chosen = ModelGuided().propose(view)
    assert chosen is not None
    assert unschedulable(run, with_settings(Settings(), chosen.settings)) is None  # type: ignore[arg-type]


# -- the study's state and the loop's steps --------------------------------------------------------------


def trial(seq: int, role: Role, wall: float, verdict: Verdict, config: dict | None = None) -> Trial:  # type: ignore[type-arg]
    return Trial(
        seq,
        role,
        Settings.from_config(config or {}),
        "",
        Settings(),
        "",
        "",
        f"r{seq}",
        "succeeded",
        wall,
        1000,
        verdict,
    )


def test_the_study_is_the_fold_of_its_events() -> None:
    spec = {"script": "pipe.py", "budget": 3}
    events = [
        ("trial-started", {"run_id": "r0"}),
        ("trial", trial_payload(trial(0, Role.BASELINE, 10.0, Verdict.BASELINE)) | {"run_id": "r0"}),
        ("trial-started", {"run_id": "r1"}),
    ]
    study = Study.fold("s1", spec, events)
    assert study.in_flight == ("r1",)
    assert study.incumbent() is not None and study.incumbent().run_id == "r0"  # type: ignore[union-attr]
    assert study.runs_used == 0


def test_stored_payloads_keep_the_config_and_set_forms_and_load_back_typed() -> None:
    stored = {  # a trial event as every version of pipetune has stored it
        "seq": 1, "role": "trial", "config": {"stages": {"2": {"concurrency": [1, 4], "num_cpus": 0.5}}, "context": {}},
        "change": "stage 2 concurrency 1 -> 1-4", "settings": ["2.concurrency=1-4"], "rule": "r", "reason": "",
        "run_id": "r1", "status": "succeeded", "wall_s": 3.0, "rows": 10, "verdict": "kept",
    }  # fmt: skip
    spec = {"script": "pipe.py", "start": {"stages": {"1": {"batch_size": 64}}, "context": {}}}
    study = Study.fold("s1", spec, [("trial", stored)])
    loaded = study.trials[0]
    assert loaded.settings == Settings((StageSetting("2", "concurrency", (1, 4)),))
    assert loaded.config.for_stage(stage(2, "map_batches", "Embed")) == {"concurrency": (1, 4), "num_cpus": 0.5}
    assert study.spec.start.to_args() == ("1.batch_size=64",)
    defaults = {"improvement_pct": None, "noise_pct": None, "findings": [], "measured_s": None, "probe": False}
    assert trial_payload(loaded) == {
        **stored,
        **defaults,
        "consumed": {},
        "consumed_rows": {},
        "sink": None,
        "batch_points": {},
        "memory_limits": {},
    }


def test_a_study_stored_by_an_older_pipetune_folds_into_typed_settings(tmp_path: Path) -> None:
    from pipetune.store import open_store
    from tests.unit.test_store import OLD_STORE

    path = tmp_path / "old.db"
    path.write_bytes(OLD_STORE.read_bytes())
    store = open_store(path)
    [(study_id, _, _)] = store.studies()
    study = Study.fold(*store.load_study(study_id))
    assert [(t.role, t.settings.to_args()) for t in study.trials] == [
        (Role.BASELINE, ()),
        (Role.TRIAL, ("1.batch_size=128",)),
    ]
    assert study.trials[1].config == Settings((StageSetting("1", "batch_size", 128),))


def test_first_comes_the_baseline_then_a_proposal_then_the_budget_stops_it() -> None:
    run = etl_run()
    empty = Study("s", Spec("pipe.py", budget=1))
    assert next_step(empty, None, ModelGuided()) == Step(Role.BASELINE, Settings())
    base = dataclasses.replace(empty, trials=(trial(0, Role.BASELINE, 24.0, Verdict.BASELINE),))
    step = next_step(base, run, ModelGuided())  # type: ignore[arg-type]
    assert isinstance(step, Step) and step.role is Role.TRIAL and step.time_box_s is not None
    kept = dataclasses.replace(trial(1, Role.TRIAL, 6.0, Verdict.KEPT), config=step.config)
    done = dataclasses.replace(base, trials=(*base.trials, kept))
    assert isinstance(next_step(done, run, ModelGuided()), Finish)  # type: ignore[arg-type]


def test_a_failed_baseline_ends_the_study_with_an_error() -> None:
    failed = dataclasses.replace(trial(0, Role.BASELINE, 1.0, Verdict.BASELINE), status="failed")
    finish = next_step(Study("s", Spec("pipe.py"), (failed,)), None, ModelGuided())
    assert isinstance(finish, Finish) and not finish.ok


def test_two_reverted_trials_in_a_row_are_a_plateau_once_ray_datas_defaults_are_measured() -> None:
    """The study never stops with Ray Data's own defaults (the script's knob arguments removed) unmeasured: after
    two losing trials they are the next trial, and once they lose too, the study ends."""
    trials = (
        trial(0, Role.BASELINE, 10.0, Verdict.BASELINE),
        trial(1, Role.TRIAL, 10.2, Verdict.WITHIN_NOISE, {"stages": {"1": {"num_cpus": 0.5}}}),
        trial(2, Role.TRIAL, 13.0, Verdict.SLOWER, {"stages": {"1": {"num_cpus": 2}}}),
    )
    study = Study("s", Spec("pipe.py", budget=5), trials)
    step = next_step(study, etl_run(), ModelGuided())  # type: ignore[arg-type]
    assert isinstance(step, Step) and step.rule == "ray-default"
    assert step.settings.to_args() == ("1.batch_size=default",)  # etl_run sets one knob, at Ray's num_cpus
    lost = dataclasses.replace(trial(3, Role.TRIAL, 11.0, Verdict.SLOWER), config=step.config)
    finish = next_step(dataclasses.replace(study, trials=(*trials, lost)), etl_run(), ModelGuided())  # type: ignore[arg-type]
    assert isinstance(finish, Finish) and "levelled off" in finish.reason


def test_the_last_run_a_time_budget_fits_goes_to_ray_datas_unmeasured_defaults() -> None:
    """A run budget of ten, but a time budget of 40 s with 24 s spent and 11 s runs: one run fits, and it is
    the last, so Ray Data's defaults take it while unmeasured; with 6.5 s more spent, none fits."""
    lost = trial(1, Role.TRIAL, 13.0, Verdict.SLOWER, {"stages": {"1": {"num_cpus": 2}}})
    study = Study("s", Spec("pipe.py", budget=10, time_s=40.0), (trial(0, Role.BASELINE, 11.0, Verdict.BASELINE), lost))
    assert runs_left(study) == 1
    step = next_step(study, etl_run(), ModelGuided())  # type: ignore[arg-type]
    assert isinstance(step, Step) and step.rule == "ray-default"
    later = dataclasses.replace(study, trials=(*study.trials[:1], dataclasses.replace(lost, wall_s=19.5)))
    assert runs_left(later) == 0 and isinstance(next_step(later, etl_run(), ModelGuided()), Finish)  # type: ignore[arg-type]


def test_a_failed_trial_is_no_sign_of_a_plateau_and_the_study_goes_on() -> None:
    """A lost trial, then Ray Data's defaults failing: the failure measured no gain, so while the budget lasts
    the study asks the policy again instead of ending as levelled off."""
    defaults = {"stages": {"1": {"batch_size": "default"}}}  # etl_run sets one knob: Ray Data's defaults, failed
    failed = trial(2, Role.TRIAL, 0.0, Verdict.FAILED, defaults)
    failed = dataclasses.replace(failed, status="failed", rule="ray-default")
    trials = (
        trial(0, Role.BASELINE, 10.0, Verdict.BASELINE),
        trial(1, Role.TRIAL, 13.0, Verdict.SLOWER, {"stages": {"1": {"num_cpus": 2}}}),
        failed,
    )
    step = next_step(Study("s", Spec("pipe.py", budget=5), trials), etl_run(), ModelGuided())  # type: ignore[arg-type]
    assert isinstance(step, Step) and step.role is Role.TRIAL


def test_ray_datas_defaults_are_not_run_where_their_whole_block_batches_already_failed() -> None:
    """etl_run's one task is 340,000 rows: with a 100,000-row batch failed, Ray Data's defaults (whole blocks as
    batches) would fail again, so the budget's last run goes to the policy instead of them."""
    failed = trial(1, Role.TRIAL, 0.0, Verdict.FAILED, {"stages": {"1": {"batch_size": 100_000}}})
    failed = dataclasses.replace(failed, status="failed", settings=Settings.from_args(["1.batch_size=100000"]))
    trials = (
        trial(0, Role.BASELINE, 10.0, Verdict.BASELINE),
        failed,
        trial(2, Role.TRIAL, 13.0, Verdict.SLOWER, {"stages": {"1": {"num_cpus": 2}}}),
    )
    step = next_step(Study("s", Spec("pipe.py", budget=3), trials), etl_run(), ModelGuided())  # type: ignore[arg-type]
    assert isinstance(step, Step) and step.rule != "ray-default"
    assert all(s.value != "default" for s in step.settings.stages)


def test_ray_datas_defaults_for_one_knob_are_run_only_where_the_model_predicts_a_gain_beyond_the_noise() -> None:
    """etl_run sets one knob, its batch: Ray Data's defaults are that batch's default (whole blocks of 340,000
    rows), which the model predicts. From 64 rows they gain beyond the noise; from 4,096 they do not, and the
    study's last run is not spent on them."""

    def defaults(batch: int) -> object:
        run = etl_run(batch)
        return measurable_defaults(Facts.of(run), View(Settings(), run, frozenset(), noise_pct=5.0))  # type: ignore[arg-type]

    assert defaults(64) is not None and defaults(4096) is None


def test_conclude_compares_against_the_incumbent_median() -> None:
    study = Study("s", Spec("pipe.py", budget=3), (trial(0, Role.BASELINE, 24.0, Verdict.BASELINE),))
    step = Step(Role.TRIAL, Settings.from_config({"stages": {"1": {"batch_size": 4096}}, "context": {}}))
    fast = with_(etl_run(4096, 6.0), wall_s=6.0)  # type: ignore[arg-type]
    verdict, gain, *_ = conclude(study, step, fast)  # type: ignore[arg-type]
    assert verdict is Verdict.KEPT and gain == pytest.approx(75.0)


def test_a_repeat_never_takes_the_budgets_last_run_from_ray_datas_unmeasured_defaults() -> None:
    """A gain within twice the noise is repeated only where a run is left after the repeat for Ray Data's
    defaults (the budget's last run goes to them while they are unmeasured); else it is not kept."""
    lost = trial(1, Role.TRIAL, 13.0, Verdict.SLOWER, {"stages": {"1": {"num_cpus": 2}}})
    trials = (trial(0, Role.BASELINE, 10.0, Verdict.BASELINE), lost)
    study = Study("s", Spec("pipe.py", budget=3), trials)
    step = Step(Role.TRIAL, Settings.from_config({"stages": {"1": {"num_cpus": 0.5}}, "context": {}}))
    seen, incumbent = with_(etl_run(64, 9.2), wall_s=9.2), etl_run()  # type: ignore[arg-type]
    assert conclude(study, step, seen, incumbent).verdict is Verdict.UNCONFIRMED  # etl_run sets a batch
    defaults = {"stages": {"1": {"batch_size": "default"}}}  # Ray Data's defaults from etl_run's settings
    measured = dataclasses.replace(study, trials=(trials[0], trial(1, Role.TRIAL, 13.0, Verdict.SLOWER, defaults)))
    assert conclude(measured, step, seen, incumbent).verdict is Verdict.REPEAT
    roomy = dataclasses.replace(study, spec=Spec("pipe.py", budget=4))
    assert conclude(roomy, step, seen, incumbent).verdict is Verdict.REPEAT  # the repeat, and then the defaults
    itself = Step(Role.TRIAL, Settings.from_config({**defaults, "context": {}}))  # by a single-knob default move
    assert conclude(study, itself, seen, incumbent).verdict is Verdict.REPEAT  # measured by its repeat too


# -- the bound -------------------------------------------------------------------------------------------


def test_the_bound_is_fixed_time_plus_cpu_work_over_the_cores() -> None:
    b = bound(Facts.of(etl_run(batch=340_000)))  # type: ignore[arg-type]  # a whole block per batch
    assert b is not None and b.resource == "CPU"
    assert b.fixed_s == pytest.approx(1.0)
    assert b.work_s == pytest.approx(22.0 / 2)
    assert b.gap_pct is not None and b.gap_pct > 0


def test_a_study_stops_when_the_run_is_closer_to_its_bound_than_the_runs_noise() -> None:
    from pipetune.tune.steps import _should_stop

    run = two_stage_run(read_busy=1.0, map_busy=17.0)  # 11 s against a 10 s bound: 10% above it
    assert bound(Facts.of(run)).gap_pct == pytest.approx(10.0)  # type: ignore[union-attr]
    study = Study("s1", Spec("pipe.py"), ())
    assert _should_stop(study, run, [11.0, 11.2, 10.9]) is None  # 3% spread (5% floor): a gain could still show
    stop = _should_stop(study, run, [11.0, 12.4, 10.9])  # 13% spread: no gain within 10% could be told
    assert stop is not None and "of the hardware bound" in stop.reason


def test_the_gap_above_the_bound_is_split_by_what_held_the_cores() -> None:
    run = two_stage_run(read_busy=1.0, map_busy=9.0, map_cpu_s=5.0)  # 6 s of CPU over 2 cores: 3 s of work
    reserved = {"0/ReadFiles_1": 0.5, "0/MapBatches(work)_2": 1.0}  # 1.5 of the 2 cores reserved throughout
    samples = tuple(Sample(float(t), uid, {"cpu_reserved": c}) for t in range(1, 12) for uid, c in reserved.items())
    b = bound(Facts.of(node_cpu(with_(run, op_samples=samples), pct=50.0)))
    assert b is not None and b.gap is not None and b.gap_pct == pytest.approx((11 / 4 - 1) * 100)
    assert b.gap.held_s == pytest.approx(10 * 0.75 - 3)  # reserved, not computing
    assert b.gap.free_s == pytest.approx(10 * 0.25)  # no task's
    assert b.gap.held_s + b.gap.free_s == pytest.approx(b.wall_s - b.bound_s)  # type: ignore[operator]
    assert b.gap.outside_s == pytest.approx(10 * 0.5 - 3)  # the nodes' CPU beyond the tasks'
    assert "no task held the cores" in b.describe()


def test_without_reservations_sampled_the_gap_is_not_split() -> None:
    b = bound(Facts.of(two_stage_run(read_busy=1.0, map_busy=9.0, map_cpu_s=5.0)))
    assert b is not None and b.gap is None and "no task held" not in b.describe()


def test_cpu_time_spent_on_small_batches_is_no_floor() -> None:
    b = bound(Facts.of(etl_run(batch=64)))  # type: ignore[arg-type]
    assert b is not None and b.bound_s is None and b.resource == "batching"  # larger batches remove work
    assert "smaller than its tasks' rows" in b.describe()


def test_the_static_settings_take_the_matrix_rows() -> None:
    from pipetune.plan.static import static_settings

    settings = static_settings(etl_run())  # type: ignore[arg-type]
    assert settings["stages"]["1"] == {"num_cpus": 0.25, "batch_size": 1000}  # CPU preprocessing row
    assert "0" not in settings["stages"]  # sources keep their own settings


def test_a_waiting_stage_reserves_what_its_tasks_burn() -> None:
    from tests.unit.builders import node_cpu

    src = stage(0, "range", kind=StageKind.READ)
    fetch = stage(1, "map", "fetch", num_cpus=1.0)
    o0 = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    o1 = Operator("0/Map(fetch)_2", "Map(fetch)", (1,), num_cpus=1.0)
    s0 = op_stats(o0.uid, 600, 0.5, 0.5, tasks=60)
    s1 = op_stats(o1.uid, 600, 30.0, 0.9, tasks=60)  # 0.03 cores per busy second: waiting on the network
    run = node_cpu(pipeline([(src, o0, s0), (fetch, o1, s1)], wall=15.0), 12.0, start=1, end=16)
    proposal = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert proposal is not None and proposal.settings.to_args() == ("1.num_cpus=0.05",)  # 0.03 a task, rounded up
    tried = frozenset({with_settings(Settings(), proposal.settings).key()})
    lost = frozenset(proposal.settings.stages)
    backed = ModelGuided().propose(View(Settings(), run, tried, lost=lost))  # type: ignore[arg-type]
    assert backed is not None and backed.settings.to_args() == ("1.num_cpus=0.224",)  # sqrt(1 x 0.05): half-way


def test_a_waiting_stage_whose_workers_were_oom_killed_gets_the_oom_fix_not_a_smaller_reservation() -> None:
    """The measured burn sizes a lowered reservation only: a stage that mostly waits but whose tasks were
    OOM-killed side by side is proposed the guide's raise (fewer at once), not its burn (seen on the
    benchmark's memory pipeline: the raise to 2 CPUs became 0.1, and the study had nothing left to try)."""
    from pipetune.model import Event, EventKind
    from tests.unit.builders import node_cpu

    src = stage(0, "range", kind=StageKind.READ)
    hold = stage(1, "map_batches", "hold", num_cpus=1.0)
    op = Operator("0/ReadRange->MapBatches(hold)_1", "ReadRange->MapBatches(hold)", (0, 1), num_cpus=1.0)
    stats = op_stats(op.uid, 600, 30.0, 0.9, tasks=6)  # waits (sleeps) while it holds its memory
    run = node_cpu(pipeline([(src, op, stats), (hold, op, stats)], wall=40.0), 12.0, start=1, end=41)
    kill = Event(3.0, EventKind.OOM_KILL, "Ray's memory monitor killed 1 worker(s) running MapBatches(hold)")
    run = with_(run, events=(kill,))
    proposal = ModelGuided().propose(View(Settings(), run, frozenset()))  # type: ignore[arg-type]
    assert proposal is not None and proposal.rule == "workers-oom"
    assert proposal.settings.to_args() == ("1.num_cpus=2",)


def test_a_batch_size_that_failed_is_halved_not_retried() -> None:
    run = etl_run()
    tried = frozenset({Settings.from_config({"stages": {"1": {"batch_size": 4096}}}).key()})
    view = View(Settings(), run, tried, frozenset({StageSetting("1", "batch_size", 4096)}))  # type: ignore[arg-type]
    proposal = ModelGuided().propose(view)
    assert proposal is not None and proposal.settings.to_args() == ("1.batch_size=512",)  # sqrt(64 x 4096)
    assert proposal.change == "stage 1 batch_size 64 -> 512"
    near = View(Settings(), etl_run(batch=2048), frozenset(), frozenset({StageSetting("1", "batch_size", 4096)}))  # type: ignore[arg-type]
    closer = ModelGuided().propose(near)
    assert closer is None or "batch_size=4096" not in closer.settings.to_args()[0]
    whole = View(Settings(), run, frozenset(), frozenset({StageSetting("1", "batch_size", "default")}))  # type: ignore[arg-type]
    under = ModelGuided().propose(whole)  # whole blocks failed: every proposal stays under a block's rows
    assert under is not None and under.settings.to_args()[0] != "1.batch_size=default"


def test_no_larger_pool_once_its_actors_burn_every_core() -> None:
    busy = actor_run(concurrency=2, num_cpus=0.5)
    facts = Facts.of(busy)  # type: ignore[arg-type]
    rate = next(r for r in facts.rates.values() if "Embed" in r.name)
    assert rate.cores_per_task == pytest.approx(1.0)
    moves = [p for p in candidates(facts) if p.rule == "balance (model)"]
    assert moves == []  # two actors already burn both cores


def test_ray_datas_defaults_are_always_weighed_one_knob_and_all_at_once() -> None:
    from pipetune.tune.policy import candidates

    run = actor_run(num_cpus=0.5)  # the pool stage sets num_cpus, batch_size and concurrency
    moves = {p.settings.to_args(): p for p in candidates(Facts.of(run))}  # type: ignore[arg-type]
    every = ("2.num_cpus=default", "2.batch_size=default", "2.concurrency=default")
    at_default = {p.settings.to_args() for p in candidates(Facts.of(actor_run(num_cpus=1.0)))}  # type: ignore[arg-type]
    assert not any("2.num_cpus=default" in args for args in at_default)  # 1 CPU is Ray's default: no change
    assert every in moves and moves[every].predicted == 1.0  # not predicted: the trial decides
    assert ("2.batch_size=default",) in moves  # whole blocks, predicted from the measured per-batch cost
    on_gpu = tuple(dataclasses.replace(s, knobs=s.knobs.replace(num_gpus=1.0)) for s in run.stages)  # type: ignore[attr-defined]
    gpu_moves = [a for p in candidates(Facts.of(dataclasses.replace(run, stages=on_gpu))) for a in p.settings.to_args()]  # type: ignore[call-overload]
    assert "2.batch_size=default" not in gpu_moves  # Ray requires an explicit batch size on a GPU stage


def _fused_map_and_write(cores: float) -> Run:
    """range -> map(work) fused with its write at 1 CPU each, 60 tasks burning ``cores`` each, 12% CPU."""
    from dataclasses import replace

    from tests.unit.builders import node_cpu

    work, write = stage(1, "map", "work", num_cpus=1.0), stage(2, "write_parquet", kind=StageKind.WRITE)
    read = replace(stage(0, "range", kind=StageKind.READ), takes=("override_num_blocks",))
    r_op = Operator("0/ReadRange_1", "ReadRange", (0,), num_cpus=1.0)
    op = Operator("0/Map(work)->Write_2", "Map(work)->Write", (1, 2), num_cpus=1.0)
    stats = op_stats(op.uid, 600, 30.0, 30.0 * cores, tasks=60, stage_time_s=(29.9, 0.1))
    run = pipeline([(read, r_op, op_stats(r_op.uid, 600, 0.5, 0.5, tasks=60)), (work, op, stats),
                    (write, op, stats)], wall=15.0)  # fmt: skip
    return node_cpu(run, 12.0)


def test_a_lowered_reservation_moves_every_stage_it_names_each_on_its_own_stage() -> None:
    """The doctor's fix lowers the map and the write fused with it; the trial must run exactly that (the
    stages' settings once all landed on the first stage, so the last value won and the write kept 1 CPU)."""
    low = [p for p in candidates(Facts.of(_fused_map_and_write(0.45))) if p.rule == "low-cpu"]
    assert low, "a low-CPU proposal"
    args = low[0].settings.to_args()
    assert sorted(a.split("=")[0] for a in args) == ["1.num_cpus", "2.num_cpus"]
    assert len({a.split("=")[1] for a in args}) == 1  # one value: the operator stays fused


def test_a_waiting_stage_reserves_what_it_burns_and_only_it_moves() -> None:
    low = [p for p in candidates(Facts.of(_fused_map_and_write(0.015))) if p.rule == "low-cpu"]
    assert low and low[0].settings.to_args() == ("1.num_cpus=0.025",)


def test_a_repartition_tuning_kept_is_weighed_against_ray_datas_default_alone_and_with_the_rest() -> None:
    """A split kept early rides along with the changes after it unless a trial asks whether it still pays:
    removing it (Ray Data's default: no such call) is a move of its own, and Ray Data's defaults drop it too."""
    from pipetune.tune.policy import ray_defaults

    split = [dataclasses.replace(s, knobs=s.knobs.replace(repartition=8)) if s.index == 0 else s
             for s in etl_run(batch=2048).stages]  # type: ignore[attr-defined]  # fmt: skip
    run = dataclasses.replace(etl_run(batch=2048), stages=tuple(split))  # type: ignore[type-var]
    moves = {p.settings.to_args(): p for p in candidates(Facts.of(run))}
    assert moves[("0.repartition=default",)].predicted == 1.0  # not predicted: the trial decides
    every = ray_defaults(Facts.of(run))
    assert every is not None and set(every.settings.to_args()) == {"0.repartition=default", "1.batch_size=default"}
    plain = {p.settings.to_args() for p in candidates(Facts.of(etl_run(batch=2048)))}  # type: ignore[arg-type]
    assert not any("0.repartition=default" in args for args in plain)  # nothing to remove where none was added


def test_a_trial_stopped_at_its_box_says_so_once() -> None:
    from pipetune.model import RunStatus
    from pipetune.tune import objective
    from pipetune.tune.loop import _result

    why = objective.boxed_reason(7.4)
    run = with_(two_stage_run(), status=RunStatus.STOPPED, error=why)
    trial = Trial(3, Role.TRIAL, Settings(), "", Settings(), "", "", "r3", "stopped", 8.4, 10_000, Verdict.STOPPED)
    line = _result(trial, run)
    assert line.endswith(f"-> reverted: {why}") and line.count("stopped at its time box") == 1
