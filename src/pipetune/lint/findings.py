"""A lint finding and the edit that fixes it, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """One safe change to the source. ``kind``: add-keyword, filter-expr, remove-statement, insert-context."""

    kind: str
    line: int = 0
    method: str = ""
    name: str = ""
    code: str = ""  # the Python source of the value to write


@dataclass(frozen=True)
class LintFinding:
    rule: str  # e.g. "PT004"
    name: str  # e.g. "stage-without-num-cpus"
    line: int
    col: int
    message: str  # why it matters, and what to write instead
    fix: Edit | None = None

    def render(self, path: str) -> str:
        mark = " [*]" if self.fix else ""
        return f"{path}:{self.line}:{self.col + 1}: {self.rule} {self.message}{mark}"
