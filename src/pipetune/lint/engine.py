"""Runs the rules over a script, honours suppressions, and applies the safe fixes.

Suppression, as linters do it: ``# noqa: PT004`` or ``# pipetune: ignore[PT004]`` on the finding's line (without
codes: every rule on that line), and ``ignore = ["PT008"]`` under ``[tool.pipetune.lint]`` in the nearest
``pyproject.toml`` above the script.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from pipetune.errors import UsageError
from pipetune.lint.findings import Edit, LintFinding
from pipetune.lint.rules import RULES
from pipetune.lint.scan import scan
from pipetune.sourcecode import after_imports, appended, keyword

_NOQA = re.compile(r"#\s*(?:noqa|pipetune:\s*ignore)(?::\s*|\[)?([A-Z0-9, ]*)\]?", re.IGNORECASE)


@dataclass(frozen=True)
class LintResult:
    path: str
    findings: tuple[LintFinding, ...]
    fixed: str | None = None  # the source after --fix, when it changed


def lint_source(source: str, gpus: int | None = None, ignore: Iterable[str] = ()) -> list[LintFinding]:
    try:
        script = scan(source)
    except cst.ParserSyntaxError as err:
        raise UsageError(f"line {err.raw_line}: syntax error: {err.message}", "fix the script and lint again") from None
    found = [f for rule in RULES for f in rule(script, gpus)]
    lines = source.splitlines()
    skip = set(ignore)
    kept = [f for f in found if f.rule not in skip and not _suppressed(f, lines)]
    return sorted(kept, key=lambda f: (f.line, f.col, f.rule))


def _suppressed(finding: LintFinding, lines: list[str]) -> bool:
    line = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
    match = _NOQA.search(line)
    if match is None:
        return False
    codes = {c.strip().upper() for c in match.group(1).split(",") if c.strip()}
    return not codes or finding.rule in codes


def project_ignores(script: Path) -> list[str]:
    """``[tool.pipetune.lint] ignore`` from the nearest pyproject.toml at or above the script."""
    for folder in [script.resolve().parent, *script.resolve().parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text())
            except tomllib.TOMLDecodeError as err:
                raise UsageError(f"{candidate} cannot be parsed ({err})") from None
            ignore = data.get("tool", {}).get("pipetune", {}).get("lint", {}).get("ignore", [])
            return [str(code).upper() for code in ignore]
    return []


def lint_file(path: Path, gpus: int | None = None, fix: bool = False) -> LintResult:
    if not path.is_file():
        raise UsageError(f"{path} does not exist", "pass the path of a Python file")
    source = path.read_text()
    ignore = project_ignores(path)
    findings = lint_source(source, gpus, ignore)
    if not fix or not any(f.fix for f in findings):
        return LintResult(str(path), tuple(findings))
    fixed = apply_fixes(source, [f.fix for f in findings if f.fix])
    return LintResult(str(path), tuple(lint_source(fixed, gpus, ignore)), fixed)


def apply_fixes(source: str, edits: list[Edit]) -> str:
    module = MetadataWrapper(cst.parse_module(source)).visit(_Fixer(edits))
    if any(e.kind == "filter-expr" for e in edits):
        module = _with_line(module, "from ray.data.expressions import col")
    for edit in (e for e in edits if e.kind == "insert-context"):
        module = _with_line(module, "from ray.data import DataContext")
        module = after_imports(module, [f"DataContext.get_current().{edit.name} = {edit.code}"])
    return module.code


class _Fixer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edits: list[Edit]) -> None:
        super().__init__()
        self.edits = edits

    def _edits_for(self, node: cst.CSTNode, method: str) -> list[Edit]:
        line = self.get_metadata(PositionProvider, node).start.line
        return [e for e in self.edits if e.line == line and e.method == method]

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        if not isinstance(original.func, cst.Attribute):
            return updated
        for edit in self._edits_for(original, original.func.attr.value):
            updated = _edited_call(updated, edit)
        return updated

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        expr = original.body[0] if len(original.body) == 1 else None
        call = expr.value if isinstance(expr, cst.Expr) else None
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
            edits = self._edits_for(call, call.func.attr.value)
            if any(e.kind == "remove-statement" for e in edits):
                return cst.RemoveFromParent()
        return updated


def _edited_call(call: cst.Call, edit: Edit) -> cst.Call:
    if edit.kind == "add-keyword":
        return call.with_changes(args=appended(list(call.args), keyword(edit.name, edit.code)))
    if edit.kind == "filter-expr":
        arg = keyword("expr", edit.code)
        rest = [a.with_changes(comma=a.comma) for a in call.args[1:]]
        return call.with_changes(args=[arg.with_changes(comma=call.args[0].comma), *rest])
    return call


def _with_line(module: cst.Module, line: str) -> cst.Module:
    if line in module.code:
        return module
    return after_imports(module, [line])
