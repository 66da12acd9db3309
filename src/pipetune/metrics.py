"""Every time-series metric pipetune records, declared once with its unit and meaning.

The recorder fills samples with these names; tables, charts and rules read the same declarations, so a
metric is added in one place (the way Ray declares ``OpRuntimeMetrics`` with ``metric_field``).
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_INTERVAL_S = 1.0  # how often operators, nodes and the script's loops are sampled


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # "rows", "bytes", "s", "count", "%", "blocks", "cores"
    description: str
    cumulative: bool = False  # a counter that only grows; rates come from differences


_OPERATOR = (
    Metric("rows_in", "rows", "rows received from upstream", cumulative=True),
    Metric("rows_out", "rows", "rows produced by finished and running tasks", cumulative=True),
    Metric("bytes_in", "bytes", "bytes received from upstream", cumulative=True),
    Metric("bytes_out", "bytes", "bytes produced", cumulative=True),
    Metric("bytes_done", "bytes", "input bytes of the tasks that finished", cumulative=True),
    Metric("bytes_planned", "bytes", "input bytes of all its read tasks, for an operator that reads"),
    Metric(
        "read_rows_planned",
        "rows",
        "rows all its read tasks will output, for an operator that reads into a counted chain whose count is of "
        "those rows (record.in_task), from the read's metadata where Ray already has it (a range; reads of one "
        "row per file, such as read_images or read_binary_files; not CSV, JSON, text or parquet files)",
    ),
    Metric(
        "udf_rows",
        "rows",
        "rows through the chain of counted functions (map_batches, map) the operator starts with, running "
        "tasks included (counted in Ray's workers where they reach the recorder: record.in_task)",
        cumulative=True,
    ),
    Metric("rows_planned", "rows", "rows Ray expects the operator to output in all (its own running estimate)"),
    Metric("tasks_running", "count", "tasks submitted and not finished"),
    Metric("tasks_finished", "count", "tasks finished", cumulative=True),
    Metric("tasks_failed", "count", "tasks that raised or died", cumulative=True),
    Metric("inqueue_blocks", "blocks", "blocks waiting in the operator's input queues"),
    Metric("inqueue_bytes", "bytes", "bytes waiting in the operator's input queues"),
    Metric("outqueue_blocks", "blocks", "blocks produced and not yet taken downstream"),
    Metric("outqueue_bytes", "bytes", "bytes produced and not yet taken downstream"),
    Metric("obj_store_bytes", "bytes", "object-store memory the operator holds"),
    Metric("backpressure_s", "s", "time the operator could not launch tasks or drain outputs", True),
    Metric("actors_alive", "count", "actors alive in the operator's pool"),
    Metric("actors_active", "count", "actors running a task"),
    Metric("actors_pending", "count", "actors requested and not started yet"),
    Metric("cpu_reserved", "cores", "CPUs reserved by the operator's running tasks"),
    Metric("gpu_reserved", "GPUs", "GPUs reserved by the operator's running tasks"),
)

_NODE = (
    Metric("cpu_pct", "%", "CPU use of the whole node"),
    Metric("mem_used_bytes", "bytes", "memory in use on the node"),
    Metric("mem_total_bytes", "bytes", "memory of the node"),
    Metric("ray_rss_bytes", "bytes", "resident memory of the node's Ray worker processes"),
    Metric("ray_cpu_pct", "%", "CPU use of the node's Ray worker processes (100 = one core)"),
    Metric("gpu_count", "count", "GPUs NVML found on the node"),
    Metric("gpu_util_pct", "%", "mean GPU utilisation"),
    Metric("gpu_mem_used_bytes", "bytes", "GPU memory in use, all GPUs"),
    Metric("gpu_mem_total_bytes", "bytes", "GPU memory, all GPUs"),
)

# A consumer: the user's loop over an iteration call. Ray Data's own iterator statistics where it keeps them
# (``iter_total_blocked_s``, ``iter_user_s``, ``iter_next_batch_s``, ``iter_batches_total``, ``iter_rows_total``).
# fmt: off
_CONSUMER = (
    Metric("batches", "count", "batches the loop received", cumulative=True),
    Metric("rows", "rows", "rows the loop received", cumulative=True),
    Metric("blocked_s", "s", "time the loop waited for its next batch (Ray: iter_total_blocked_s)", True),
    Metric("first_wait_s", "s", "of that, the wait for each iteration's first batch: the pipeline starting up "
           "(Ray: iter_time_to_first_batch_s)", True),
    Metric("user_s", "s", "time spent in the loop's own code between batches (Ray: iter_user_s)", True),
    Metric("shaping_s", "s", "time Ray spent cutting blocks into batches, local shuffle included "
           "(Ray: iter_next_batch_s)", True),
    Metric("batching_wait_s", "s", "of the loop's wait, the part spent on batch shaping, local shuffle "
           "included (Ray: iter_blocked_batching_s)", True),
    Metric("ray_stats", "count", "1 where Ray Data's own iterator statistics were read, 0 where pipetune timed "
           "the loop"),
)
# fmt: on

OPERATOR_METRICS: dict[str, Metric] = {m.name: m for m in _OPERATOR}
NODE_METRICS: dict[str, Metric] = {m.name: m for m in _NODE}
CONSUMER_METRICS: dict[str, Metric] = {m.name: m for m in _CONSUMER}


def metric(name: str) -> Metric:
    """The declaration of ``name``; a name nobody declared is a bug in the reader, not a missing sample."""
    found = OPERATOR_METRICS.get(name) or NODE_METRICS.get(name) or CONSUMER_METRICS.get(name)
    if found is None:
        raise KeyError(f"metric {name!r} is not declared in pipetune.metrics")
    return found


def declared(name: str) -> str:
    """``name``, checked against the declarations: readers name metrics through this, once, at import."""
    return metric(name).name


def rows_moved(operator_name: str) -> str:
    """The counter that says how many rows an operator handled. A write's output rows are its result rows
    (one per file written), so an operator that ends in a write (``MapBatches(price)->Write``) is counted by
    the rows it consumed; any other by the rows it produced."""
    return declared("rows_in" if operator_name.rsplit("->", 1)[-1].startswith("Write") else "rows_out")
