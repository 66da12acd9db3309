"""pipetune: record, diagnose and tune Ray Data pipelines, measured and automatic.

The public API is what ``__all__`` lists; everything else is private and may change.
"""

from pipetune.diagnose import Bottleneck, find_bottleneck
from pipetune.errors import PipetuneError
from pipetune.model import Event, Knobs, Run, RunStatus, Stage, StageKind
from pipetune.record.overrides import Overrides
from pipetune.store import SQLiteStore, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "Bottleneck",
    "Event",
    "Knobs",
    "Overrides",
    "PipetuneError",
    "Run",
    "RunStatus",
    "SQLiteStore",
    "Stage",
    "StageKind",
    "Store",
    "__version__",
    "find_bottleneck",
    "open_store",
    "record",
]


def record(script: str, *args: str, overrides: Overrides | None = None, store: str | None = None) -> Run:
    """Run ``script`` under the recorder, as ``pipetune run`` does, and return the stored Run."""
    from pathlib import Path

    from pipetune.record.launcher import Launch
    from pipetune.record.launcher import record as _record

    launch = Launch(script=Path(script), args=args, overrides=overrides or Overrides())
    return _record(launch, open_store(store))
