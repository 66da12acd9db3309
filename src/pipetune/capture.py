"""The capture protocol: every message the recorded driver sends, its one encoding, and its one fold.

The child process sends these messages as JSON lines; the recorder stores each stored kind (a :data:`Part`) as
it arrives, and :class:`RunBuilder` folds them, in the order sent, into a :class:`~pipetune.model.Run`: when a
run is loaded, while it is shown live, and when it is imported (:func:`messages_of` is the fold's inverse).

Messages are ``msgspec`` Structs, tagged by ``kind``: encoding is one C call, and decoding checks every field's
type. A stored part's JSON is the message's own shape; parts stored before the tag was written decode too, as
the store passes the kind it kept beside each part. Unknown fields are ignored and missing ones get defaults,
so a newer pipetune reads what an older one stored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args

import msgspec

from pipetune.model import (
    Environment,
    Event,
    Execution,
    Materialization,
    NodeInfo,
    Operator,
    OperatorStats,
    Run,
    RunStatus,
    Sample,
    Stage,
    TaskSpan,
)

_NAME_SEQ = re.compile(r"(.*)_(\d+)")


class OpId:
    """Which operator: the execution it ran in, and Ray Data's name and sequence number for it.

    ``str()`` gives the form stored and shown, ``"0/MapBatches(work)_2"``; :meth:`parse` reads it back.
    """

    __slots__ = ("execution", "name", "seq")
    execution: int
    name: str
    seq: int | None  # None: Ray gave an id without a number (kept as it was)

    def __init__(self, execution: int, name: str, seq: int | None = None) -> None:
        object.__setattr__(self, "execution", execution)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "seq", seq)

    @staticmethod
    def of(execution: int, ray_id: str) -> OpId:
        """From Ray Data's own operator id (``"MapBatches(work)_2"``) within an execution."""
        match = _NAME_SEQ.fullmatch(ray_id)
        return OpId(execution, match[1], int(match[2])) if match else OpId(execution, ray_id)

    @staticmethod
    def parse(text: str) -> OpId:
        execution, _, ray_id = text.partition("/")
        return OpId.of(int(execution), ray_id)

    @property
    def ray_id(self) -> str:
        """The id Ray Data gives the operator within its execution."""
        return self.name if self.seq is None else f"{self.name}_{self.seq}"

    def __str__(self) -> str:
        return f"{self.execution}/{self.ray_id}"

    def __repr__(self) -> str:
        return f"OpId({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpId) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"OpId is immutable (tried to set {name})")

    def _key(self) -> tuple[int, str, int | None]:
        return self.execution, self.name, self.seq


# -- the messages --------------------------------------------------------------------------------------


class _Message(msgspec.Struct, frozen=True, tag_field="kind"):
    pass


class Started(_Message, frozen=True, tag="started"):
    """The driver is up and the probe installed; ``warning`` e.g. names a Ray version not written against."""

    pid: int
    warning: str = ""


class StageBuilt(_Message, frozen=True, tag="stage"):
    stage: Stage


class Materialized(_Message, frozen=True, tag="materialize"):
    """A call that pulled a dataset through the pipeline; ``stages_built``: how many stages existed then."""

    t: float
    method: str
    site: str
    stages_built: int

    def materialization(self) -> Materialization:
        return Materialization(self.t, self.method, self.site, self.stages_built)


class EnvironmentSeen(_Message, frozen=True, tag="environment"):
    """The cluster the driver attached to, sent once Ray is up (the fields of :class:`Environment`)."""

    ray_version: str = ""
    python_version: str = ""
    platform: str = ""
    hostname: str = ""
    address: str = ""
    session_dir: str = ""
    cluster_resources: dict[str, float] = {}
    nodes: tuple[NodeInfo, ...] = ()
    raylet_logs: dict[str, str] = {}
    raylet_pids: dict[str, int] = {}

    def environment(self) -> Environment:
        return Environment(**msgspec.structs.asdict(self))

    @staticmethod
    def of(env: Environment) -> EnvironmentSeen:
        return EnvironmentSeen(**{f.name: getattr(env, f.name) for f in dataclasses.fields(env)})


class ExecutionStarted(_Message, frozen=True, tag="execution"):
    index: int
    t: float
    dataset_id: str = ""
    operators: tuple[Operator, ...] = ()

    def execution(self) -> Execution:
        return Execution(self.index, self.dataset_id, self.t, self.operators)


class ExecutionEnded(_Message, frozen=True, tag="execution_end"):
    index: int
    t: float
    ok: bool | None = None
    stats: tuple[OperatorStats, ...] = ()


class OpSamples(_Message, frozen=True, tag="op_samples"):
    """One tick of every operator's live figures (named as in ``pipetune.metrics``)."""

    t: float
    values: dict[OpId, dict[str, float]]

    def samples(self) -> Iterator[Sample]:
        return (Sample(self.t, str(op), v) for op, v in self.values.items())


class NodeSamples(_Message, frozen=True, tag="node_samples"):
    """One tick of every node's figures, keyed ``node:<id>``."""

    t: float
    values: dict[str, dict[str, float]]

    def samples(self) -> Iterator[Sample]:
        return (Sample(self.t, node, v) for node, v in self.values.items())


class ConsumerSamples(_Message, frozen=True, tag="consumer_samples"):
    """One consumer's figures (``pipetune.metrics`` CONSUMER_METRICS, cumulative over the run), keyed
    ``consumer:<stage>`` or ``consumer:<stage>/<split>``."""

    t: float
    values: dict[str, dict[str, float]]

    def samples(self) -> Iterator[Sample]:
        return (Sample(self.t, source, v) for source, v in self.values.items())


class SpanRow(msgspec.Struct, frozen=True, array_like=True):
    """A :class:`TaskSpan` on the wire: a row, as spans come by the thousand."""

    op: OpId
    index: int
    submitted_t: float
    finished_t: float
    worker_s: float | None = None
    node: str = ""
    failed: bool = False

    def span(self) -> TaskSpan:
        return TaskSpan(str(self.op), self.index, self.submitted_t, self.finished_t, self.worker_s, self.node,
                        self.failed)  # fmt: skip

    @staticmethod
    def of(span: TaskSpan) -> SpanRow:
        return SpanRow(OpId.parse(span.uid), span.index, span.submitted_t, span.finished_t, span.worker_s,
                       span.node, span.failed)  # fmt: skip


class Tasks(_Message, frozen=True, tag="tasks"):
    spans: tuple[SpanRow, ...]


class SinkRows(_Message, frozen=True, tag="sink"):
    """A write reported how many rows it wrote, in execution ``index``."""

    index: int
    rows: int


class UdfRows(_Message, frozen=True, tag="udf_rows"):
    """Rows one worker process's batch function for ``stage`` has returned from so far (``record.in_task``),
    the seconds spent inside it, and the process's CPU and wall seconds since its first batch for the stage
    ended; sent by the worker, folded into the run's figures by the recorder, never stored as it is. ``t``:
    the worker's ``perf_counter`` (a worker of a study's shared Ray does not know the run's clock origin)."""

    t: float
    stage: int
    pid: int
    rows: int
    udf_s: float = 0.0
    cpu_s: float = 0.0
    busy_s: float = 0.0
    # with ``rows`` and ``udf_s``, the sums a line of call time on rows is fitted from (``model.Calls``)
    calls: int = 0
    rows_sq: float = 0.0
    rows_s: float = 0.0
    s_sq: float = 0.0


class EventSeen(_Message, frozen=True, tag="event"):
    event: Event


class Outcome(_Message, frozen=True, tag="finished"):
    """How the run ended: sent by the driver as its last message, or decided by the recorder."""

    status: RunStatus = RunStatus.RUNNING
    exit_code: int | None = None
    error: str = ""
    traceback: str = ""
    error_kind: str = ""  # "usage", "script", "ray", "not_a_pipeline": which kind of failure, for the CLI
    wall_s: float | None = None

    def timed(self, wall_s: float) -> Outcome:
        """The same outcome, ``wall_s`` long."""
        return msgspec.structs.replace(self, wall_s=wall_s)

    def applied_to(self, run: Run) -> Run:
        return dataclasses.replace(run, status=self.status, wall_s=self.wall_s, exit_code=self.exit_code,
                                   error=self.error, traceback=self.traceback)  # fmt: skip

    @staticmethod
    def of(run: Run) -> Outcome:
        return Outcome(run.status, run.exit_code, run.error, run.traceback, wall_s=run.wall_s)


Part = (
    StageBuilt
    | Materialized
    | EnvironmentSeen
    | ExecutionStarted
    | ExecutionEnded
    | OpSamples
    | NodeSamples
    | ConsumerSamples
    | Tasks
    | SinkRows
    | EventSeen
)  # what the store keeps of a run, in order
Message = Part | Started | Outcome | UdfRows
_TIMED = (Materialized, ExecutionStarted, ExecutionEnded, OpSamples, NodeSamples, ConsumerSamples)


def clock(message: Message) -> float | None:
    """When a message was sent (seconds since the run started), for the kinds that say."""
    return message.t if isinstance(message, _TIMED) else None


def kind_of(message: Message) -> str:
    """The message's tag: what the store files the part under."""
    return str(type(message).__struct_config__.tag)


# -- encoding ------------------------------------------------------------------------------------------


def _enc_hook(value: Any) -> Any:
    if isinstance(value, OpId):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is OpId and isinstance(value, str):
        return OpId.parse(value)
    raise NotImplementedError(f"cannot decode {tp.__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message, dec_hook=_dec_hook)
_part_decoders: dict[str, msgspec.json.Decoder[Part]] = {
    str(cls.__struct_config__.tag): msgspec.json.Decoder(cls, dec_hook=_dec_hook) for cls in get_args(Part)
}
_outcome_decoder = msgspec.json.Decoder(Outcome, dec_hook=_dec_hook)
DecodeError = msgspec.MsgspecError  # malformed JSON, or a field of the wrong type or missing


def encode(message: Message) -> bytes:
    """One message as one line of JSON (no newline)."""
    return _encoder.encode(message)


def decode(line: bytes | str) -> Message:
    """A message from :func:`encode`'s output; raises :data:`DecodeError` when it is not one."""
    return _decoder.decode(line)


def decode_part(kind: str, payload: bytes | str) -> Part | None:
    """A stored part filed under ``kind``; None for kinds this version does not know (a newer one wrote it)."""
    decoder = _part_decoders.get(kind)
    return decoder.decode(payload) if decoder is not None else None


def decode_outcome(text: bytes | str) -> Outcome:
    return _outcome_decoder.decode(text)


# -- the fold ------------------------------------------------------------------------------------------


class RunBuilder:
    """Folds a run's messages, in the order sent, onto ``seed`` (the run's header and outcome)."""

    def __init__(self, seed: Run) -> None:
        self._seed = seed
        self._env = seed.env
        self._stages: list[Stage] = []
        self._executions: list[Execution] = []
        self._op_samples: list[Sample] = []
        self._node_samples: list[Sample] = []
        self._events: list[Event] = []
        self._materializations: list[Materialization] = []
        self._tasks: list[TaskSpan] = []
        self._consumer_samples: list[Sample] = []

    def feed(self, message: Message) -> None:
        """Take one message; kinds that hold nothing of the run (started, finished) are ignored."""
        match message:
            case StageBuilt(stage=stage):
                self._stages.append(stage)
            case EnvironmentSeen():
                self._env = message.environment()
            case ExecutionStarted():
                self._executions.append(message.execution())
            case ExecutionEnded(index=index, t=t, ok=ok, stats=stats):
                self._replace(index, lambda e: dataclasses.replace(e, ended_t=t, ok=ok, stats=stats))
            case SinkRows(index=index, rows=rows):
                self._replace(index, lambda e: dataclasses.replace(e, sink_rows=e.sink_rows + rows))
            case OpSamples() | NodeSamples():
                target = self._op_samples if isinstance(message, OpSamples) else self._node_samples
                target.extend(message.samples())
            case EventSeen(event=event):
                self._events.append(event)
            case Materialized():
                self._materializations.append(message.materialization())
            case Tasks(spans=spans):
                self._tasks.extend(row.span() for row in spans)
            case ConsumerSamples():
                self._consumer_samples.extend(message.samples())

    def _replace(self, index: int, change: Callable[[Execution], Execution]) -> None:
        """Apply ``change`` to execution ``index`` (a part for an execution never started changes nothing)."""
        self._executions = [change(e) if e.index == index else e for e in self._executions]

    def run(self) -> Run:
        """The run as folded so far (a new immutable value every call)."""
        return dataclasses.replace(
            self._seed,
            env=self._env,
            stages=tuple(sorted(self._stages, key=lambda s: s.index)),  # other processes add stages too
            executions=tuple(self._executions),
            op_samples=tuple(self._op_samples),
            node_samples=tuple(self._node_samples),
            events=tuple(self._events),
            materializations=tuple(self._materializations),
            tasks=tuple(self._tasks),
            consumer_samples=tuple(self._consumer_samples),
        )


def build(seed: Run, messages: Iterable[Message]) -> Run:
    builder = RunBuilder(seed)
    for message in messages:
        builder.feed(message)
    return builder.run()


def messages_of(run: Run) -> Iterator[Part]:
    """A whole run as the parts :class:`RunBuilder` folds back into it (``build(seed, messages_of(run))``)."""
    yield from (StageBuilt(stage) for stage in run.stages)
    yield EnvironmentSeen.of(run.env)
    for e in run.executions:
        yield ExecutionStarted(e.index, e.started_t, e.dataset_id, e.operators)
        if e.ended_t is not None:
            yield ExecutionEnded(e.index, e.ended_t, e.ok, e.stats)
    yield from (OpSamples(s.t, {OpId.parse(s.source): dict(s.values)}) for s in run.op_samples)
    yield from (NodeSamples(s.t, {s.source: dict(s.values)}) for s in run.node_samples)
    yield from (ConsumerSamples(s.t, {s.source: dict(s.values)}) for s in run.consumer_samples)
    yield from (EventSeen(event) for event in run.events)
    yield from (Materialized(m.t, m.method, m.site, m.stages_built) for m in run.materializations)
    if run.tasks:
        yield Tasks(tuple(SpanRow.of(t) for t in run.tasks))
    yield from (SinkRows(e.index, e.sink_rows) for e in run.executions if e.sink_rows)
