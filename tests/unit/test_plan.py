"""The planner's table lookups against the guide's numbers, cluster descriptions, and the batch-size loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetune.diagnose.facts import OpType
from pipetune.errors import UsageError
from pipetune.plan import tables
from pipetune.plan.batch_search import Probe, fastest, next_batch
from pipetune.plan.cluster import parse_cluster
from pipetune.plan.planner import StageIn, Value, plan
from pipetune.plan.stages import from_source, with_loads


@pytest.mark.parametrize(
    ("memory", "size", "low", "high"),
    [(16, "small", 128, 256), (16, "large", 32, 64), (24, "medium", 128, 256), (24, "large", 64, 128),
     (40, "small", 512, 1024), (40, "medium", 256, 512), (80, "large", 128, 256)],
)  # fmt: skip
def test_gpu_batch_table_is_the_guides(memory: int, size: str, low: int, high: int) -> None:
    row = tables.gpu_batch(memory, size)
    assert (row.low, row.high) == (low, high)


@pytest.mark.parametrize(("pixels", "divisor"), [(224, 1), (448, 4), (512, 5), (1024, 16)])
def test_resolution_scaling_is_the_guides(pixels: int, divisor: int) -> None:
    assert tables.resolution_divisor(pixels)[0] == divisor


@pytest.mark.parametrize(("ram", "low", "high"), [(6, 4, 16), (12, 16, 32), (20, 32, 64), (64, 64, 128)])
def test_cpu_batch_by_ram_per_worker_is_the_guides(ram: float, low: int, high: int) -> None:
    row = tables.cpu_batch(ram)
    assert (row.low, row.high) == (low, high)


def test_gpu_and_model_names() -> None:
    assert tables.gpu_memory_gb("A10G") == 24 and tables.gpu_memory_gb("a100-80") == 80
    assert tables.model_size("resnet152")[0] == "medium" and tables.model_size("vit-l-16")[0] == "large"


def test_cluster_descriptions_parse_and_bad_ones_say_how() -> None:
    cluster = parse_cluster("4x(16 CPU, 1 A10G) + 1x(8 CPU, 64 GB)")
    assert (cluster.cpus, cluster.gpus, cluster.gpu_memory_gb) == (72, 4, 24)
    assert cluster.nodes[-1].memory_gb == 64
    with pytest.raises(UsageError, match="COUNTx"):
        parse_cluster("16 CPUs")
    with pytest.raises(UsageError, match="unknown GPU"):
        parse_cluster("1x(8 CPU, 1 Z80)")


def stages() -> list[StageIn]:
    return [
        StageIn(0, "0:read_parquet", OpType.DATA_LOADING, False),
        StageIn(1, "1:map_batches:prep", OpType.CPU_PREPROCESSING, False),
        StageIn(2, "2:map_batches:Infer", OpType.GPU_INFERENCE, True),
        StageIn(3, "3:write_parquet", OpType.WRITING, False),
    ]


def test_a_gpu_cluster_plan_cites_its_rows() -> None:
    p = plan(stages(), parse_cluster("4x(16 CPU, 1 A10G)"), model="resnet152", resolution=448)
    infer = p.stages[2].settings
    assert infer["concurrency"].value == 4 and infer["num_gpus"].value == 1.0
    assert infer["batch_size"].value == 256 // 4
    assert "24 GB (A10G)" in infer["batch_size"].source and "divide by 4" in infer["batch_size"].source
    assert p.stages[1].settings["num_cpus"].value == 0.25  # the matrix's CPU preprocessing row
    assert p.stages[0].settings["num_cpus"].value == 0.025  # every node has a GPU: not a mixed cluster
    mixed = plan(stages(), parse_cluster("2x(16 CPU, 1 A10G) + 2x(32 CPU)"), model="resnet152")
    assert mixed.stages[0].settings["num_cpus"].value == 0.25 and "mixed" in mixed.stages[0].settings["num_cpus"].source


def test_a_cpu_cluster_plan_sizes_actor_pools_by_four_cpus() -> None:
    cpu_stages = [*stages()[:2], StageIn(2, "2:map_batches:Embed", OpType.CPU_INFERENCE, True)]
    p = plan(cpu_stages, parse_cluster("2x(32 CPU, 128 GB)"))
    embed = p.stages[2].settings
    assert embed["num_cpus"].value == 4.0 and embed["concurrency"].value == 64 // 4 - 1
    assert embed["batch_size"].value == 64 and "16-32 GB" in embed["batch_size"].source
    assert p.stages[0].settings["num_cpus"].value == 0.025


def test_measured_figures_win_over_the_table_and_predict_the_limit() -> None:
    measured = [StageIn(0, "0:map:fetch", OpType.DATA_LOADING, False, 1000, 0.05, 0.03),
                StageIn(1, "1:map_batches:prep", OpType.CPU_PREPROCESSING, False, 1000, 0.002, 1.0)]  # fmt: skip
    p = plan(measured, parse_cluster("1x(8 CPU)"))
    assert p.stages[0].settings["num_cpus"].value == 0.05 and "measured" in p.stages[0].settings["num_cpus"].source
    assert p.stages[1].settings["num_cpus"].value == 1.0
    assert p.prediction is not None and p.prediction.limiting == "0:map:fetch"
    assert p.prediction.rows_per_s == pytest.approx((8 / 0.05) / 0.05)


def test_stages_from_source_are_typed_by_what_they_are(tmp_path: Path) -> None:
    script = tmp_path / "p.py"
    script.write_text(
        "import ray\nclass M:\n    def __init__(self):\n        self.m = load().to('cuda')\n"
        "ds = ray.data.read_parquet('x').filter(lambda r: r['a'] > 0)\nds = ds.map_batches(M, concurrency=1)\n"
        "ds.write_parquet('o')\n"
    )
    assert [s.op_type for s in from_source(script)] == [
        OpType.DATA_LOADING, OpType.FILTERING, OpType.GPU_INFERENCE, OpType.WRITING,
    ]  # fmt: skip


def test_a_function_that_loads_a_model_named_by_model_is_gpu_inference_on_a_gpu_cluster(tmp_path: Path) -> None:
    script = tmp_path / "p.py"
    script.write_text(
        "import ray\ndef classify(batch):\n    model = torch.hub.load('pytorch/vision', 'resnet50')\n    return batch\n"
        "ds = ray.data.read_images('x').map_batches(classify, batch_size=1000)\nds.write_parquet('o')\n"
    )
    stages = from_source(script)
    assert stages[1].op_type is OpType.CPU_PREPROCESSING and stages[1].loads == "torch.hub.load"  # the code alone
    told = plan(stages, parse_cluster("2x(8 CPU, 1 A10G)"), "resnet50", 448).stages[1]
    assert told.stage.op_type is OpType.GPU_INFERENCE
    assert {k: v.value for k, v in told.settings.items()} == {
        "num_gpus": 1.0, "num_cpus": 1.0, "concurrency": 2, "batch_size": 128,  # 512 (A10G, small) / 4 (448 px)
    }  # fmt: skip
    assert any("PT003" in n for n in told.notes)
    on_cpus = plan(stages, parse_cluster("2x(8 CPU)"), "resnet50").stages[1]
    assert on_cpus.stage.op_type is OpType.CPU_INFERENCE and "num_gpus" not in on_cpus.settings
    assert plan(stages, parse_cluster("2x(8 CPU, 1 A10G)")).stages[1].stage.op_type is OpType.CPU_PREPROCESSING


def test_a_recorded_run_takes_the_model_load_from_the_source_and_the_gpu_table_over_its_cpu_batch(
    tmp_path: Path,
) -> None:
    script = tmp_path / "p.py"
    script.write_text(
        "import ray\ndef classify(batch):\n    model = torch.hub.load('pytorch/vision', 'resnet50')\n    return batch\n"
        "ds = ray.data.read_images('x').map_batches(classify, batch_size=8)\nds.write_parquet('o')\n"
    )
    measured = [StageIn(0, "0:read_images", OpType.DATA_LOADING, False, 1000, 0.001, 0.05),
                StageIn(1, "1:map_batches:classify", OpType.CPU_PREPROCESSING, False, 1000, 0.05, 1.0,
                        Value(512, "measured: 3.0 ms fixed per batch")),
                StageIn(2, "2:write_parquet", OpType.WRITING, False, 1000, 0.001, 0.1)]  # fmt: skip
    stages = with_loads(measured, from_source(script))
    assert stages[1].loads == "torch.hub.load" and stages[1].rows == 1000  # the run's figures are kept
    told = plan(stages, parse_cluster("2x(8 CPU, 1 A10G)"), "resnet50", 448).stages[1]
    assert told.stage.op_type is OpType.GPU_INFERENCE and told.settings["batch_size"].value == 128
    assert any("measured on CPUs" in n for n in told.notes)


def probe(batch: int, speed: float, memory: float, ok: bool = True) -> Probe:
    return Probe(batch, ok, speed if ok else None, memory if ok else None)


def test_the_batch_loop_doubles_under_half_memory_and_stops_when_it_stops_paying() -> None:
    assert next_batch([probe(16, 100, 0.1)]) == 32
    assert next_batch([probe(16, 100, 0.1), probe(32, 90, 0.2)]) is None  # slower: done
    assert next_batch([probe(16, 100, 0.7)]) is None  # in the 60-80% band


def test_the_batch_loop_halves_on_high_memory_and_on_failure() -> None:
    assert next_batch([probe(64, 100, 0.9)]) == 32
    assert next_batch([probe(16, 100, 0.3), probe(32, 0, 0, ok=False)]) is None  # 16 was measured already
    assert next_batch([probe(128, 0, 0, ok=False)]) == 64


def test_the_result_is_the_fastest_that_fits_not_the_largest() -> None:
    probes = [probe(16, 100, 0.2), probe(32, 140, 0.4), probe(64, 130, 0.75), probe(128, 150, 0.9)]
    best = fastest(probes)
    assert best is not None and best.batch == 32
