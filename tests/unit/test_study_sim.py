"""Whole studies through the ask/tell seam, against simulated pipelines on clusters this machine does not have."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipetune.diagnose.capacity import Room
from pipetune.model import Knobs, StageKind
from pipetune.settings import Settings
from pipetune.store import MemoryStore
from pipetune.tune.loop import Tuner, _stop_rule
from pipetune.tune.policy import ModelGuided
from pipetune.tune.study import Role, Study
from tests.unit.simulated import SimPipeline, SimRunner, SimStage


def study(tmp_path: Path, pipeline: SimPipeline, budget: int = 3) -> tuple[Study, SimRunner]:
    script = tmp_path / "pipe.py"
    script.write_text("# simulated\n")
    store = MemoryStore()
    runner = SimRunner(store, pipeline)
    tuner = Tuner(store, ModelGuided(), say=lambda line: None, warn=lambda line: None, warmup=False, runner=runner)
    study_id = tuner.create(script, (), Settings(), budget=budget)
    return tuner.drive(study_id), runner


def model_pool(nodes: tuple[Room, ...], startup_s: float = 1.0) -> SimPipeline:
    """A cheap read feeding a compute-bound model on a pool of one actor, then a write."""
    return SimPipeline(
        stages=(
            SimStage("read_parquet", kind=StageKind.READ, cpu_per_row_s=1e-4, knobs=Knobs(num_cpus=1.0)),
            SimStage(
                "map_batches",
                "Model",
                StageKind.ACTOR,
                cpu_per_row_s=0.02,
                startup_s=startup_s,
                knobs=Knobs(num_cpus=1.0, concurrency=1, batch_size=64),
            ),
            SimStage("write_parquet", kind=StageKind.WRITE, cpu_per_row_s=1e-4),
        ),
        rows=20_000,
        blocks=200,
        nodes=nodes,
    )


def four_small_batch_maps(cached: int | None = None) -> SimPipeline:
    """A read, four vectorised maps fed 2 rows a batch under a cap of one task, and a write, on 2 CPUs; with
    ``cached``, that map's UDF slows 50x on batches past its 64-row cache (one run at 2 rows cannot show it)."""
    slow = Knobs(batch_size=2, concurrency=1)
    cache = {"cache_rows": 64, "cache_miss_factor": 50.0}
    maps = (
        SimStage("map_batches", f"f{i}", cpu_per_row_s=2e-4, per_batch_s=2e-3, knobs=slow,
                 **(cache if i == cached else {}))  # type: ignore[arg-type]
        for i in range(4)
    )  # fmt: skip
    return SimPipeline(
        stages=(
            SimStage("read_parquet", kind=StageKind.READ, cpu_per_row_s=1e-4),
            *maps,
            SimStage("write_parquet", kind=StageKind.WRITE, cpu_per_row_s=1e-4),
        ),
        rows=20_000,
        blocks=20,
        nodes=(Room(2.0),),
    )


def test_a_16_cpu_pool_is_sized_in_one_trial(tmp_path: Path) -> None:
    done, runner = study(tmp_path, model_pool((Room(16.0),)))
    trials = [t for t in done.trials if t.role is Role.TRIAL]
    first = trials[0].config.knobs_of(runner.pipeline.shipped()[1])
    assert isinstance(first.concurrency, int) and first.concurrency >= 12  # not 1 -> 2: the model's size at once
    assert trials[0].verdict.value == "kept"


def test_on_four_nodes_no_trial_is_a_configuration_that_hangs(tmp_path: Path) -> None:
    done, runner = study(tmp_path, model_pool(tuple(Room(4.0) for _ in range(4))))
    assert done.trials[0].role is Role.BASELINE
    assert runner.pipeline.hung == []  # every proposal fit the nodes as Ray places them
    pool = [t.config.knobs_of(runner.pipeline.shipped()[1]) for t in done.trials if t.verdict.value == "kept"]
    assert pool and isinstance(pool[0].concurrency, int) and pool[0].concurrency > 2  # and the pool did grow


def test_stages_that_limit_together_are_changed_together_and_ray_defaults_weighed(tmp_path: Path) -> None:
    """Shipped settings that hold back every stage alike: tiny batches everywhere, a low task cap. No single
    knob helps (the other stages still burn the cores), so the first trial is the model's joint optimum."""
    done, _ = study(tmp_path, four_small_batch_maps())
    best = done.incumbent()
    assert best is not None and best.role is not Role.BASELINE  # the shipped settings did not stay best
    first = next(t for t in done.trials if t.role is Role.TRIAL)
    assert first.rule == "joint (model)"
    assert {(s.selector, s.knob) for s in first.settings.stages} == {(str(i), "batch_size") for i in range(1, 5)}
    weighed = any("default" in a for t in done.trials for a in t.settings.to_args())
    at_bound = done.finished is not None and "hardware bound" in done.finished["reason"]  # nothing can beat it
    assert weighed or at_bound  # Ray's defaults were measured, unless the study ended at the bound


def test_a_joint_change_that_loses_is_bisected_to_the_part_that_hurt(tmp_path: Path) -> None:
    """As above, but one stage's UDF slows down on batches larger than its cache (which one run at 2 rows cannot
    show): the joint optimum loses, and the next trials halve it until the part that hurt is left out."""
    pipeline = four_small_batch_maps(cached=2)
    done, runner = study(tmp_path, pipeline, budget=5)
    trials = [t for t in done.trials if t.role is Role.TRIAL]
    joint, half = trials[0], trials[1]
    assert joint.rule == "joint (model)" and joint.verdict.value.startswith("reverted: s")  # slower, or stopped
    parts = {s.selector for s in joint.settings.stages}
    assert half.rule == "bisect (model)" and {s.selector for s in half.settings.stages} < parts
    best = done.incumbent()
    assert best is not None and best.role is Role.TRIAL
    cached = best.config.knobs_of(runner.pipeline.shipped()[3]).batch_size  # stage 3 runs the UDF f2
    assert cached is not None and cached <= 64  # the part that hurt is not in the best settings
    grown = [best.config.knobs_of(s).batch_size for s in runner.pipeline.shipped()[1:5]]
    assert sum(1 for b in grown if b and b > 64) >= 2  # the parts that helped are


def test_confirm_runs_the_best_settings_in_full_and_stores_predicted_against_measured(tmp_path: Path) -> None:
    script = tmp_path / "pipe.py"
    script.write_text("# simulated\n")
    store = MemoryStore()
    runner = SimRunner(store, model_pool((Room(16.0),)))
    tuner = Tuner(store, ModelGuided(), say=lambda line: None, warn=lambda line: None, warmup=False, runner=runner)
    study_id = tuner.create(script, (), Settings(), budget=2)
    done = tuner.drive(study_id)
    best = done.incumbent()
    assert best is not None
    tuner.warmup = True  # the confirming run's Ray is a new one: warmed up first, as the study's was
    confirmed = tuner.confirm(study_id)
    assert runner.configs[-2:] == [best.config, best.config]  # the best settings: a warm-up, then in full
    assert tuner.load(study_id).trials[-1].role is Role.WARMUP
    warm_up = runner.steps[-2]  # run to its end, as the study's baseline was before its trials
    assert warm_up.in_full and _stop_rule(warm_up, done) is None and _stop_rule(replace(warm_up, in_full=False), done)
    assert confirmed.predicted_s == best.seconds and confirmed.measured_s is not None
    assert tuner.load(study_id).confirmed == confirmed and confirmed.status == "succeeded"
    assert done.runs_used == tuner.load(study_id).runs_used  # not a trial: the budget is untouched


def test_the_budgets_last_run_measures_ray_defaults_when_no_trial_did(tmp_path: Path) -> None:
    """A study must never end with Ray Data's defaults unmeasured while it had a run to spare for them: the
    model's move comes first (here a joint change that loses), the defaults take the run before the budget's
    last (so that a gain of theirs inside twice the noise could still be repeated); here they lose too, and two
    losses in a row end the study. A budget of one run is the model's move."""
    done, _ = study(tmp_path, four_small_batch_maps(cached=2), budget=3)
    rules = [t.rule for t in done.trials if t.role in (Role.TRIAL, Role.REPEAT)]
    assert rules == ["joint (model)", "ray-default"] and "levelled off" in (done.finished or {}).get("reason", "")
    (tmp_path / "one").mkdir()
    one, _ = study(tmp_path / "one", four_small_batch_maps(cached=2), budget=1)
    assert [t.rule for t in one.trials if t.role is Role.TRIAL] == ["joint (model)"]
