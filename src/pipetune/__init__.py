"""pipetune: record, diagnose and tune Ray Data pipelines, measured and automatic.

The public API is what ``__all__`` lists; everything else is private and may change. The subpackages keep
their names (``pipetune.record``, ``pipetune.tune``, ...): no function here shadows one of them, so the
recorder is ``run_script`` and the tuner ``tune_script``.
"""

from __future__ import annotations

import typing as _typing

from pipetune._faces import lazy as _lazy
from pipetune.errors import PipetuneError
from pipetune.model import Event, Knobs, Run, RunStatus, Stage, StageKind
from pipetune.settings import Settings
from pipetune.store import MemoryStore, SQLiteStore, Store, open_store

if _typing.TYPE_CHECKING:
    from pipetune.diagnose import Bottleneck, find_bottleneck
    from pipetune.tune import SearchPolicy, TuneResult

# Loaded on first use: every pipetune process (the CLI, and the recorded driver of each run) imports this
# package, and the tuner's libcst alone costs a quarter of a second to import.
_LAZY = {"Bottleneck": "diagnose", "find_bottleneck": "diagnose", "SearchPolicy": "tune", "TuneResult": "tune"}

__version__ = "0.1.0"

__all__ = [
    "Bottleneck",
    "Event",
    "Knobs",
    "MemoryStore",
    "PipetuneError",
    "Run",
    "RunStatus",
    "SQLiteStore",
    "SearchPolicy",
    "Settings",
    "Stage",
    "StageKind",
    "Store",
    "TuneResult",
    "__version__",
    "find_bottleneck",
    "open_store",
    "run_script",
    "tune_script",
]


def run_script(script: str, *args: str, overrides: Settings | None = None, store: str | None = None) -> Run:
    """Run ``script`` under the recorder, as ``pipetune run`` does, and return the stored Run."""
    from pathlib import Path

    from pipetune.record import Launch, record

    launch = Launch(script=Path(script), args=args, overrides=overrides or Settings())
    return record(launch, open_store(store))


def tune_script(
    script: str,
    *args: str,
    budget: int = 3,
    time_s: float | None = None,
    start: Settings | None = None,
    store: str | None = None,
    address: str | None = None,
    apply: bool = False,
    policy: SearchPolicy | None = None,
) -> TuneResult:
    """Tune ``script`` as ``pipetune tune`` does and return the result (trials, best settings, bound, patch).

    ``apply=True`` also writes the best settings into the script. Progress lines go to stderr.
    """
    from pathlib import Path

    from pipetune.tune import Tuner, apply_patch, result_of

    opened = open_store(store)
    tuner = Tuner.using(opened) if policy is None else Tuner(opened, policy)
    study = tuner.create(Path(script), args, start or Settings(), budget=budget, time_s=time_s, address=address)
    result = result_of(tuner.drive(study), opened)
    if apply and result.patch is not None and result.patch.diff:
        apply_patch(result.patch)
    return result


__getattr__ = _lazy(__name__, _LAZY)
