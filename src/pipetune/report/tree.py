"""The pipeline as a tree: sources at the roots, the script's loops and writes at the leaves. Pure.

One row per stage, indented under the stage it reads. A stage that reads two (a union, zip or join) sits
under the first and is named again, as a reference, under the others; a dataset used twice shows both
readers below it. The run page draws the rows as HTML, ``pipetune show`` as text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.model import Run, Stage, StageKind


@dataclass(frozen=True)
class TreeRow:
    stage: Stage
    operator: str  # the Ray operator that ran it, "(did not run)" where none did
    depth: int
    ref: bool  # a merge reached again from another of its inputs: named here, drawn where first reached
    note: str  # "merges A + B", "read by N stages"
    source: bool  # reads no other stage


def pipeline_tree(run: Run) -> list[TreeRow]:
    ops = {i: op.name for _, op in run.operators() for i in op.stages}
    parents = _parents(run)
    children: dict[int, list[int]] = {s.index: [] for s in run.stages}
    for stage, inputs in parents.items():
        for parent in inputs:
            children[parent].append(stage)
    walk = _Walk(run, parents, children, ops)
    for root in (s.index for s in run.stages if not parents[s.index]):
        walk.visit(root, 0)
    return walk.rows


def branches(rows: list[TreeRow]) -> bool:
    """True when the pipeline is more than one chain (a merge, or a dataset read twice): worth drawing."""
    return any(r.note for r in rows) or sum(r.source for r in rows) > 1


def _parents(run: Run) -> dict[int, tuple[int, ...]]:
    """What each stage reads. A run recorded before pipetune kept inputs reads as a chain, each stage the one
    before it (a source reads nothing)."""
    if any(s.inputs for s in run.stages):
        return {s.index: s.inputs for s in run.stages}
    chain = [s.index for s in run.stages]
    return {s.index: (() if s.kind is StageKind.READ or i == 0 else (chain[i - 1],)) for i, s in enumerate(run.stages)}


class _Walk:
    def __init__(
        self, run: Run, parents: dict[int, tuple[int, ...]], children: dict[int, list[int]], ops: dict[int, str]
    ) -> None:
        self.run, self.parents, self.children, self.ops = run, parents, children, ops
        self.rows: list[TreeRow] = []
        self.shown: set[int] = set()

    def visit(self, index: int, depth: int) -> None:
        inputs = self.parents[index]
        self.rows.append(TreeRow(self.run.stage(index), self.ops.get(index, "(did not run)"), depth,
                                 index in self.shown, self._note(index), not inputs))  # fmt: skip
        if index in self.shown:
            return  # a merge reached again from its other input: named, not drawn twice
        self.shown.add(index)
        for child in self.children[index]:
            self.visit(child, depth + 1)

    def _note(self, index: int) -> str:
        inputs = self.parents[index]
        notes = ["merges " + " + ".join(self.run.stage(i).key for i in inputs)] if len(inputs) > 1 else []
        readers = len(self.children[index])
        return "; ".join([*notes, f"read by {readers} stages"] if readers > 1 else notes)


def tree_lines(rows: list[TreeRow]) -> list[str]:
    """The tree as text lines: ``└─ 2:filter:keep (filter, Filter(keep))``."""
    out = []
    for r in rows:
        if r.ref:
            out.append(f"{'   ' * r.depth}→ {r.stage.key} (shown above)")
            continue
        lead = "   " * r.depth + ("" if r.source else "└─ ")
        note = f"  [{r.note}]" if r.note else ""
        out.append(f"{lead}{r.stage.key} ({r.stage.kind.value}, {r.operator}){note}")
    return out
