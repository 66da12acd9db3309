"""During a tuning trial, what the script writes itself beside its outputs is undone afterwards.

Ray Data's ``write_*`` calls are redirected to the trial's sandbox by ``interpose``. A script may also write
beside them with plain Python (a manifest, a ``_SUCCESS`` marker, a log it appends to), before or after its
``write_*`` call. Those writes happen for real, so the script (and anything it calls) sees what it would see
in a normal run; but before the first time the driver modifies a path through Python (``open`` for writing,
``os.open``, ``mkdir``, ``remove``, ``rmdir``, ``rmtree``, ``rename``, ``replace``), the path's state is kept in
a journal in the sandbox (a copy of the file, "absent", or a removed tree moved aside). When the trial ends,
the recorder puts back every journalled output (``restore``): whatever lies under a ``write_*`` target of the
run, and the files beside one (``out/log.txt`` beside ``write_parquet("out/parts")``). Everything else (the
script's input data, its caches) keeps what the script did, as a normal run would. Files that
C code writes directly (pyarrow, sqlite) and files a UDF writes from a Ray worker are not journalled: the tune
command says so before its first trial.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_WRITE_MODES = frozenset("wax+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# the real calls, taken before ``install`` wraps them: the journal's own writes are never journalled
_open, _rename, _rmtree_real = builtins.open, os.rename, shutil.rmtree
JOURNAL = "journal.jsonl"


@dataclass(frozen=True)
class Entry:
    """One journal line: a write target (``root``), or the state a path had before the script changed it."""

    op: str  # "root"; "absent" / "absent-dir"; "file" / "file-tree" (copies kept); "tree" (moved aside); "dir"
    path: str
    kept: str = ""


class Journal:
    """Appends entries to ``sandbox/journal.jsonl`` as they happen, so a crashed driver loses none of them."""

    def __init__(self, sandbox: str, exempt: list[str] | None = None) -> None:
        self.sandbox = os.path.abspath(sandbox)
        self.exempt = [self.sandbox, *(os.path.abspath(e) for e in exempt or [])]
        self.seen: set[str] = set()  # paths whose state before the trial is already kept
        os.makedirs(os.path.join(self.sandbox, "kept"), exist_ok=True)

    def protect(self, path: object) -> None:
        """A ``write_*`` target: it and everything under it are the user's outputs."""
        if isinstance(path, (str, os.PathLike)) and "://" not in str(path):
            self._write(Entry("root", os.path.abspath(os.fspath(path))))

    def before_change(self, path: str, making_dir: bool = False, renaming: bool = False) -> None:
        """Keep ``path``'s state the first time the script is about to change it (a directory about to be
        renamed is copied whole: rare, and a removal is a cheap move instead)."""
        real = self._first_time(path)
        if real is None:
            return
        entry = self._state_of(real, renaming)
        self._write(Entry("absent-dir", real) if making_dir and entry.op == "absent" else entry)

    def before_removal(self, path: str) -> bool:
        """A tree about to be removed is moved aside instead (instant on one file system); True if it was."""
        if not os.path.isdir(path) or (real := self._first_time(path)) is None:
            return False
        aside = os.path.join(os.path.dirname(real), f".pipetune-kept-{secrets.token_hex(4)}-{os.path.basename(real)}")
        _rename(real, aside)
        self._write(Entry("tree", real, aside))
        return True

    def _first_time(self, path: str) -> str | None:
        """The absolute path, the first time it is seen outside the exempt places; else None."""
        real = os.path.abspath(path)
        if real in self.seen or any(_under(real, e) for e in self.exempt):
            return None
        self.seen.add(real)
        return real

    def _state_of(self, real: str, renaming: bool) -> Entry:
        if os.path.isdir(real) and renaming:
            kept = os.path.join(self.sandbox, "kept", f"tree-{len(self.seen)}")
            shutil.copytree(real, kept, symlinks=True)
            return Entry("file-tree", real, kept)
        if os.path.isdir(real):
            return Entry("dir", real)
        if not os.path.lexists(real):
            return Entry("absent", real)
        kept = os.path.join(self.sandbox, "kept", f"{len(self.seen)}-{os.path.basename(real)}")
        shutil.copy2(real, kept)
        return Entry("file", real, kept)

    def _write(self, entry: Entry) -> None:
        with _open(os.path.join(self.sandbox, JOURNAL), "a") as f:
            f.write(json.dumps(entry.__dict__) + "\n")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _text_path(file: object) -> str | None:
    return os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else None


# -- putting things back ---------------------------------------------------------------------------------


def entries(sandbox: Path) -> list[Entry]:
    journal = sandbox / JOURNAL
    if not journal.is_file():
        return []
    return [Entry(**json.loads(line)) for line in journal.read_text().splitlines() if line.strip()]


def restore(sandbox: Path) -> list[str]:
    """Put back every journalled path that is an output; the paths restored, in journal order."""
    journal = entries(sandbox)
    roots = [e.path for e in journal if e.op == "root"]
    outputs = [e for e in journal if e.op != "root" and _is_output(e, roots)]
    for entry in reversed(outputs):
        _put_back(entry)
    for entry in journal:
        if entry.op == "tree" and entry not in outputs:
            _rmtree_real(entry.kept, ignore_errors=True)  # not an output: the script's removal stands
    return [e.path for e in outputs]


def _is_output(entry: Entry, roots: list[str]) -> bool:
    """Under a ``write_*`` target, or a file beside one (``out/log.txt`` beside ``out/parts``); the target's
    neighbouring directories (the script's input data, its caches) are not outputs."""
    beside = entry.op in ("absent", "file")
    return any(_under(entry.path, r) or (beside and os.path.dirname(entry.path) == os.path.dirname(r)) for r in roots)


def _put_back(entry: Entry) -> None:
    if entry.op == "dir":
        os.makedirs(entry.path, exist_ok=True)
        return
    _remove(entry.path)
    if entry.op == "file":
        os.makedirs(os.path.dirname(entry.path), exist_ok=True)
        shutil.copy2(entry.kept, entry.path)
    elif entry.op == "tree":
        _rename(entry.kept, entry.path)
    elif entry.op == "file-tree":
        shutil.copytree(entry.kept, entry.path, symlinks=True)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        _rmtree_real(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


# -- the driver's file calls -----------------------------------------------------------------------------


def install(journal: Journal) -> None:
    """Journal the driver's file calls. Only the calls made by name through Python are seen."""
    real_open = builtins.open

    def journalled_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        path = _text_path(file)
        if path is not None and _WRITE_MODES & set(mode):
            journal.before_change(path)
        return real_open(file, mode, *args, **kwargs)

    builtins.open = journalled_open
    io.open = journalled_open
    for name, wrap in _WRAPPERS.items():
        setattr(os, name, wrap(journal, getattr(os, name)))
    shutil.rmtree = _rmtree(journal, shutil.rmtree)  # type: ignore[assignment]


def _changing(journal: Journal, fn: Callable[..., Any], making_dir: bool = False) -> Callable[..., Any]:
    def journalled(path: Any, *args: Any, **kwargs: Any) -> Any:
        text = _text_path(path)
        if text is not None and kwargs.get("dir_fd") is None:
            journal.before_change(text, making_dir)
        return fn(path, *args, **kwargs)

    return journalled


def _opening(journal: Journal, fn: Callable[..., Any]) -> Callable[..., Any]:
    def journalled(path: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
        text = _text_path(path)
        if text is not None and flags & _WRITE_FLAGS and kwargs.get("dir_fd") is None:
            journal.before_change(text)
        return fn(path, flags, *args, **kwargs)

    return journalled


def _moving(journal: Journal, fn: Callable[..., Any]) -> Callable[..., Any]:
    def journalled(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        for side in _both(src, dst, kwargs):
            journal.before_change(side, renaming=True)
        return fn(src, dst, *args, **kwargs)

    return journalled


def _both(src: Any, dst: Any, kwargs: dict[str, Any]) -> Iterator[str]:
    if kwargs.get("src_dir_fd") is None and kwargs.get("dst_dir_fd") is None:
        yield from (p for p in (_text_path(src), _text_path(dst)) if p is not None)


def _rmtree(journal: Journal, fn: Callable[..., Any]) -> Callable[..., Any]:
    def journalled(path: Any, *args: Any, **kwargs: Any) -> Any:
        text = _text_path(path)
        if text is not None and kwargs.get("dir_fd") is None and journal.before_removal(text):
            return None  # moved aside: gone, as the script asked
        return fn(path, *args, **kwargs)

    return journalled


_WRAPPERS: dict[str, Callable[[Journal, Callable[..., Any]], Callable[..., Any]]] = {
    "open": _opening,
    "mkdir": lambda journal, fn: _changing(journal, fn, making_dir=True),
    "remove": _changing,
    "unlink": _changing,
    "rmdir": _changing,
    "truncate": _changing,
    "rename": _moving,
    "replace": _moving,
}
