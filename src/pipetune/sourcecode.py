"""Edits to a script's source that keep its comments and layout (libcst): the one home of the helpers that
``lint --fix`` and ``tune``'s patch both use.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

EQUAL = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


def keyword(name: str, code: str) -> cst.Arg:
    """``name=code`` written as PEP 8 writes keyword arguments (no spaces around ``=``)."""
    return cst.Arg(cst.parse_expression(code), keyword=cst.Name(name), equal=EQUAL)


def appended(args: list[cst.Arg], new: cst.Arg) -> list[cst.Arg]:
    """Add an argument after the last one, keeping the call's own comma style (one line or one per line)."""
    if not args:
        return [new]
    last = args[-1]
    comma = last.comma
    if isinstance(comma, cst.Comma):  # a trailing comma: the call is laid out one argument per line
        between = args[-2].comma if len(args) > 1 else comma  # a line break and the arguments' indent
        return [*args[:-1], last.with_changes(comma=between), new.with_changes(comma=comma)]
    return [*args[:-1], last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), new]


def after_imports(module: cst.Module, lines: Sequence[str]) -> cst.Module:
    """``lines`` inserted as statements right after the module's last top-level import."""
    body = list(module.body)
    at = max((i + 1 for i, s in enumerate(body) if is_import(s)), default=0)
    new = [cst.parse_statement(line + "\n") for line in lines]
    return module.with_changes(body=[*body[:at], *new, *body[at:]])


def is_import(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in statement.body
    )
