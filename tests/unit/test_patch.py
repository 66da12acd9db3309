"""Tuned settings written into a script's own calls, comments and layout kept (libcst)."""

from __future__ import annotations

from pipetune.model import Stage, StageKind
from pipetune.settings import Settings
from pipetune.tune.patch import patch_script

SOURCE = """import ray

# the pipeline
ds = ray.data.read_parquet("in")  # input
ds = ds.map_batches(
    enrich,  # the UDF
    batch_size=64,
    num_cpus=1,
)
ds = ds.map(fetch)
ds.write_parquet("out")
"""


def stages() -> list[Stage]:
    return [
        Stage(0, "read_parquet", "", "pipe.py:4", StageKind.READ),
        Stage(1, "map_batches", "enrich", "pipe.py:5", StageKind.TRANSFORM),
        Stage(2, "map", "fetch", "pipe.py:10", StageKind.TRANSFORM),
        Stage(3, "write_parquet", "", "other.py:3", StageKind.WRITE),
    ]


def patch(config: dict) -> object:  # type: ignore[type-arg]
    return patch_script(SOURCE, "pipe.py", stages(), Settings.from_config(config))


def test_existing_keywords_are_replaced_in_place_and_comments_kept() -> None:
    p = patch({"stages": {"1": {"batch_size": 4096, "num_cpus": 0.5}}})
    assert "    batch_size=4096,\n    num_cpus=0.5,\n)" in p.patched  # type: ignore[attr-defined]
    assert "enrich,  # the UDF" in p.patched  # type: ignore[attr-defined]
    assert p.diff.count("\n-") == 2  # type: ignore[attr-defined]


def test_missing_keywords_are_added_in_the_calls_own_style() -> None:
    p = patch({"stages": {"2": {"num_cpus": 0.1, "concurrency": [1, 8]}}})
    assert "ds = ds.map(fetch, num_cpus=0.1, concurrency=(1, 8))" in p.patched  # type: ignore[attr-defined]
    multi = patch({"stages": {"1": {"memory": 1024}}})
    assert "    num_cpus=1,\n    memory=1024,\n)" in multi.patched  # type: ignore[attr-defined]


def test_a_default_removes_the_argument_so_ray_datas_own_default_applies() -> None:
    p = patch({"stages": {"1": {"batch_size": "default"}, "2": {"concurrency": "default"}}})
    assert "    enrich,  # the UDF\n    num_cpus=1,\n)" in p.patched  # type: ignore[attr-defined]
    assert "ds = ds.map(fetch)" in p.patched  # nothing to remove: unchanged  # type: ignore[attr-defined]


def test_a_default_the_call_cannot_lose_by_keyword_is_reported_and_pipetunes_own_knob_is_not_chained() -> None:
    source = 'ds = ds.map_batches(f, ray_remote_args={"num_cpus": 2})\n'
    stages = [Stage(0, "map_batches", "f", "pipe.py:1", StageKind.TRANSFORM)]
    config = {"stages": {"0": {"num_cpus": "default", "repartition": "default"}}}
    p = patch_script(source, "pipe.py", stages, Settings.from_config(config))
    assert ".repartition(" not in p.patched
    assert p.unplaced and "inside ray_remote_args" in p.unplaced[0]


def test_repartition_is_chained_onto_the_source() -> None:
    p = patch({"stages": {"0": {"repartition": 8}}})
    assert 'ds = ray.data.read_parquet("in").repartition(8)  # input' in p.patched  # type: ignore[attr-defined]


def test_context_settings_go_after_the_imports() -> None:
    p = patch({"context": {"target_max_block_size": 67108864}})
    lines = p.patched.splitlines()  # type: ignore[attr-defined]
    assert lines[0] == "import ray"
    assert lines[2] == "DataContext.get_current().target_max_block_size = 67108864"


def test_a_stage_built_elsewhere_is_reported_not_guessed() -> None:
    p = patch({"stages": {"3": {"num_cpus": 0.1}}})
    assert p.patched == SOURCE  # type: ignore[attr-defined]
    assert p.unplaced and "other.py" in p.unplaced[0]  # type: ignore[attr-defined]


def test_the_patched_script_still_parses() -> None:
    p = patch({"stages": {"0": {"repartition": 8}, "1": {"batch_size": 4096}, "2": {"num_cpus": 0.1}}})
    compile(p.patched, "pipe.py", "exec")  # type: ignore[attr-defined]


def test_without_knobs_leaves_ray_datas_defaults() -> None:
    from pipetune.tune.patch import without_knobs

    stripped = without_knobs(SOURCE)
    assert "batch_size" not in stripped and "num_cpus" not in stripped
    assert "enrich,  # the UDF" in stripped
    compile(stripped, "pipe.py", "exec")


def test_removing_the_last_argument_leaves_no_stray_comma() -> None:
    from pipetune.tune.patch import without_knobs

    assert without_knobs("ds.map_batches(f, batch_size=8)\n") == "ds.map_batches(f)\n"
    assert without_knobs("ds.map_batches(f, batch_size=8, zero_copy_batch=True)\n") == (
        "ds.map_batches(f, zero_copy_batch=True)\n"
    )
