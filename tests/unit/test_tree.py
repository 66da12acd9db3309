"""The pipeline drawn as a tree: which stages feed which merge, a dataset read twice, loops at the leaves."""

from __future__ import annotations

import dataclasses

from pipetune.model import Stage, StageKind
from pipetune.report.tree import branches, pipeline_tree, tree_lines
from tests.unit.builders import stage, two_stage_run, with_


def _staged(*stages: Stage) -> list[tuple[int, str, bool, str]]:
    rows = pipeline_tree(with_(two_stage_run(), stages=stages, executions=()))
    return [(r.depth, r.stage.key, r.ref, r.note) for r in rows]


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


def test_a_zip_of_a_union_and_a_second_source_is_drawn_with_both_roots_and_text_lines() -> None:
    run = with_(
        two_stage_run(),
        stages=(
            stage(0, "range", kind=StageKind.READ),
            _reads(stage(1, "filter", "even", kind=StageKind.FILTER), 0),
            _reads(stage(2, "filter", "odd", kind=StageKind.FILTER), 0),
            _reads(stage(3, "union", kind=StageKind.ALL_TO_ALL), 1, 2),
            stage(4, "range", kind=StageKind.READ),
            _reads(stage(5, "zip", kind=StageKind.ALL_TO_ALL), 3, 4),
            _reads(stage(6, "iter_batches", kind=StageKind.CONSUME), 5),
        ),
        executions=(),
    )
    rows = pipeline_tree(run)
    assert branches(rows)
    assert tree_lines(rows) == [
        "0:range (read, (did not run))  [read by 2 stages]",
        "   └─ 1:filter:even (filter, (did not run))",
        "      └─ 3:union (all-to-all, (did not run))  [merges 1:filter:even + 2:filter:odd]",
        "         └─ 5:zip (all-to-all, (did not run))  [merges 3:union + 4:range]",
        "            └─ 6:iter_batches (consume, (did not run))",
        "   └─ 2:filter:odd (filter, (did not run))",
        "      → 3:union (shown above)",
        "4:range (read, (did not run))",
        "   → 5:zip (shown above)",
    ]


def test_a_straight_chain_needs_no_tree() -> None:
    rows = pipeline_tree(with_(two_stage_run(), executions=()))
    assert not branches(rows)
