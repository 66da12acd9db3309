"""Every number the diagnosis uses, named once, with where it comes from.

"guide" means the tuning guide (shared/tuning-guide.md) states it; "measured" means we chose it from runs on
the bundled examples, and the comment says which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str


# Utilisation (guide: master decision tree, metrics table, symptom matrix)
LOW_CPU_PCT = Threshold(50.0, "guide: low CPU utilisation is below 50%")
GOOD_CPU_PCT = Threshold(80.0, "guide: verification, CPU utilisation above 80%")
LOW_GPU_PCT = Threshold(50.0, "guide: low GPU utilisation is below 50%")
BUSY_CPU_PCT = Threshold(80.0, "guide: 'are CPUs busy?' when GPUs idle; busy taken as the verification bar, 80%")
SPIKY_GPU_CV = Threshold(
    0.5,
    "chosen, not measured (no bundled example runs on a GPU): GPU utilisation whose "
    "stddev exceeds half its mean is spiky",
)

# What a task does with the CPU it reserved
WAITING_CORES = Threshold(0.3, "measured: under 0.3 cores per busy task-second is waiting on I/O (HTTP example: 0.03)")
COMPUTING_CORES = Threshold(0.7, "measured: tasks burning over 0.7 cores per busy second are compute-bound")

# num_cpus ranges by operation type (guide: resource allocation matrix by operation type)
NUM_CPUS_IO = (0.025, 0.1)
NUM_CPUS_FILTER = (0.1, 0.25)
NUM_CPUS_PREPROCESS = (0.25, 0.5)
NUM_CPUS_CPU_INFERENCE = (2.0, 4.0)
NUM_CPUS_GPU_INFERENCE = (1.0, 1.0)
BATCH_PREPROCESS = (100, 1000)
BATCH_CPU_INFERENCE = (16, 32)
BATCH_GPU_INFERENCE = (32, 128)

# Balance and skew
SATURATED_HEADROOM = Threshold(1.5, "measured: headroom under 1.5x means the stage ran near its capacity")
LIMITING_HEADROOM = Threshold(3.0, "measured: a stage with over 3x headroom does not limit the pipeline")
LIMITING_BESIDE_BOTTLENECK = Threshold(
    LIMITING_HEADROOM.value / SATURATED_HEADROOM.value,
    "derived: the bottleneck's headroom scaled as the two above, a stage near capacity (1.5x) to one that does "
    "not limit (3x): an operator with over twice the bottleneck's headroom is not what the pipeline waits for",
)
LARGE_INQUEUE_BLOCKS = Threshold(2.0, "measured: a mean of 2+ blocks waiting at a stage's input is a queue")
SKEW_P90_OVER_P50 = Threshold(3.0, "measured: p90 task time over 3x the median is skew, not noise")
SKEW_MAX_OVER_MEAN_ROWS = Threshold(4.0, "measured: a block with 4x the mean rows is uneven")
BUNDLED_BLOCKS = Threshold(
    2.0,
    "arithmetic: a batch bundles blocks when it takes two or more of them; one block and a few rows of the next "
    "is one block's task, whose idle slots come from something else",
)
MIN_TASKS_FOR_SKEW = Threshold(4.0, "statistics: fewer than 4 tasks say nothing about a distribution")
MIN_SKEW_GAP_S = Threshold(0.5, "measured: when p90 and median tasks differ by under 0.5 s, skew costs nothing")

# Memory (guide: batch-size tuning loop)
MEMORY_GROW_BELOW = Threshold(0.5, "guide: below 50% memory, double the batch")
MEMORY_SHRINK_ABOVE = Threshold(0.85, "guide: above 85% memory, halve the batch")
MEMORY_TARGET = (0.6, 0.8)

# Stalls
STALL_S = Threshold(30.0, "measured: no rows moving for 30 s while tasks are running is a stall")
INTERMITTENT_GAP_S = Threshold(5.0, "measured: progress pauses of 5 s+ that then resume are intermittent stalls")

# Verification (guide: measurement template, done with repeats)
NOISE_PCT = Threshold(5.0, "measured: paired runs of the bundled examples spread 2-5% on this machine")
MEASURABLE_SHARE = Threshold(
    2 * NOISE_PCT.value / 100,
    "derived: a fix that can save under twice the noise floor (NOISE_PCT) of the run cannot be told from noise",
)

MIN_TASKS_FOR_OVERHEAD = Threshold(
    MIN_TASKS_FOR_SKEW.value,
    "statistics: the median wait of fewer tasks than this is one task's accident (measured: two tasks on the "
    "2-node test cluster gave 0.56-0.72 s, a worker starting on the other node, against 0.1-0.2 s over many)",
)
TASK_WORK_SHARE = Threshold(
    0.5,
    "derived: a task that works less than half of the time it takes (submitted to finished) spends more on Ray's "
    "per-task overhead than on its work",
)
SIMILAR_GAIN = Threshold(
    2.0,
    "chosen, not measured: the capacity model is first order (its figures rank changes, the trial run decides), "
    "so predicted gains within a factor of 2 are not told apart and the guide's hierarchy orders them",
)

# Consumers (the script's own loop over an iteration call; guide: the Iteration view)
DATA_BOUND_SHARE = Threshold(
    MEASURABLE_SHARE.value,
    "derived: a loop blocked under twice the noise floor (NOISE_PCT) of its time gains less than the noise "
    "from any producer, however fast",
)
MIN_BATCHES = Threshold(
    MIN_TASKS_FOR_SKEW.value, "statistics: fewer batches than this say nothing of a loop's steady rate"
)
RISING_BLOCKED = Threshold(
    DATA_BOUND_SHARE.value,
    "guide: blocked time rising means preprocessing cannot keep up; rising by the data-bound share counts",
)
SHUFFLE_OVER_STEP = Threshold(1.0, "by definition: the loop waits on its shuffle buffer longer than it computes")
BATCH_OVERHEAD_TARGET = Threshold(
    NOISE_PCT.value / 100,
    "derived: fixed per-batch costs under the noise floor (NOISE_PCT) of a stage's time would gain too little to "
    "be measured",
)

# Gates the rules decide with that are choices, not measurements: named here so none hides in a rule
USES_RESERVATION = Threshold(
    COMPUTING_CORES.value,
    "derived: a task burning under COMPUTING_CORES (measured: the compute-bound line) of each CPU it reserves "
    "reserves more than it uses (low-cpu and slow-stage ask it through rules._common.over_reserving)",
)
SLOT_SLACK = Threshold(0.5, "rounding: measured slots are a time average, so half a slot short counts as full")
CPU_STEP = Threshold(0.25, "guide: the CPU preprocessing row's low end, 0.25 CPU, as the step of a lowered reservation")
SKEW_FIXED_P90_OVER_P50 = Threshold(
    2.0, "chosen: a skew fix must bring p90 under 2x the median (found at 3x, so a passing check is a real change)"
)
TASK_GRANULARITY = Threshold(
    2.0,
    "chosen: progress shows when tasks finish, so a pause shorter than two slow "
    "(p90) tasks is granularity, not a stall",
)
MIN_PAUSES = Threshold(2.0, "chosen: one pause can be chance; two or more that resume are intermittent stalls")
MIN_BLOCKS = Threshold(8.0, "chosen, not measured: at least 8 blocks, so a slow task does not hold the rest")
BLOCKS_PER_CPU = Threshold(4.0, "chosen, not measured: 4 tasks per CPU, so every CPU gets several")
