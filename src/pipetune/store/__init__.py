"""Where runs live. One implementation today (SQLite); the contract is :class:`Store`."""

from pipetune.store.base import RunHeader, RunRow, Store
from pipetune.store.sqlite import DEFAULT_PATH, SQLiteStore, open_store

__all__ = ["DEFAULT_PATH", "RunHeader", "RunRow", "SQLiteStore", "Store", "open_store"]
