"""The pipeline drawn as a tree: which stages feed which merge, a dataset read twice, loops at the leaves."""

from __future__ import annotations

import dataclasses

from pipetune.model import Stage, StageKind
from pipetune.report.html import pipeline_tree
from tests.unit.builders import stage, two_stage_run, with_


def _staged(*stages: Stage) -> list[tuple[int, str, bool, str]]:
    rows = pipeline_tree(with_(two_stage_run(), stages=stages, executions=()))
    return [(r["depth"], r["stage"].key, r["ref"], r["note"]) for r in rows]


def _reads(s: Stage, *inputs: int) -> Stage:
    return dataclasses.replace(s, inputs=inputs)


def test_a_union_sits_under_its_first_branch_and_is_named_again_under_the_other() -> None:
    tree = _staged(
        stage(0, "range", kind=StageKind.READ),
        _reads(stage(1, "map_batches", "f"), 0),
        _reads(stage(2, "filter", "keep", kind=StageKind.FILTER), 1),
        _reads(stage(3, "map", "g"), 1),
        _reads(stage(4, "union", kind=StageKind.ALL_TO_ALL), 2, 3),
        _reads(stage(5, "iter_batches", kind=StageKind.CONSUME), 4),
    )
    assert tree == [
        (0, "0:range", False, ""),
        (1, "1:map_batches:f", False, "read by 2 stages"),
        (2, "2:filter:keep", False, ""),
        (3, "4:union", False, "merges 2:filter:keep + 3:map:g"),
        (4, "5:iter_batches", False, ""),
        (2, "3:map:g", False, ""),
        (3, "4:union", True, "merges 2:filter:keep + 3:map:g"),
    ]


def test_a_run_recorded_without_inputs_reads_as_a_chain() -> None:
    tree = _staged(stage(0, "read_parquet", kind=StageKind.READ), stage(1, "map_batches", "f"), stage(2, "write"))
    chain = [(0, "0:read_parquet"), (1, "1:map_batches:f"), (2, "2:write")]
    assert [(depth, key) for depth, key, _, _ in tree] == chain
