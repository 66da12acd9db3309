"""The only module that touches ``ray.data._internal``.

Everything pipetune needs from Ray Data's executor goes through the small functions here, returning plain
dicts and tuples. A Ray upgrade that moves these internals is fixed in this one file; the version check below
says so out loud instead of failing deep inside a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import ray
import ray.data
from ray.data._internal.execution.execution_callback import ExecutionCallback

from pipetune.model import Dist, OperatorStats

log = logging.getLogger(__name__)

TESTED_RAY = ("2.60",)
CALLBACK_ENV = "RAY_DATA_EXECUTION_CALLBACKS"
CALLBACK_PATH = "pipetune.record._ray_compat.PipetuneCallback"


def check_version() -> str | None:
    """A warning when the installed Ray is not one this adapter was written against, else None."""
    major_minor = ".".join(ray.__version__.split(".")[:2])
    if major_minor in TESTED_RAY:
        return None
    return f"pipetune was tested with Ray {', '.join(TESTED_RAY)}; Ray {ray.__version__} may record less"


# -- the execution callback ----------------------------------------------------------------------------

# Set by the probe in the child process before the user's script runs. Ray instantiates callback classes
# itself, with no arguments, once per execution, so the class reaches its listener through this global.
_listener: Any = None


def install_callback(listener: Any) -> None:
    """Have every Ray Data execution in this process report to ``listener``.

    The environment variable is read at each plan, so it also reaches datasets whose DataContext was copied
    before we got here; appending to the global context would miss those.
    """
    global _listener
    _listener = listener
    current = [p for p in os.environ.get(CALLBACK_ENV, "").split(",") if p]
    if CALLBACK_PATH not in current:
        os.environ[CALLBACK_ENV] = ",".join([*current, CALLBACK_PATH])


class PipetuneCallback(ExecutionCallback):
    """Forwards executor events to the probe. Outside the driver (a split's coordinator runs its execution in
    an actor) it asks ``remote`` for a probe of that process, which does nothing outside a recorded run."""

    def __init__(self) -> None:
        self._target = _listener if _listener is not None else _remote_listener()

    def before_execution_starts(self, executor: Any) -> None:
        if self._target is not None:
            self._target.execution_started(executor)

    def on_execution_step(self, executor: Any) -> None:
        if self._target is not None:
            self._target.execution_step(executor)

    def after_execution_succeeds(self, executor: Any) -> None:
        if self._target is not None:
            self._target.execution_ended(executor, None)

    def after_execution_fails(self, executor: Any, error: Exception) -> None:
        if self._target is not None:
            self._target.execution_ended(executor, error)


def _remote_listener() -> Any:
    from pipetune.record import remote  # only in a process that is not the driver

    try:
        return remote.executor_listener()
    except Exception as err:  # recording is best effort: never fail the execution it watches
        log.debug("pipetune: no recording in this process (%s)", err)
        return None


def install_split_pickling(reduce: Callable[[Any], tuple[Any, ...]]) -> None:
    """Have a ``streaming_split`` iterator pickle as ``reduce(iterator)`` says (it is sent to an actor)."""
    from ray.data._internal.iterator.stream_split_iterator import StreamSplitDataIterator

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return reduce(self)

    StreamSplitDataIterator.__reduce__ = __reduce__  # type: ignore[method-assign]


# -- reading the executor --------------------------------------------------------------------------------


def dataset_id(executor: Any) -> str:
    return str(getattr(executor, "_dataset_id", ""))


def _ops(executor: Any) -> Iterator[tuple[str, Any, Any]]:
    """(operator id, physical op, op state) in topological order, without the synthetic input buffers."""
    topology = getattr(executor, "_topology", None) or {}
    for i, (op, state) in enumerate(topology.items()):
        if type(op).__name__ == "InputDataBuffer":
            continue
        yield executor._get_operator_id(op, i), op, state


TaskSink = Callable[[str, int, Any, dict[str, Any]], None]  # (event, task index, physical op, details)
_task_sink: TaskSink | None = None


def install_task_hooks(sink: TaskSink) -> None:
    """Have every operator report its tasks' submission, first output (its node) and end to ``sink``.

    Ray Data's per-operator runtime metrics already hear of each task; wrapping those three methods costs a
    dictionary write per task event, far below a task's own cost.
    """
    global _task_sink
    from ray.data._internal.execution.interfaces.op_runtime_metrics import OpRuntimeMetrics

    if _task_sink is None:
        _wrap_metric(OpRuntimeMetrics, "on_task_submitted", "submitted", lambda args: {})
        _wrap_metric(OpRuntimeMetrics, "on_task_output_generated", "output", _output_node)
        _wrap_metric(OpRuntimeMetrics, "on_task_finished", "finished", _finish_details)
    _task_sink = sink


def _wrap_metric(cls: Any, name: str, event: str, details: Callable[[tuple[Any, ...]], dict[str, Any]]) -> None:
    original = getattr(cls, name)

    def wrapper(self: Any, task_index: int, *args: Any, **kwargs: Any) -> Any:
        result = original(self, task_index, *args, **kwargs)
        if _task_sink is not None:
            try:
                _task_sink(event, task_index, getattr(self, "_op", None), details(args))
            except Exception:  # never let the recorder break the pipeline it watches
                logging.getLogger(__name__).debug("task event %s dropped", event, exc_info=True)
        return result

    setattr(cls, name, wrapper)


def _output_node(args: tuple[Any, ...]) -> dict[str, Any]:
    blocks = getattr(args[0], "blocks", []) if args else []
    stats = getattr(getattr(blocks[0], "metadata", None), "exec_stats", None) if blocks else None
    return {"node": str(getattr(stats, "node_id", "") or "")}


def _finish_details(args: tuple[Any, ...]) -> dict[str, Any]:
    exception = args[0] if args else None
    worker = getattr(args[1], "task_wall_time_s", None) if len(args) > 1 else None
    return {"failed": exception is not None, "worker_s": worker}


def operator_objects(executor: Any) -> dict[int, str]:
    """id(physical op) -> its operator id, so task events can be attributed to operators."""
    return {id(op): op_id for op_id, op, _ in _ops(executor)}


def operators(executor: Any) -> list[dict[str, Any]]:
    """What each physical operator is: its id, name, the logical ops fused into it and its resources."""
    out = []
    for op_id, op, _ in _ops(executor):
        args = getattr(op, "_ray_remote_args", {}) or {}
        out.append(
            {
                "op_id": op_id,
                "name": op.name,
                "logical": list(getattr(op, "_logical_operators", [])),
                "compute": "actors" if "ActorPool" in type(op).__name__ else "tasks",
                "max_concurrency": _max_concurrency(op),
                "num_cpus": float(args.get("num_cpus", 1) or 0),
                "num_gpus": float(args.get("num_gpus", 0) or 0),
            }
        )
    return out


def _max_concurrency(op: Any) -> int | None:
    try:
        limit = op.get_max_concurrency_limit()
    except Exception:  # not every operator kind implements it
        return None
    return int(limit) if limit is not None and limit != float("inf") else None


def snapshot(executor: Any) -> dict[str, dict[str, float]]:
    """Live figures per operator, named as in ``pipetune.metrics.OPERATOR_METRICS``. Cheap: plain reads."""
    rm = getattr(executor, "_resource_manager", None)
    return {op_id: _op_snapshot(op, state, rm) for op_id, op, state in _ops(executor)}


def _op_snapshot(op: Any, state: Any, rm: Any) -> dict[str, float]:
    m = op.metrics
    usage = _safe(lambda: rm.get_op_usage(op)) if rm is not None else None
    values = {
        "rows_in": m.num_row_inputs_received,
        "rows_out": m.rows_task_outputs_generated,
        "bytes_in": m.bytes_inputs_received,
        "bytes_out": m.bytes_task_outputs_generated,
        "bytes_done": m.bytes_task_inputs_processed,
        "bytes_planned": _planned_bytes(op),
        "read_rows_planned": _planned_read_rows(op),
        "rows_planned": _safe(lambda: op.num_output_rows_total()),  # Ray's estimate, as its progress bars show it
        "tasks_running": m.num_tasks_running,
        "tasks_finished": m.num_tasks_finished,
        "tasks_failed": m.num_tasks_failed,
        "inqueue_blocks": sum(q.num_blocks for q in state.input_queues) + m.obj_store_mem_internal_inqueue_blocks,
        "inqueue_bytes": sum(q.memory_usage for q in state.input_queues) + m.obj_store_mem_internal_inqueue,
        "outqueue_blocks": state.output_queue.num_blocks + m.obj_store_mem_internal_outqueue_blocks,
        "outqueue_bytes": state.output_queue.memory_usage + m.obj_store_mem_internal_outqueue,
        "obj_store_bytes": getattr(usage, "object_store_memory", 0) or 0,
        "backpressure_s": m.task_submission_backpressure_time + m.task_output_backpressure_time,
        "actors_alive": m.num_alive_actors,
        "actors_active": m.num_active_actors,
        "actors_pending": m.num_pending_actors,
        "cpu_reserved": getattr(usage, "cpu", 0) or 0,
        "gpu_reserved": getattr(usage, "gpu", 0) or 0,
    }
    return {k: float(v or 0) for k, v in values.items()}


def _planned_bytes(op: Any) -> float:
    """Input bytes of the read tasks an operator that reads will get: its input buffer counts them all as received
    when the execution starts. 0 for an operator fed by another."""
    return float(sum(d.metrics.bytes_inputs_received or 0 for d in _read_inputs(op)))


def _read_inputs(op: object) -> list[Any]:
    """The operator's input buffers of read tasks (Ray's ``InputDataBuffer``): none for one fed by another."""
    deps = getattr(op, "input_dependencies", None) or []
    return [d for d in deps if type(d).__name__ == "InputDataBuffer"]


def _planned_read_rows(op: object) -> float:
    """Rows an operator that reads will get out of its read tasks, in all: the ``Read`` logical operator's
    metadata (``infer_metadata().num_rows``), only where Ray has already computed it while planning (a cached
    property: never a second listing of the files here). 0 where it has not, or the operator does not read."""
    logical = [lop for lop in getattr(op, "_logical_operators", None) or [] if type(lop).__name__ == "Read"]
    cached = [vars(lop).get("_cached_output_metadata") for lop in logical] if _read_inputs(op) else []
    rows = [getattr(getattr(c, "metadata", None), "num_rows", None) for c in cached if c is not None]
    known = [float(n) for n in rows if n is not None]
    return sum(known) if known and len(known) == len(rows) else 0.0


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a figure we cannot read is left out, never fatal to the user's pipeline
        return None


RELEASE_WAIT_S = 2.0  # chosen: one call to an actor on the same cluster; a run being stopped does not wait longer


def release(executor: Any) -> None:
    """Give back the share of the cluster the executor asked Ray Data's autoscaling coordinator for, and wait
    until the coordinator has it: a driver that is killed never does (Ray does it in the executor's shutdown),
    and the coordinator, one actor for the whole cluster, keeps splitting the cluster's CPUs with the dead
    execution until its request expires (``RAY_DATA_AUTOSCALING_REQUEST_EXPIRE_TIME_S``, 180 s by default):
    every run in that window would get half the cluster."""
    autoscaler = getattr(executor, "_cluster_autoscaler", None)
    client = getattr(autoscaler, "_autoscaling_coordinator", None)
    actor = getattr(client, "__dict__", {}).get("_autoscaling_coordinator")  # the shared actor, once created
    requester = getattr(autoscaler, "_requester_id", None)
    if actor is not None and requester is not None:
        _safe(lambda: ray.get(actor.cancel_request.remote(requester), timeout=RELEASE_WAIT_S))
    elif autoscaler is not None:
        _safe(autoscaler.on_executor_shutdown)


def final_stats(executor: Any) -> dict[str, OperatorStats]:
    """Per operator, what its finished tasks did: from the blocks' execution stats and the runtime metrics."""
    return {op_id: _op_stats(op_id, op) for op_id, op, _ in _ops(executor)}


def _op_stats(uid: str, op: Any) -> OperatorStats:
    blocks = [b for group in (_safe(op.get_stats) or {}).values() for b in group]
    execs = [b.exec_stats for b in blocks if b.exec_stats is not None]
    m = op.metrics
    return OperatorStats(
        uid=uid,
        wall_s=_span(execs),
        busy_s=sum(_task_durations(execs)),
        cpu_s=sum(e.cpu_time_s or 0.0 for e in execs),
        udf_s=sum(e.function_body_time_s or 0.0 for e in execs),
        rows_in=int(m.num_row_inputs_received or 0),
        rows_out=int(sum(b.num_rows or 0 for b in blocks)),
        bytes_out=int(sum(b.size_bytes or 0 for b in blocks)),
        blocks=len(blocks),
        block_bytes=Dist.of([float(b.size_bytes or 0) for b in blocks]),
        block_rows=Dist.of([float(b.num_rows or 0) for b in blocks]),
        task_s=Dist.of(_task_durations(execs)),
        peak_uss_bytes=float(m.max_uss_bytes.max or 0),
        tasks_failed=int(m.num_tasks_failed or 0),
        backpressure_s=float(m.task_submission_backpressure_time + m.task_output_backpressure_time),
        nodes=tuple(sorted({str(e.node_id) for e in execs if e.node_id})),
        stage_time_s=_stage_times(execs),
        frame_s=_frame_s(execs),
    )


def _frame_s(execs: list[Any]) -> float | None:
    """Ray's input prep and output build, summed; None unless every block measured them (Ray times a chain with
    a row-based stage as one step per stage, without the phases, unless ``accurate_map_phase_timing``)."""
    phases = [(e.input_prep_time_s, e.output_build_time_s) for e in execs]
    if not phases or any(p is None or b is None for p, b in phases):
        return None
    return float(sum(p + b for p, b in phases))


def _stage_times(execs: list[Any]) -> tuple[float, ...]:
    per_block = [tuple(e.stage_time_s) for e in execs if getattr(e, "stage_time_s", None)]
    width = max((len(t) for t in per_block), default=0)
    return tuple(sum(t[i] for t in per_block if len(t) == width) for i in range(width))


def _span(execs: list[Any]) -> float:
    starts = [e.start_time_s for e in execs if e.start_time_s is not None]
    ends = [e.end_time_s for e in execs if e.end_time_s is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def _task_durations(execs: list[Any]) -> list[float]:
    """A task may yield several blocks; its duration runs from its first block's start to its last's end."""
    spans: dict[Any, tuple[float, float]] = {}
    for i, e in enumerate(execs):
        if e.start_time_s is None or e.end_time_s is None:
            continue
        key = e.task_idx if e.task_idx is not None else ("block", i)
        lo, hi = spans.get(key, (e.start_time_s, e.end_time_s))
        spans[key] = (min(lo, e.start_time_s), max(hi, e.end_time_s))
    return [hi - lo for lo, hi in spans.values()]


def errored_blocks(executor: Any) -> int:
    return int(getattr(executor, "_num_errored_blocks", 0) or 0)


# -- the logical plan, for mapping operators back to the user's calls -----------------------------------


def logical_ops(ds: Any) -> list[Any]:
    """Every logical operator a Dataset's plan holds, the dataset's own last."""
    plan = getattr(ds, "_logical_plan", None)
    root = getattr(plan, "dag", None)
    seen: dict[int, Any] = {}
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(getattr(node, "input_dependencies", []) or [])
    return list(seen.values())


# -- the Ray session, scoped to the one this driver belongs to ------------------------------------------


def session_dir() -> str:
    node = getattr(ray._private.worker, "_global_node", None)
    return str(_safe(node.get_session_dir_path) or "") if node is not None else ""


def enable_stage_timing() -> None:
    """Split fused operators' time per stage (one float per stage on each block's metadata: cheap)."""
    from ray.data import DataContext

    DataContext.get_current().per_stage_map_timing = True


SINK_LOGGER = "ray.data.dataset"
SINK_PATTERN = "Data sink %s finished. %d rows and %s data written."


def context_fields() -> dict[str, Any]:
    """DataContext's fields and their defaults, to validate ``ctx.FIELD=VALUE`` overrides."""
    from ray.data.context import DataContext

    ctx = DataContext()
    return {f.name: getattr(ctx, f.name) for f in dataclasses.fields(DataContext) if not f.name.startswith("_")}


@contextlib.contextmanager
def local_head() -> Iterator[str]:
    """A local Ray head node for several drivers in turn (a tuning study's trials); yields its address.

    Ray's ``Cluster`` helper starts a head without attaching a driver to it (a driver in this process made Ray
    Data's actor pools in other drivers die before they started). It is a test helper: it defaults to 1 CPU
    and a 150 MiB object store, so the host's CPUs and GPUs, and the object store a plain ``ray.init()`` would
    size here (``local_object_store``), are given explicitly. It records its address where a bare
    ``ray.init()`` on this host would join it: that record is removed at once.
    """
    from ray._common.utils import reset_ray_address
    from ray.cluster_utils import Cluster

    from pipetune.record.nodes import local_gpus

    resources = {"num_cpus": len(os.sched_getaffinity(0)), "num_gpus": local_gpus(), **local_object_store()}
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **resources})
    reset_ray_address()
    os.environ.pop("RAY_ADDRESS", None)
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


def local_object_store() -> dict[str, int]:
    """``object_store_memory`` as a node's start argument: the object store Ray gives a local node it starts
    itself (``ray.init()``, ``ray start``) by its own rule, a share of the memory available, capped by
    /dev/shm. Trials measured on the ``Cluster`` helper's 150 MiB ran with Ray Data's output backpressure where
    the user's runs had none (ETL example: its one 81 MB read block held a 75 MiB budget, so the read task
    stayed "running" until the map after it ended)."""
    try:
        from ray._private import utils

        available = utils.estimate_available_memory()  # type: ignore[no-untyped-call]
        return {"object_store_memory": int(utils.resolve_object_store_memory(available))}
    except Exception:  # a Ray without the rule: the helper's default, as before
        return {}


# -- iteration: Ray Data's own iterator statistics ----------------------------------------------------------


def install_iteration_hook(on_stats: Callable[[Any], None]) -> None:
    """Call ``on_stats(stats)`` with the DatasetStats every batch iterator keeps its timers in, on the thread
    that starts the iteration (the consumer's), just before its first batch."""
    from ray.data._internal.block_batching.iter_batches import BatchIterator

    original = BatchIterator.__init__
    if getattr(original, "_pipetune", False):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        with contextlib.suppress(Exception):  # figures are best effort: never break the user's loop
            if kwargs.get("stats") is not None:
                on_stats(kwargs["stats"])

    init._pipetune = True  # type: ignore[attr-defined]
    BatchIterator.__init__ = init  # type: ignore[method-assign]


def iteration_figures(stats: Any) -> dict[str, float]:
    """Ray's iterator figures so far, named as pipetune's consumer metrics."""
    return {
        "batches": float(stats.iter_batches_total),
        "rows": float(stats.iter_rows_total),
        "blocked_s": float(stats.iter_total_blocked_s.get()),
        "first_wait_s": float(stats.iter_time_to_first_batch_s.get()),
        "user_s": float(stats.iter_user_s.get()),
        "shaping_s": float(stats.iter_next_batch_s.get()),
        "batching_wait_s": float(stats.iter_blocked_batching_s.get()),
    }


def split_index(iterator: Any) -> int | None:
    """Which output of a ``streaming_split`` a DataIterator reads; None for a plain one."""
    index = getattr(iterator, "_output_split_idx", None)
    return int(index) if isinstance(index, int) else None
