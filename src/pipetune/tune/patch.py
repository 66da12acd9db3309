"""Write tuned settings into the script's own calls, keeping its comments and layout (libcst).

Pure: source text and settings in, source text out. Each stage is found by the call site the recorder saw
(``file:line`` and method name); a keyword knob (``Knob.keyword``) becomes a keyword argument of that call
(replaced if present, added if not, removed for ``default``); a chained knob (``repartition``) chains
``.repartition(n)`` onto the call; a DataContext setting becomes one line after the imports. Settings that
cannot be placed (a stage built in another file) are reported, never guessed.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from pipetune.model import Stage
from pipetune.settings import DEFAULT, KNOBS, Settings
from pipetune.sourcecode import EQUAL, after_imports, appended

CALL_KNOBS = tuple(k.name for k in KNOBS.values() if k.keyword)  # the knobs a call takes as keyword arguments


@dataclass(frozen=True)
class Edit:
    line: int
    method: str
    knobs: dict[str, Any] = field(default_factory=dict)  # written as keyword arguments of the call
    chained: dict[str, Any] = field(default_factory=dict)  # written as calls chained onto it: .repartition(8)


@dataclass(frozen=True)
class Patch:
    source: str
    patched: str
    path: str
    unplaced: tuple[str, ...] = ()  # settings that could not be written into this file, with why

    @property
    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.source.splitlines(keepends=True),
            self.patched.splitlines(keepends=True),
            fromfile=f"a/{self.path}",
            tofile=f"b/{self.path}",
        )
        return "".join(lines)


def patch_script(source: str, path: str, stages: Sequence[Stage], overrides: Settings) -> Patch:
    """``source`` of the script at ``path`` with ``overrides`` written into the calls that built ``stages``."""
    edits, unplaced = _edits(path, stages, overrides)
    module = cst.parse_module(source)
    wrapper = MetadataWrapper(module)
    placer = _Placer(edits)
    patched = wrapper.visit(placer)
    missing = [f"stage at line {e.line} ({e.method}): call not found in {path}" for e in edits if e not in placer.done]
    patched = _with_context(patched, overrides)
    return Patch(source, patched.code, path, (*unplaced, *missing, *placer.unplaced))


def _edits(path: str, stages: Sequence[Stage], overrides: Settings) -> tuple[list[Edit], list[str]]:
    edits, unplaced = [], []
    for stage in stages:
        knobs = overrides.for_stage(stage)
        if not knobs:
            continue
        site_path, _, line = stage.site.rpartition(":")
        if not _same_file(site_path, path) or not line.isdigit():
            unplaced.append(f"stage {stage.key} is built at {stage.site}, outside {path}")
            continue
        keyword = {k: v for k, v in knobs.items() if KNOBS[k].keyword}
        chained = {k: v for k, v in knobs.items() if not KNOBS[k].keyword}
        edits.append(Edit(int(line), stage.method, keyword, chained))
    return edits, unplaced


def _same_file(site_path: str, path: str) -> bool:
    from pathlib import Path

    try:
        return Path(site_path).resolve() == Path(path).resolve()
    except OSError:
        return False


class _Placer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edits: list[Edit]) -> None:
        super().__init__()
        self.edits = edits
        self.done: list[Edit] = []
        self.unplaced: list[str] = []  # removals the call's form did not allow

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        edit = self._edit_for(original)
        if edit is None:
            return updated
        self.done.append(edit)
        call = _set_keywords(updated, edit.knobs)
        kept = [k for k, v in edit.knobs.items() if v == DEFAULT and _in_remote_args(call, k)]
        where = f"stage at line {edit.line} ({edit.method})"
        self.unplaced += [f"{where}: {k} is set inside ray_remote_args; remove it there by hand" for k in kept]
        for name, value in edit.chained.items():
            if value == DEFAULT:
                continue  # pipetune's own knob: its default is not to chain it
            chained = cst.Attribute(value=call, attr=cst.Name(name))
            call = cst.Call(func=chained, args=[cst.Arg(cst.parse_expression(repr(value)))])
        return call

    def _edit_for(self, call: cst.Call) -> Edit | None:
        name = _method_name(call)
        if name is None:
            return None
        pos = self.get_metadata(PositionProvider, call)
        for edit in self.edits:
            if edit not in self.done and edit.method == name and pos.start.line <= edit.line <= pos.end.line:
                return edit
        return None


def _method_name(call: cst.Call) -> str | None:
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


def _set_keywords(call: cst.Call, knobs: dict[str, Any]) -> cst.Call:
    args = list(call.args)
    for knob, value in knobs.items():
        if value == DEFAULT:  # Ray Data's default: the argument goes
            args = _without(args, KNOBS[knob].keywords)
            continue
        expr = cst.parse_expression(repr(_literal(knob, value)))
        at = next((i for i, a in enumerate(args) if a.keyword and a.keyword.value == knob), None)
        if at is not None:
            args[at] = args[at].with_changes(value=expr)
        else:
            args = appended(args, cst.Arg(value=expr, keyword=cst.Name(knob), equal=EQUAL))
    return call.with_changes(args=args)


def _without(args: list[cst.Arg], keywords: tuple[str, ...]) -> list[cst.Arg]:
    """``args`` less the keyword arguments named; the new last one ends as the old last one did (no stray
    ``, )`` where the removed argument was the last)."""
    kept = [a for a in args if not (a.keyword and a.keyword.value in keywords)]
    if kept and args and kept[-1] is not args[-1] and args[-1].comma is cst.MaybeSentinel.DEFAULT:
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return kept


def _in_remote_args(call: cst.Call, knob: str) -> bool:
    """Whether ``knob`` is a key of a ``ray_remote_args={...}`` literal of the call."""
    for arg in call.args:
        if arg.keyword and arg.keyword.value == "ray_remote_args" and isinstance(arg.value, cst.Dict):
            keys = [e.key for e in arg.value.elements if isinstance(e, cst.DictElement)]
            if any(isinstance(k, cst.SimpleString) and k.evaluated_value == knob for k in keys):
                return True
    return False


def _literal(knob: str, value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if knob == "memory" and isinstance(value, float) and value.is_integer():
        return int(value)  # bytes
    return value


def _with_context(module: cst.Module, overrides: Settings) -> cst.Module:
    if not overrides.context:
        return module
    lines = ["from ray.data import DataContext  # pipetune tune"]
    lines += [f"DataContext.get_current().{o.field} = {o.value!r}" for o in overrides.context]
    return after_imports(module, lines)


def without_knobs(source: str) -> str:
    """The script with every knob argument removed from its calls: Ray Data's defaults (for benchmarks)."""
    return cst.parse_module(source).visit(_Stripper()).code


class _Stripper(cst.CSTTransformer):
    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        kept = _without(list(updated.args), CALL_KNOBS)
        return updated if len(kept) == len(updated.args) else updated.with_changes(args=kept)
