import json
import math
from pathlib import Path

import pytest

from pipetune.model import Dist, Event, EventKind, Knobs, Run, RunStatus
from tests.unit.builders import two_stage_run


def test_run_round_trips_through_json(tmp_path: Path) -> None:
    run = two_stage_run()
    run = Run(**{**run.__dict__, "events": (Event(1.0, EventKind.OOM_KILL, "killed", stage=1),)})
    path = tmp_path / "run.json"
    run.save(path)
    assert Run.load(path) == run


def test_loading_tolerates_unknown_and_missing_fields() -> None:
    data = two_stage_run().to_dict()
    data["added_by_a_newer_version"] = {"x": 1}
    del data["events"]
    data["stages"][1]["knobs"]["future_knob"] = 3
    run = Run.from_dict(json.loads(json.dumps(data)))
    assert run.events == ()
    assert run.stages[1].knobs == Knobs(num_cpus=1.0)
    assert run.status is RunStatus.SUCCEEDED


def test_concurrency_tuples_survive_json() -> None:
    knobs = Knobs(concurrency=(1, 4))
    run = Run(id="x", script="s.py")
    restored = Run.from_dict(json.loads(json.dumps({**run.to_dict(), "stages": []})))
    assert restored == run
    from pipetune._serde import from_plain, to_plain

    assert from_plain(Knobs, json.loads(json.dumps(to_plain(knobs)))) == knobs
    assert from_plain(Knobs, {"concurrency": 3}) == Knobs(concurrency=3)


def test_dist_quantiles_interpolate() -> None:
    d = Dist.of([4.0, 1.0, 3.0, 2.0, 10.0])
    assert (d.count, d.min, d.p50, d.max) == (5, 1.0, 3.0, 10.0)
    assert math.isclose(d.p90, 7.6)  # between 4 and 10
    assert Dist.of([]) == Dist()


def test_stage_keys() -> None:
    run = two_stage_run()
    assert [s.key for s in run.stages] == ["0:read_parquet", "1:map_batches:work"]
    assert run.stages[1].label == "map_batches(work)"


def test_rows_come_from_the_end_of_the_longest_execution() -> None:
    assert two_stage_run().rows == 10_000


def test_a_run_saved_by_a_newer_pipetune_is_refused_and_an_older_one_read(tmp_path: Path) -> None:
    import json

    from pipetune.errors import UsageError
    from pipetune.model import SCHEMA_VERSION

    data = two_stage_run().to_dict()
    with pytest.raises(UsageError, match="newer pipetune"):
        Run.from_dict({**data, "version": SCHEMA_VERSION + 1})
    older = {k: v for k, v in data.items() if k != "version"}  # saved before runs carried a format number
    assert Run.from_json(json.dumps(older)) == two_stage_run()


def test_samples_are_grouped_by_the_time_they_were_taken_in_time_order() -> None:
    from pipetune.model import Sample, at_each_time

    samples = [Sample(2.0, "a", {"x": 2.0}), Sample(1.0, "b", {"x": 1.0}), Sample(1.0, "a", {"x": 0.5})]
    assert at_each_time(samples) == [(1.0, {"b": {"x": 1.0}, "a": {"x": 0.5}}), (2.0, {"a": {"x": 2.0}})]
    assert at_each_time(samples, {"b"}) == [(1.0, {"b": {"x": 1.0}})]
