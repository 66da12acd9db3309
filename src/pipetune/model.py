"""The plain data everything else passes around: a recorded Run and its parts.

A Run is immutable. The recorder builds it as events arrive (the store keeps the pieces as they come, so a
crash loses nothing), and once loaded it is only read: diagnosis, reports and tuning consume it and never reach
back into Ray. Runs round-trip through JSON with :meth:`Run.to_json` / :meth:`Run.from_json`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune._serde import from_plain, to_plain
from pipetune.errors import UsageError

SCHEMA_VERSION = 1

KnobValue = int | float | str | tuple[int, ...]

# Dataset calls that pull data through the pipeline before its end (recorded with their call site).
MATERIALIZING = ("count", "show", "schema", "take", "take_all", "take_batch", "materialize", "to_pandas")


class RunStatus(enum.StrEnum):
    """Where a run ended up. ``RUNNING`` is only ever seen while its recorder is alive."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"
    STOPPED = "stopped"  # ended on purpose by pipetune (a tuning trial's time box or warm-up), not a failure

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def ok(self) -> bool:
        return self is RunStatus.SUCCEEDED


class StageKind(enum.StrEnum):
    """What a stage does to the data, which decides how it should be resourced."""

    READ = "read"
    FILTER = "filter"
    TRANSFORM = "transform"
    ACTOR = "actor"
    WRITE = "write"
    ALL_TO_ALL = "all-to-all"
    CONSUME = "consume"  # an iteration call (iter_batches, iter_torch_batches ...): the user's loop reads the data


class EventKind(enum.StrEnum):
    UDF_ERROR = "udf_error"
    OOM_KILL = "oom_kill"
    SPILL = "spill"
    ERRORED_BLOCKS = "errored_blocks"
    TASK_FAILED = "task_failed"
    STALL = "stall"  # the watchdog saw no rows move; detail holds the stuck workers' stacks
    WARNING = "warning"


@dataclass(frozen=True)
class Knobs:
    """The per-stage settings pipetune reads and overrides. ``None`` means "Ray Data's default"."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: float | None = None
    batch_size: int | None = None
    concurrency: int | tuple[int, ...] | None = None
    override_num_blocks: int | None = None
    repartition: int | None = None  # pipetune's own: split the stage's output into this many blocks
    compute: str | None = None  # "tasks" or "actors", as Ray Data will run the stage
    prefetch_batches: int | None = None  # an iteration call's: batches fetched ahead of the loop
    local_shuffle_buffer_size: int | None = None  # an iteration call's: rows buffered for a local shuffle
    drop_last: bool | None = None  # an iteration call's: the last, partial batch is dropped

    def set(self) -> dict[str, Any]:
        """The knobs that were given a value, in declaration order."""
        return {k: v for k, v in to_plain(self).items() if v is not None}

    def replace(self, **changes: Any) -> Knobs:
        return dataclasses.replace(self, **changes)


# The calls whose functions are counted inside tasks (``Stage.counted_in_task``, ``record.in_task``); a per-row
# one is counted without timing each call (``Stage.counted_per_row``).
COUNTED_METHODS = ("map_batches", "map")
PER_ROW_METHODS = ("map",)


@dataclass(frozen=True)
class Stage:
    """One Ray Data call the script made (``read_parquet``, ``map_batches(Embed)``, ``write_parquet`` ...)."""

    index: int
    method: str
    udf: str
    site: str  # "file.py:LINE" of the user's call
    kind: StageKind
    knobs: Knobs = Knobs()
    overridden: tuple[str, ...] = ()  # knob names changed by --set / --config for this run
    inputs: tuple[int, ...] = ()  # the stages whose datasets it reads (two or more: a union, zip or join)
    takes: tuple[str, ...] = ()  # the knobs its call takes (empty: not recorded, a run saved before they were)

    def accepts(self, knob: str) -> bool:
        """Whether the call takes ``knob`` (``range_tensor`` takes no ``num_cpus``); unknown counts as yes."""
        return not self.takes or knob in self.takes

    @property
    def counted_in_task(self) -> bool:
        """Whether the rows its function returns are counted inside its running tasks (``record.in_task``):
        ``map_batches`` and ``map`` calls. A ``filter`` or ``flat_map`` is not: what it returns is not one row
        of its chain's output per row it took."""
        return self.method in COUNTED_METHODS

    @property
    def counted_per_row(self) -> bool:
        """Whether its function is called once a row (``map``): counted, never timed, so the count stays a
        small share of Ray's own work per row (3% on a trivial function: ``record.in_task``)."""
        return self.method in PER_ROW_METHODS

    @property
    def key(self) -> str:
        return f"{self.index}:{self.method}:{self.udf}" if self.udf else f"{self.index}:{self.method}"

    @property
    def label(self) -> str:
        return self.method if self.udf in ("", self.method) else f"{self.method}({self.udf})"


@dataclass(frozen=True)
class Dist:
    """A distribution summarised: count, min, median, p90, mean, max."""

    count: int = 0
    min: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    mean: float = 0.0
    max: float = 0.0

    @staticmethod
    def of(values: list[float]) -> Dist:
        if not values:
            return Dist()
        ordered = sorted(values)
        return Dist(
            count=len(ordered),
            min=ordered[0],
            p50=_quantile(ordered, 0.5),
            p90=_quantile(ordered, 0.9),
            mean=sum(ordered) / len(ordered),
            max=ordered[-1],
        )


@dataclass(frozen=True)
class Calls:
    """A stage's calls of its batch function in a run, counted inside Ray's workers (``record.in_task``): the
    sums a line of seconds per call on rows per call is fitted from (``diagnose.capacity.call_cost``)."""

    stage: int
    count: int = 0
    rows: float = 0.0  # the sum of each call's rows
    seconds: float = 0.0  # the sum of each call's seconds inside the function
    rows_sq: float = 0.0
    rows_seconds: float = 0.0
    seconds_sq: float = 0.0


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Operator:
    """A physical operator Ray Data executed; fused operators list every stage they contain."""

    uid: str  # "<execution>/<ray operator id>", unique within the run
    name: str
    stages: tuple[int, ...]
    compute: str = "tasks"
    max_concurrency: int | None = None  # the pool's or task cap's upper bound, None for "as many as fit"
    num_cpus: float = 1.0  # per task or actor, as Ray Data will request them
    num_gpus: float = 0.0


@dataclass(frozen=True)
class OperatorStats:
    """What an operator did, measured after its execution ended."""

    uid: str
    wall_s: float = 0.0  # first task start to last task end
    busy_s: float = 0.0  # task wall time summed over tasks
    cpu_s: float = 0.0
    udf_s: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    bytes_out: int = 0
    blocks: int = 0
    block_bytes: Dist = Dist()
    block_rows: Dist = Dist()
    task_s: Dist = Dist()
    peak_uss_bytes: float = 0.0
    tasks_failed: int = 0
    backpressure_s: float = 0.0
    nodes: tuple[str, ...] = ()
    stage_time_s: tuple[float, ...] = ()  # busy time per fused stage, in chain order (per_stage_map_timing)
    # Ray's own time turning input blocks into batches and outputs back into blocks (its exec stats'
    # input_prep + output_build), summed over blocks; None in runs recorded before it was kept
    frame_s: float | None = None
    # True: no task had finished when a probe stopped the run; the figures are its running tasks', counted
    # inside them (record.in_task): rows through the first stage's function, its time, the processes' CPU
    running: bool = False
    # per stage whose batch function was counted (record.in_task), its calls since the execution started
    calls: tuple[Calls, ...] = ()


@dataclass(frozen=True)
class Execution:
    """One run of Ray Data's streaming executor: a write, an iteration, or a materialising call."""

    index: int
    dataset_id: str
    started_t: float
    operators: tuple[Operator, ...] = ()
    ended_t: float | None = None
    ok: bool | None = None
    stats: tuple[OperatorStats, ...] = ()
    sink_rows: int = 0  # rows a write reported written: the only count a write fused into a chain gives


@dataclass(frozen=True)
class TaskSpan:
    """One task of an operator: submitted and finished as the driver saw it, and where it ran."""

    uid: str  # the operator's uid
    index: int  # the task's index within the operator
    submitted_t: float  # seconds since the run started
    finished_t: float
    worker_s: float | None = None  # the task's own wall time on its worker
    node: str = ""  # the node its output blocks came from
    failed: bool = False


@dataclass(frozen=True)
class Sample:
    """A point of a time series: ``source`` is an operator uid or ``node:<id>``; values follow ``metrics``."""

    t: float  # seconds since the run started
    source: str
    values: Mapping[str, float]


def at_each_time(
    samples: Iterable[Sample], sources: Container[str] | None = None
) -> list[tuple[float, dict[str, Mapping[str, float]]]]:
    """The samples grouped by the time they were taken, in time order: each source's values at that time (of
    ``sources`` only, where given). Operators are sampled together, so one time is one view of the pipeline."""
    by_t: dict[float, dict[str, Mapping[str, float]]] = {}
    for s in samples:
        if sources is None or s.source in sources:
            by_t.setdefault(s.t, {})[s.source] = s.values
    return sorted(by_t.items())


@dataclass(frozen=True)
class Event:
    """A failure or warning seen while the run went on (UDF exception, OOM kill, spilling, ...)."""

    t: float
    kind: EventKind
    message: str
    stage: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Materialization:
    """A call that pulls a dataset through the pipeline (``count()``, ``show()``, ``take()`` ...)."""

    t: float
    method: str
    site: str
    stages_built: int  # how many stages existed when it was called: more after it means "mid-pipeline"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    resources: Mapping[str, float]
    is_driver: bool = False


@dataclass(frozen=True)
class Environment:
    ray_version: str = ""
    python_version: str = ""
    platform: str = ""
    hostname: str = ""
    address: str = ""  # the cluster address the driver attached to, "" for a fresh local Ray
    session_dir: str = ""
    cluster_resources: Mapping[str, float] = field(default_factory=dict)
    nodes: tuple[NodeInfo, ...] = ()
    raylet_logs: Mapping[str, str] = field(default_factory=dict)  # node id -> raylet.out, nodes on this host
    raylet_pids: Mapping[str, int] = field(default_factory=dict)  # node id -> raylet pid, nodes on this host


@dataclass(frozen=True)
class Run:
    """Everything recorded about one execution of a user's script."""

    id: str
    script: str
    args: tuple[str, ...] = ()
    cwd: str = ""
    script_sha256: str = ""
    overrides: tuple[str, ...] = ()
    status: RunStatus = RunStatus.RUNNING
    started_at: float = 0.0  # epoch seconds
    wall_s: float | None = None
    exit_code: int | None = None
    error: str = ""
    traceback: str = ""
    env: Environment = Environment()
    stages: tuple[Stage, ...] = ()
    executions: tuple[Execution, ...] = ()
    op_samples: tuple[Sample, ...] = ()
    node_samples: tuple[Sample, ...] = ()
    events: tuple[Event, ...] = ()
    materializations: tuple[Materialization, ...] = ()
    tasks: tuple[TaskSpan, ...] = ()
    consumer_samples: tuple[Sample, ...] = ()  # source ``consumer:<stage>`` or ``consumer:<stage>/<split>``
    version: int = SCHEMA_VERSION

    # -- derived views (pure) ---------------------------------------------------------------------------

    def operators(self) -> Iterator[tuple[Execution, Operator]]:
        for execution in self.executions:
            for op in execution.operators:
                yield execution, op

    def stats_of(self, uid: str) -> OperatorStats | None:
        for execution in self.executions:
            for stats in execution.stats:
                if stats.uid == uid:
                    return stats
        return None

    def stage(self, index: int) -> Stage:
        return next(s for s in self.stages if s.index == index)

    def events_of(self, kind: EventKind) -> list[Event]:
        """The run's events of one kind (``OOM_KILL``: tasks Ray's memory monitor killed), as recorded."""
        return [e for e in self.events if e.kind is kind]

    def operators_of(self, stage_index: int) -> list[Operator]:
        return [op for _, op in self.operators() if stage_index in op.stages]

    def mid_pipeline_materializations(self) -> list[Materialization]:
        """Materialising calls made while more stages were still to be built: the pipeline runs twice."""
        return [m for m in self.materializations if m.method in MATERIALIZING and m.stages_built < len(self.stages)]

    def samples_of(self, source: str) -> list[Sample]:
        return [s for s in (*self.op_samples, *self.node_samples, *self.consumer_samples) if s.source == source]

    def consumers(self) -> list[str]:
        """The consumers the script's loops were, in the order first seen (one per split of a streaming_split)."""
        return list(dict.fromkeys(s.source for s in self.consumer_samples))

    @property
    def rows(self) -> int:
        """Rows that reached the end of the longest execution (the sink's input, or the last output)."""
        finished = [e for e in self.executions if e.stats]
        if not finished:
            return 0
        main = max(finished, key=lambda e: (e.ended_t or e.started_t) - e.started_t)
        last = main.stats[-1]
        return main.sink_rows or last.rows_in or last.rows_out

    # -- persistence ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dict(to_plain(self))

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Run:
        """A saved run, of this format or an older one; a run saved by a newer pipetune is refused."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a saved run is a JSON object, not {type(data).__name__}")
        version = int(data.get("version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"this run was saved by a newer pipetune (run format {version}; this one reads up to {SCHEMA_VERSION})",
                "upgrade pipetune to read it",
            )
        return from_plain(Run, {**dict(data), "version": SCHEMA_VERSION})  # older formats are read as they are

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @staticmethod
    def from_json(text: str) -> Run:
        return Run.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @staticmethod
    def load(path: str | Path) -> Run:
        return Run.from_json(Path(path).read_text())
