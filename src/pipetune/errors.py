"""One root exception for everything pipetune refuses or cannot do.

Each error carries the cause and what to do about it, so the CLI can print a single line and exit non-zero
without a traceback (the httpx / optuna style: errors are designed for the user, not for the debugger).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")


def describe_exception(err: BaseException, limit: int = 300) -> str:
    """One line for an exception: for Ray's wrapped task errors, the user's own exception line."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    own = [line for line in raised if not line.startswith("ray.")]  # Ray's wrappers name no cause
    if own or raised:
        return (own or raised)[-1][:limit]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:limit]


class PipetuneError(Exception):
    """Something the user can fix. ``str(err)`` is the one line the CLI prints."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)


class UsageError(PipetuneError):
    """A bad command line, setting value or stage name; refused before anything runs."""


class StoreError(PipetuneError):
    """The store cannot be opened, read or written; nothing in it was changed."""


class RunNotFound(PipetuneError):
    """No stored run matches the id the user gave."""


class RayUnavailable(PipetuneError):
    """Ray could not be started, or no cluster answers at the given address."""


class ScriptError(PipetuneError):
    """The user's script is missing, does not compile, or is not a Ray Data pipeline."""

    exit_code = 1
