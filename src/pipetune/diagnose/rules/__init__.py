"""The guide's decision tree, one rule per module.

A rule is a pure function ``check(facts) -> list[Finding]``: it reads the measured facts of one run and
returns what it finds (often nothing). It never raises on missing data (a run without node samples, say):
it returns no finding instead. Adding a rule is one module here, added to ``RULES``, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable

from pipetune.diagnose.facts import Facts
from pipetune.diagnose.findings import Finding
from pipetune.diagnose.rules import (
    batches,
    blocks,
    consumer,
    gpu,
    low_cpu,
    memory,
    pools,
    skew,
    slow_stage,
    stalls,
)

Rule = Callable[[Facts], list[Finding]]

RULES: dict[str, Rule] = {
    "low-cpu": low_cpu.check,
    "few-blocks": blocks.check,
    "many-blocks": blocks.check_many,
    "batch-size": batches.check,
    "low-gpu": gpu.check_low_gpu,
    "gpu-oom": gpu.check_gpu_oom,
    "workers-oom": memory.check_oom,
    "object-store": memory.check_spill,
    "slow-stage": slow_stage.check,
    "oversized-pool": pools.check,
    "skew": skew.check,
    "materialize-mid-pipeline": stalls.check_materialize,
    "stall": stalls.check_stall,
    "intermittent-stall": stalls.check_intermittent,
    "blocking-actor-pool": stalls.check_blocking_pool,
    "crash": stalls.check_crash,
    "consumer": consumer.check_bound,
    "uneven-splits": consumer.check_splits,
    "shuffle-buffer": consumer.check_shuffle,
}
