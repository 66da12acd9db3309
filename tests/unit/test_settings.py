from pathlib import Path

import pytest

from pipetune.errors import UsageError
from pipetune.model import Knobs, Stage, StageKind
from pipetune.settings import (
    KNOBS,
    ContextSetting,
    Settings,
    StageSetting,
    change,
    check_selectors,
    knob,
    parse_assignment,
    parse_config,
    parse_size,
)
from tests.unit.builders import stage


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("64MiB", 64 * 1024**2), ("2GB", 2 * 10**9), ("1.5KiB", 1536), ("128mib", 128 * 1024**2)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_refuses_words() -> None:
    with pytest.raises(UsageError, match="not a size"):
        parse_size("lots")


def test_stage_assignment_by_index_and_name() -> None:
    assert parse_assignment("2.num_cpus=0.25") == StageSetting("2", "num_cpus", 0.25)
    assert parse_assignment("infer.batch_size=256") == StageSetting("infer", "batch_size", 256)
    assert parse_assignment("1:map_batches:Embed.concurrency=1-4") == StageSetting(
        "1:map_batches:Embed", "concurrency", (1, 4)
    )


def test_context_assignment_is_kept_raw_until_typed() -> None:
    assert parse_assignment("ctx.target_max_block_size=64MiB") == ContextSetting("target_max_block_size", "64MiB")


def test_drop_last_reads_as_the_loop_would_take_it() -> None:
    assert knob("drop_last").value("True") is True and knob("drop_last").value("false") is False
    assert knob("drop_last").show(True) == "true"


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("num_cpus", "-1", "num_cpus is a number"),
        ("batch_size", "0", "batch_size is a whole number"),
        ("batch_size", "1.5", "batch_size is a whole number"),
        ("concurrency", "4-2", "MIN-MAX"),
        ("memory", "0", "more than 0"),
        ("num_gpus", "nan", "num_gpus"),
        ("drop_last", "maybe", "drop_last is true or false"),
    ],
)
def test_bad_values_are_refused_with_what_is_valid(name: str, raw: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        knob(name).value(raw)


def test_unknown_knob_lists_valid_ones() -> None:
    with pytest.raises(UsageError, match="valid knobs are num_cpus, num_gpus"):
        parse_assignment("2.num_cpu=1")


def test_malformed_assignment() -> None:
    with pytest.raises(UsageError, match=r"STAGE.KNOB=VALUE"):
        parse_assignment("num_cpus")


def test_concurrency_forms() -> None:
    assert knob("concurrency").value("3") == 3
    assert knob("concurrency").value("1,4,2") == (1, 4, 2)
    assert knob("concurrency").value([2, 8]) == (2, 8)
    with pytest.raises(UsageError):
        knob("concurrency").value("1,4,9")  # initial outside min..max


def test_config_round_trip_json_and_toml(tmp_path: Path) -> None:
    overrides = Settings(
        (StageSetting("1", "num_cpus", 0.5), StageSetting("Embed", "concurrency", (1, 2))),
        (ContextSetting("target_max_block_size", 1024),),
    )
    as_json = tmp_path / "best.json"
    as_json.write_text(__import__("json").dumps(overrides.to_config()))
    assert parse_config(as_json) == overrides
    as_toml = tmp_path / "best.toml"
    as_toml.write_text(
        "[stages.1]\nnum_cpus = 0.5\n[stages.Embed]\nconcurrency = [1, 2]\n[context]\ntarget_max_block_size = 1024\n"
    )
    assert parse_config(as_toml) == overrides


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        parse_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UsageError, match="cannot be parsed"):
        parse_config(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"stages": {"1": {"batch_size": 0}}}')
    with pytest.raises(UsageError, match="batch_size"):
        parse_config(wrong)


def test_context_values_take_the_field_type() -> None:
    fields = {"target_max_block_size": 128, "enable_progress_bars": True, "op_resource_reservation_ratio": 0.5}
    typed = Settings(
        context=(
            ContextSetting("target_max_block_size", "64MiB"),
            ContextSetting("enable_progress_bars", "false"),
            ContextSetting("op_resource_reservation_ratio", "0.25"),
        ),
    ).typed(fields)
    assert [o.value for o in typed.context] == [64 * 1024**2, False, 0.25]


def test_unknown_context_field_suggests_close_names() -> None:
    with pytest.raises(UsageError, match=r"no field 'target_block_size'.*target_max_block_size"):
        Settings(context=(ContextSetting("target_block_size", "1"),)).typed({"target_max_block_size": 1})


def test_selectors_must_name_exactly_one_stage() -> None:
    stages = [stage(0, "read_parquet", kind=StageKind.READ), stage(1, "map_batches", "f"), stage(2, "map_batches", "f")]
    check_selectors(Settings((StageSetting("0", "num_cpus", 1.0),)), stages)
    check_selectors(Settings((StageSetting("2:map_batches:f", "num_cpus", 1.0),)), stages)
    with pytest.raises(UsageError, match="ambiguous"):
        check_selectors(Settings((StageSetting("f", "num_cpus", 1.0),)), stages)
    with pytest.raises(UsageError, match=r"no stage 'infer'.*valid stages are 0 \(0:read_parquet\)"):
        check_selectors(Settings((StageSetting("infer", "batch_size", 8),)), stages)


def test_for_stage_later_settings_win() -> None:
    overrides = Settings((StageSetting("1", "num_cpus", 1.0), StageSetting("f", "num_cpus", 0.5)))
    assert overrides.for_stage(stage(1, "map_batches", "f")) == {"num_cpus": 0.5}
    assert overrides.to_args() == ("1.num_cpus=1", "f.num_cpus=0.5")


def test_every_declared_knob_is_a_knob_a_stage_records() -> None:
    import dataclasses

    from pipetune.model import Knobs

    assert list(KNOBS) == [f.name for f in dataclasses.fields(Knobs) if f.name != "compute"]


def test_set_arguments_round_trip_exactly_and_read_short() -> None:
    settings = Settings(
        (
            StageSetting("1", "num_cpus", 1.0),
            StageSetting("1", "num_gpus", 1 / 3),
            StageSetting("Embed", "concurrency", (1, 4)),
            StageSetting("0", "memory", 2.0 * 1024**3),
            StageSetting("0", "repartition", 8),
        ),
        (ContextSetting("target_max_block_size", "64MiB"),),
    )
    args = settings.to_args()
    assert args[0] == "1.num_cpus=1" and args[2] == "Embed.concurrency=1-4" and args[3] == "0.memory=2147483648"
    assert Settings.from_args(args) == settings


def test_changes_read_as_the_reports_show_them() -> None:
    assert change("batch_size", 16, 32) == "batch_size 16 -> 32"
    assert change("num_cpus", None, 0.25) == "num_cpus default -> 0.25"
    assert change("concurrency", 1, (1, 4)) == "concurrency 1 -> 1-4"


def test_a_later_setting_wins_where_the_first_was_given() -> None:
    settings = Settings.from_args(["1.num_cpus=1", "2.batch_size=8", "1.num_cpus=0.5"]).collapsed()
    assert settings.to_args() == ("1.num_cpus=0.5", "2.batch_size=8")
    assert settings.key() == Settings.from_args(["2.batch_size=8", "1.num_cpus=0.5"]).key()


def test_default_is_ray_datas_own_value_for_every_knob() -> None:
    settings = Settings.from_args([f"1.{name}=default" for name in KNOBS])
    assert all(s.value == "default" for s in settings.stages)
    assert Settings.from_config(settings.to_config()) == settings  # JSON and TOML can both hold it
    stage = Stage(1, "map_batches", "f", "p.py:3", StageKind.TRANSFORM, Knobs(num_cpus=0.5, batch_size=64))
    assert settings.knobs_of(stage) == Knobs()  # every argument removed
    assert change("batch_size", 64, None) == "batch_size 64 -> default"


def test_a_chained_knob_at_ray_datas_default_is_the_same_configuration_as_none() -> None:
    """``repartition=default`` chains no call: a study must not measure it again as a new configuration."""
    from pipetune.settings import Settings

    dropped = Settings.from_args(["0.repartition=default", "2.batch_size=2048"])
    assert dropped.key() == Settings.from_args(["2.batch_size=2048"]).key()
    assert Settings.from_args(["2.batch_size=default"]).key() != Settings().key()  # a script's own knob is not
