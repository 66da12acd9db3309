"""Starting settings from the guide's tables: by operation type, hardware, model and memory.

The face of the package; names load on first use (the batch-size search starts runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune._faces import lazy

if TYPE_CHECKING:
    from pipetune.plan.batch_size import search
    from pipetune.plan.planner import Plan, plan
    from pipetune.plan.stages import from_run, from_source, with_loads

_HOME = {
    "Plan": "planner",
    "from_run": "stages",
    "from_source": "stages",
    "plan": "planner",
    "search": "batch_size",
    "with_loads": "stages",
}
__all__ = ["Plan", "from_run", "from_source", "plan", "search", "with_loads"]


__getattr__ = lazy(__name__, _HOME)
