"""Analysis of recorded runs: pure functions over :class:`pipetune.model.Run`, never importing Ray.

The face of the package: ``diagnose(run)`` for the findings, ``Facts`` for the measured figures, the capacity
model (``capacity``), and the one home of each judgement other packages share: progress, noise, pool fit,
the order of changes.
"""

from pipetune.diagnose.bottleneck import Bottleneck, OperatorRate, find_bottleneck, operator_rates, usable_slots
from pipetune.diagnose.capacity import Room, as_run, concurrency_cap, own_call_cost, pool_size, reservations, rooms
from pipetune.diagnose.consumers import Consumption, blocked_between, blocked_shares, consumption, parse_source
from pipetune.diagnose.engine import Diagnosis, classify, diagnose
from pipetune.diagnose.facts import BatchCost, Facts, OpType, bottleneck_label
from pipetune.diagnose.findings import Finding, Fix, Level
from pipetune.diagnose.fusion import DEFAULT_NUM_CPUS, cpus_of, lead_stage, stage_times
from pipetune.diagnose.noise import Outcome, compare, noise_band
from pipetune.diagnose.progress import (
    counted_inside,
    counted_rows,
    has_task_figures,
    in_flight,
    moved,
    queued,
    read_rows_planned,
    reads,
    rows_done,
    rows_planned,
    rows_read,
    share_read,
)
from pipetune.diagnose.ranking import gain_tier, urgency
from pipetune.diagnose.read_blocks import ray_default_blocks
from pipetune.diagnose.rules._common import BATCH_BY_TYPE, NUM_CPUS_BY_TYPE
from pipetune.diagnose.rules.consumer import consumer_bound
from pipetune.diagnose.rules.memory import guide_oom_fix
from pipetune.diagnose.task_memory import Limit, oom_limits
from pipetune.diagnose.task_memory import combined as combined_limits
from pipetune.diagnose.thresholds import MEMORY_GROW_BELOW, MEMORY_SHRINK_ABOVE, NOISE_PCT, NUM_CPUS_IO, WAITING_CORES
from pipetune.diagnose.verify import Verification, verify

__all__ = [
    "BATCH_BY_TYPE",
    "DEFAULT_NUM_CPUS",
    "MEMORY_GROW_BELOW",
    "MEMORY_SHRINK_ABOVE",
    "NOISE_PCT",
    "NUM_CPUS_BY_TYPE",
    "NUM_CPUS_IO",
    "WAITING_CORES",
    "BatchCost",
    "Bottleneck",
    "Consumption",
    "Diagnosis",
    "Facts",
    "Finding",
    "Fix",
    "Level",
    "Limit",
    "OpType",
    "OperatorRate",
    "Outcome",
    "Room",
    "Verification",
    "as_run",
    "blocked_between",
    "blocked_shares",
    "bottleneck_label",
    "classify",
    "combined_limits",
    "compare",
    "concurrency_cap",
    "consumer_bound",
    "consumption",
    "counted_inside",
    "counted_rows",
    "cpus_of",
    "diagnose",
    "find_bottleneck",
    "gain_tier",
    "guide_oom_fix",
    "has_task_figures",
    "in_flight",
    "lead_stage",
    "moved",
    "noise_band",
    "oom_limits",
    "operator_rates",
    "own_call_cost",
    "parse_source",
    "pool_size",
    "queued",
    "ray_default_blocks",
    "read_rows_planned",
    "reads",
    "reservations",
    "rooms",
    "rows_done",
    "rows_planned",
    "rows_read",
    "share_read",
    "stage_times",
    "urgency",
    "usable_slots",
    "verify",
]
