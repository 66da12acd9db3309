"""Where runs and studies live. The contract is :class:`Store`; SQLite keeps them in a file, MemoryStore in memory.

Other packages import store types from here, never from the modules below.
"""

from pipetune.store.base import RunHeader, RunRow, Store, StoredStudy, StudyRow, new_run_id
from pipetune.store.memory import MemoryStore
from pipetune.store.sqlite import DEFAULT_PATH, SCHEMA_VERSION, SQLiteStore, open_store

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "MemoryStore",
    "RunHeader",
    "RunRow",
    "SQLiteStore",
    "Store",
    "StoredStudy",
    "StudyRow",
    "new_run_id",
    "open_store",
]
