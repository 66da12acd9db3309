"""During a tuning trial, the files a script writes itself go to the trial's sandbox, not to the user's outputs.

Ray Data's ``write_*`` calls are redirected by ``interpose``. A script may also write beside them with plain
Python (a manifest, a ``_SUCCESS`` marker, a log it appends to). In the driver process, every path the script
opens for writing, creates, renames or removes under a *protected root* is mapped into the sandbox instead:
the roots are the script's working directory and every local path given to a ``write_*`` call. A file that is
appended to is copied into the sandbox first, so the script sees what it would have seen; a later read of that
path reads the sandbox's copy. Paths outside the roots, and writes made by Ray workers (UDF side effects on
other processes), are not redirected: the tune command says so before the first trial.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
from collections.abc import Callable
from typing import Any

_WRITE_MODES = frozenset("wax+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class FileGuard:
    """Maps paths under the protected roots into ``sandbox/files``; everything else is left as it is."""

    def __init__(self, sandbox: str, roots: list[str], exempt: list[str] | None = None) -> None:
        self.mirror = os.path.join(os.path.abspath(sandbox), "files")
        self.roots = [os.path.abspath(r) for r in roots]
        self.exempt = [os.path.abspath(sandbox), *(os.path.abspath(e) for e in exempt or [])]
        self.redirected: set[str] = set()

    def protect(self, path: object) -> None:
        """A write_* target: it and everything under it are the user's outputs."""
        if isinstance(path, (str, os.PathLike)) and "://" not in str(path):
            self.roots.append(os.path.abspath(os.fspath(path)))

    def protected(self, path: str) -> bool:
        real = os.path.abspath(path)
        if any(_under(real, e) for e in self.exempt):
            return False
        return any(_under(real, r) for r in self.roots)

    def mirrored(self, path: str) -> str:
        return os.path.join(self.mirror, os.path.abspath(path).lstrip(os.sep))

    def for_write(self, path: str, keep_content: bool) -> str:
        """Where a write of ``path`` goes; its current content is copied first when the write keeps it."""
        if not self.protected(path):
            return path
        target = self.mirrored(path)
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if keep_content and os.path.isfile(path):
                shutil.copy2(path, target)
        self.redirected.add(os.path.abspath(path))
        return target

    def for_read(self, path: str) -> str:
        """A path written during this trial reads from the sandbox; any other reads the real file."""
        if self.protected(path) and os.path.lexists(self.mirrored(path)):
            return self.mirrored(path)
        return path


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _text_path(file: object) -> str | None:
    if isinstance(file, (str, bytes, os.PathLike)) and not isinstance(file, int):
        value = os.fsdecode(file)
        return value
    return None


def install(guard: FileGuard) -> None:
    """Route the driver's file calls through ``guard``. Only the calls made by name are wrapped."""
    real_open = builtins.open

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        path = _text_path(file)
        if path is not None:
            writes = bool(_WRITE_MODES & set(mode))
            file = guard.for_write(path, keep_content="w" not in mode) if writes else guard.for_read(path)
        return real_open(file, mode, *args, **kwargs)

    builtins.open = guarded_open
    io.open = guarded_open
    _wrap_os_open(guard)
    _wrap_paths(guard)


def _wrap_os_open(guard: FileGuard) -> None:
    real = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        text = _text_path(path)
        if text is not None and "dir_fd" not in kwargs:
            writes = bool(flags & _WRITE_FLAGS)
            path = guard.for_write(text, not flags & os.O_TRUNC) if writes else guard.for_read(text)
        return real(path, flags, *args, **kwargs)

    os.open = guarded


def _wrap_paths(guard: FileGuard) -> None:
    """Creating, removing and renaming under a root act on the sandbox's copy; the real entry stays."""

    def one(fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            text = _text_path(path)
            if text is None or "dir_fd" in kwargs or not guard.protected(text):
                return fn(path, *args, **kwargs)
            return fn(guard.for_write(text, keep_content=True), *args, **kwargs)

        return guarded

    def removing(fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            text = _text_path(path)
            if text is None or "dir_fd" in kwargs or not guard.protected(text):
                return fn(path, *args, **kwargs)
            mirror = guard.mirrored(text)
            return fn(mirror, *args, **kwargs) if os.path.lexists(mirror) else None  # the real one stays

        return guarded

    def two(fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            s, d = _text_path(src), _text_path(dst)
            if s is None or d is None or not (guard.protected(s) or guard.protected(d)):
                return fn(src, dst, *args, **kwargs)
            return fn(guard.for_write(s, keep_content=True), guard.for_write(d, keep_content=False), *args, **kwargs)

        return guarded

    os.mkdir = one(os.mkdir)
    for name in ("remove", "unlink", "rmdir"):
        setattr(os, name, removing(getattr(os, name)))
    shutil.rmtree = removing(shutil.rmtree)  # type: ignore[assignment]
    os.rename = two(os.rename)
    os.replace = two(os.replace)
