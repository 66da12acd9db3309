"""Every lint rule on a script that breaks it and one that does not; suppression; --fix round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetune.errors import UsageError
from pipetune.lint.engine import apply_fixes, lint_file, lint_source

HEAD = "import ray\nfrom ray.data import DataContext\nDataContext.get_current().max_errored_blocks = 0\n"


def rules(body: str, gpus: int | None = None, head: str = HEAD) -> list[str]:
    return [f.rule for f in lint_source(head + body, gpus)]


@pytest.mark.parametrize(
    ("rule", "bad", "good"),
    [
        (
            "PT001",
            'ds = ray.data.read_parquet("p")\nds = ds.select_columns(["a"])\n',
            'ds = ray.data.read_parquet("p", columns=["a"])\nds = ds.select_columns(["a"])\n',
        ),
        (
            "PT002",
            'def f(b):\n    b["y"] = 1\n    return b\nds = ray.data.range(9)\n'
            'ds = ds.map_batches(f, num_cpus=1)\nds = ds.filter(lambda r: r["id"] > 1, num_cpus=1)\n',
            'def f(b):\n    b["y"] = 1\n    return b\nds = ray.data.range(9)\n'
            'ds = ds.map_batches(f, num_cpus=1)\nds = ds.filter(lambda r: r["y"] > 1, num_cpus=1)\n',
        ),
        (
            "PT003",
            'def f(b):\n    m = AutoModel.from_pretrained("x")\n    return m(b)\n'
            "ds = ray.data.range(9).map_batches(f, num_cpus=1)\n",
            'class F:\n    def __init__(self):\n        self.m = AutoModel.from_pretrained("x")\n'
            "    def __call__(self, b):\n        return self.m(b)\n"
            "ds = ray.data.range(9).map_batches(F, num_cpus=1, concurrency=1)\n",
        ),
        ("PT004", "ds = ray.data.range(9).map_batches(f)\n", "ds = ray.data.range(9).map_batches(f, num_cpus=0.5)\n"),
        (
            "PT005",
            'class G:\n    def __init__(self):\n        self.m = load().to("cuda")\n'
            "ds = ray.data.range(9).map_batches(G, num_cpus=1, concurrency=1)\n",
            'class G:\n    def __init__(self):\n        self.m = load().to("cuda")\n'
            "ds = ray.data.range(9).map_batches(G, num_cpus=1, num_gpus=1, batch_size=64, concurrency=1)\n",
        ),
        (
            "PT006",
            'ds = ray.data.range(9)\nds.count()\nds = ds.map_batches(f, num_cpus=1)\nds.write_parquet("o")\n',
            'ds = ray.data.range(9)\nds = ds.map_batches(f, num_cpus=1)\nds.write_parquet("o")\nprint(ds.count())\n',
        ),
        (
            "PT009",
            'ds = ray.data.range(9).filter(lambda r: r["id"] > 2, num_cpus=0.1)\n',
            'ds = ray.data.range(9).filter(expr=col("id") > 2, num_cpus=0.1)\n',
        ),
    ],
)
def test_each_rule_fires_on_bad_code_only(rule: str, bad: str, good: str) -> None:
    assert rule in rules(bad)
    assert rule not in rules(good)


def test_gpu_concurrency_must_match_the_gpus() -> None:
    call = "ds = ray.data.range(9).map_batches(G, num_cpus=1, num_gpus=1, batch_size=64, concurrency={})\n"
    assert "PT007" in rules(call.format(2), gpus=4)
    assert "PT007" not in rules(call.format(4), gpus=4)
    assert "PT007" not in rules(call.format(2), gpus=None)  # the target cluster is unknown: no guess


def test_no_error_policy_is_flagged_once() -> None:
    found = rules("ds = ray.data.range(9).map_batches(f, num_cpus=1)\n", head="import ray\n")
    assert found.count("PT008") == 1


def test_calls_on_other_objects_are_not_ray_data() -> None:
    assert rules("xs = list(map(f, range(3)))\nys = df.filter(lambda r: r)\n") == []


def test_suppression_per_line_and_per_project(tmp_path: Path) -> None:
    assert "PT004" not in rules("ds = ray.data.range(9).map_batches(f)  # noqa: PT004\n")
    assert "PT004" not in rules("ds = ray.data.range(9).map_batches(f)  # pipetune: ignore[PT004]\n")
    assert "PT004" in rules("ds = ray.data.range(9).map_batches(f)  # noqa: PT009\n")
    script = tmp_path / "pipe.py"
    script.write_text(HEAD + "ds = ray.data.range(9).map_batches(f)\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pipetune.lint]\nignore = ["PT004"]\n')
    assert lint_file(script).findings == ()


def test_fix_round_trip_keeps_comments_and_leaves_nothing_fixable() -> None:
    source = (
        "import ray\n\n# orders\nds = ray.data.read_parquet('p')  # input\n"
        "ds = ds.filter(lambda row: row['amount'] > 0 and row['qty'] > 0)\n"
        "ds.count()\nds = ds.map_batches(f, num_cpus=0.5)\nds.write_parquet('o')\n"
    )
    findings = lint_source(source)
    fixed = apply_fixes(source, [f.fix for f in findings if f.fix])
    compile(fixed, "pipe.py", "exec")
    assert "# orders" in fixed and "# input" in fixed
    assert 'ds.filter(expr=(col("amount") > 0) & (col("qty") > 0), num_cpus=1)' in fixed
    assert "from ray.data.expressions import col" in fixed and "ds.count()" not in fixed
    assert "max_errored_blocks = 0" in fixed
    assert not [f for f in lint_source(fixed) if f.fix]  # a second --fix has nothing left to do


def test_a_broken_script_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="syntax error"):
        lint_source("ds = ray.data.range(9\n")
