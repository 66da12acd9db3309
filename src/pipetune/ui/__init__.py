"""``pipetune ui``: a local dashboard over the store (read-only), for every run and study ever recorded.

The face of the package; ``serve`` loads Starlette on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetune.ui.app import serve

_HOME = {"serve": "app"}
__all__ = ["serve"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # cached: looked up once
    return value
