"""What a series of recorded runs shares: one Ray for all of them, and a scratch directory for their writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipetune.record.remote import ENV_WORKERS_SOCKET


@contextlib.contextmanager
def shared_ray(address: str | None) -> Iterator[str | None]:
    """The given cluster (or RAY_ADDRESS's), else one local Ray for the whole series: its start-up paid once."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        yield address
        return
    from pipetune.record._ray_compat import local_head

    # one head node, no driver attached: each run's script is the only driver. Its workers inherit its
    # environment: the socket each run's recorder listens on in turn
    with (
        scratch("pipetune-ray-") as where,
        _environ(ENV_WORKERS_SOCKET, str(where / "events.sock")),
        local_head() as head,
    ):
        yield head


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` in this process's environment (and so its children's) for the duration."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A directory that is gone afterwards, whatever happened inside."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
