"""How many blocks a read makes when the script leaves ``override_num_blocks`` to Ray Data. Pure.

Ray Data 2.60's rule (``ray.data._internal.util._autodetect_parallelism``, the procedure its "Tuning read
parallelism" docs describe), for a read whose estimated in-memory size is ``size``:

    max(min(read_op_min_num_blocks, size / target_min_block_size),   # 200, and blocks of at least 1 MiB
        size / target_max_block_size,                                # blocks of at most 128 MiB
        2 * CPUs)                                                    # every CPU gets work

The size is Ray's own estimate: the read tasks' metadata, which is what the recorder counts as the read
operator's planned input bytes (``bytes_planned``). The ``DataContext`` fields are Ray's defaults unless the
run set them (``ctx.FIELD=VALUE``).
"""

from __future__ import annotations

import math

from pipetune.diagnose.facts import Facts
from pipetune.errors import UsageError
from pipetune.metrics import declared
from pipetune.settings import Settings, parse_size

READ_OP_MIN_NUM_BLOCKS = 200  # Ray Data's DataContext default
TARGET_MIN_BLOCK_SIZE = 1024**2  # Ray Data's DataContext default: 1 MiB
TARGET_MAX_BLOCK_SIZE = 128 * 1024**2  # Ray Data's DataContext default: 128 MiB
CPUS_PER_BLOCK_FACTOR = 2  # Ray Data: "parallelism at least twice the available number of CPUs"
_PLANNED = declared("bytes_planned")


def ray_default_blocks(facts: Facts, stage: int) -> int | None:
    """The blocks the read ``stage`` makes with ``override_num_blocks`` removed, by Ray Data's rule above; None
    where the run did not measure the read's planned bytes or the cluster's CPUs."""
    size = planned_bytes(facts, stage)
    if size is None or facts.cpus <= 0:
        return None
    context = _context(facts)
    by_size = min(context["read_op_min_num_blocks"], size / context["target_min_block_size"])
    safe = size / context["target_max_block_size"]
    return max(int(by_size), max(int(safe), 1), CPUS_PER_BLOCK_FACTOR * math.floor(facts.cpus))


def planned_bytes(facts: Facts, stage: int) -> float | None:
    """The input bytes Ray planned for the operator that runs the read ``stage`` (its read tasks' metadata)."""
    op = facts.operator_of(stage)
    if op is None:
        return None
    sizes = [s.values.get(_PLANNED, 0.0) for s in facts.run.samples_of(op.uid)]
    return max(sizes) if sizes and max(sizes) > 0 else None


def _context(facts: Facts) -> dict[str, float]:
    """The three ``DataContext`` fields the rule reads: Ray's defaults, or what the run set them to."""
    context = {
        "read_op_min_num_blocks": float(READ_OP_MIN_NUM_BLOCKS),
        "target_min_block_size": float(TARGET_MIN_BLOCK_SIZE),
        "target_max_block_size": float(TARGET_MAX_BLOCK_SIZE),
    }
    for setting in Settings.from_args(facts.run.overrides).context:
        if setting.field in context:
            context[setting.field] = _size(str(setting.value), context[setting.field])
    return context


def _size(text: str, default: float) -> float:
    try:
        return float(parse_size(text))
    except UsageError:  # not a number: Ray refused it when the run started, so its default held
        return default
