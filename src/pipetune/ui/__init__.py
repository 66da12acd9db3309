"""``pipetune ui``: a local dashboard over the store (read-only), for every run and study ever recorded.

The face of the package; ``serve`` loads Starlette on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune._faces import lazy

if TYPE_CHECKING:
    from pipetune.ui.app import serve

_HOME = {"serve": "app"}
__all__ = ["serve"]


__getattr__ = lazy(__name__, _HOME)
