"""The recorder's half inside the user's driver process: listens to Ray Data and sends what it sees.

It runs on Ray Data's scheduler thread (execution callbacks) and on one sampling thread, so every handler
copies a few numbers and returns; anything heavier happens in the parent process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from typing import Any

import ray

from pipetune.capture import (
    ConsumerSamples,
    EnvironmentSeen,
    EventSeen,
    ExecutionEnded,
    ExecutionStarted,
    Materialized,
    NodeSamples,
    OpId,
    OpSamples,
    SinkRows,
    StageBuilt,
    Tasks,
)
from pipetune.errors import PipetuneError, UsageError, describe_exception
from pipetune.metrics import SAMPLE_INTERVAL_S
from pipetune.model import Event, EventKind, Operator, OperatorStats, Stage
from pipetune.record import _ray_compat, nodes
from pipetune.record.channel import Sender
from pipetune.record.consume import ConsumerLog
from pipetune.record.interpose import StageRegistry
from pipetune.record.tasks import TaskLog
from pipetune.settings import Settings, check_selectors


class Probe:
    """Receives executor callbacks (through ``_ray_compat``) and node samples; sends them to the parent.

    ``remote``: a probe in a process of the run that is not its driver (``record.remote``): it reports the
    executions that run there and leaves the cluster's description and node sampling to the driver's.
    """

    def __init__(
        self,
        sender: Sender,
        overrides: Settings,
        t0: float,
        sandbox: str | None = None,
        sample_rows: int | None = None,
        remote: bool = False,
    ) -> None:
        self.remote = remote
        self.sender = sender
        self.overrides = overrides
        self.t0 = t0
        self.registry = StageRegistry(overrides, self._stage_built, self._materialized, sandbox, sample_rows)
        self._executions: dict[str, int] = {}  # dataset id -> execution index
        self._last_sample: dict[str, float] = {}
        self._node_thread: NodeSampling | None = None
        self._lock = threading.Lock()
        self.tasks = TaskLog(t0)
        _ray_compat.install_task_hooks(self.tasks)
        self.registry.before_execution = self.check_settings
        self.registry.consumers = ConsumerLog(self._consumed)
        self._checked = False
        self.winding_down = threading.Event()  # set by ``WIND_DOWN_SIGNAL``: the recorder is about to stop the run
        self._wound_down: set[str] = set()
        # a tuning trial's driver leaves without Ray's teardown (``_child``): each execution gives back its share
        # of the cluster itself, and waits until Ray Data's coordinator has it
        self.leaves_fast = sandbox is not None

    def check_settings(self) -> None:
        """Refuse overrides that name no stage or ask for GPUs the cluster lacks: once, before Ray executes."""
        if self._checked:
            return
        check_selectors(self.overrides, self.registry.stages)
        if any("num_gpus" in s.overridden for s in self.registry.stages) and not ray.is_initialized():
            ray.init()  # what Ray Data would do on the first execution (RAY_ADDRESS or a local Ray)
        _check_gpus(self.registry.stages)
        self._checked = True

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _stage_built(self, stage: Stage) -> None:
        self.sender.send(StageBuilt(stage))

    def _consumed(self, values: dict[str, dict[str, float]]) -> None:
        self.sender.send(ConsumerSamples(self.now(), values))

    def _materialized(self, method: str, site: str, built: int) -> None:
        self.sender.send(Materialized(self.now(), method, site, built))

    # -- executor callbacks ---------------------------------------------------------------------------

    def execution_started(self, executor: Any) -> None:
        with self._lock:
            first = not self._executions
            index, _ = self.registry.ledger.take("execution")
            self._executions[_ray_compat.dataset_id(executor)] = index
        if first and not self.remote:
            self._first_execution()
        ops = [self._operator(index, view) for view in _ray_compat.operators(executor)]
        self.tasks.register(index, _ray_compat.operator_objects(executor))
        self.sender.send(ExecutionStarted(index, self.now(), _ray_compat.dataset_id(executor), tuple(ops)))

    def _first_execution(self) -> None:
        """Ray is up by now: validate what needs the cluster, describe it, start sampling its nodes."""
        self.check_settings()
        self.sender.send(environment())
        self._node_thread = NodeSampling(self)
        self._node_thread.start()

    def _operator(self, index: int, view: dict[str, Any]) -> Operator:
        return Operator(
            uid=str(OpId.of(index, view["op_id"])),
            name=view["name"],
            stages=self.registry.owners(view["logical"]),
            compute=view["compute"],
            max_concurrency=view["max_concurrency"],
            num_cpus=view["num_cpus"],
            num_gpus=view["num_gpus"],
        )

    def execution_step(self, executor: Any) -> None:
        dataset = _ray_compat.dataset_id(executor)
        if self.winding_down.is_set():
            self._stopped_here(executor, dataset)
            return
        now = time.perf_counter()
        if now - self._last_sample.get(dataset, 0.0) < SAMPLE_INTERVAL_S:
            return
        self._last_sample[dataset] = now
        self._send_samples(executor)

    def _send_samples(self, executor: Any) -> None:
        index = self._executions.get(_ray_compat.dataset_id(executor), 0)
        values = {OpId.of(index, op_id): v for op_id, v in _ray_compat.snapshot(executor).items()}
        self.sender.send(OpSamples(self.now(), values))
        self._send_tasks()

    def _send_tasks(self) -> None:
        spans = self.tasks.drain()
        if spans:
            self.sender.send(Tasks(tuple(spans)))

    def execution_ended(self, executor: Any, error: Exception | None) -> None:
        index = self._executions.get(_ray_compat.dataset_id(executor), 0)
        self._send_samples(executor)
        stats = self._stats(executor, index)
        for event in self._failures(executor, stats, error):
            self.sender.send(EventSeen(event))
        # Ray's own cancel is fire-and-forget: a driver that leaves fast may be gone before it is sent
        self._ended(executor, index, error is None, stats, release=self.leaves_fast)

    def _ended(self, executor: Any, index: int, ok: bool | None, stats: list[OperatorStats], release: bool) -> None:
        """Send the execution's end, giving its share of the cluster back first where ``release``."""
        ended = self.now()
        if release:
            _ray_compat.release(executor)
        self.sender.send(ExecutionEnded(index, ended, ok, tuple(stats)))

    @staticmethod
    def _stats(executor: Any, index: int) -> list[OperatorStats]:
        """What each operator's finished tasks did, under the uids of execution ``index``."""
        return [
            dataclasses.replace(s, uid=str(OpId.of(index, s.uid))) for s in _ray_compat.final_stats(executor).values()
        ]

    def _stopped_here(self, executor: Any, dataset: str) -> None:
        """The recorder stops the run (a probe has seen enough): the execution ends here as far as the run is
        concerned, with what its finished tasks did, neither succeeded nor failed (``ok`` None); its share of
        the cluster is given back first, so that the next run on the same Ray gets all of it."""
        if dataset in self._wound_down:
            return
        self._wound_down.add(dataset)
        index = self._executions.get(dataset, 0)
        self._send_samples(executor)
        self._ended(executor, index, None, self._stats(executor, index), release=True)

    def _failures(self, executor: Any, stats: list[OperatorStats], error: Exception | None) -> list[Event]:
        events = []
        failed = [s for s in stats if s.tasks_failed]
        errored = _ray_compat.errored_blocks(executor)
        if errored:
            events.append(
                Event(
                    self.now(),
                    EventKind.ERRORED_BLOCKS,
                    f"{errored} block(s) raised and were dropped (max_errored_blocks)",
                )
            )
        if error is not None and not isinstance(error, PipetuneError):
            stage = self._stage_of(executor, OpId.parse(failed[0].uid) if failed else None, str(error))
            events.append(
                Event(
                    self.now(),
                    EventKind.UDF_ERROR,
                    describe_exception(error),
                    stage,
                    "".join(traceback.format_exception(error)),
                )
            )
        return events

    def _stage_of(self, executor: Any, op: OpId | None, error_text: str) -> int | None:
        """The stage whose UDF raised: of the failed operator's stages, the one the error names."""
        if op is None:
            return None
        view = next((v for v in _ray_compat.operators(executor) if v["op_id"] == op.ray_id), None)
        indices = self.registry.owners(view["logical"]) if view else ()
        owners = [s for s in self.registry.stages if s.index in indices]
        named = [s for s in owners if s.udf and f"{s.udf}" in error_text]
        if not owners:  # a process of the run that did not build the stages (a split's coordinator)
            return indices[-1] if indices else None
        return (named or owners)[-1].index

    def sink_written(self, rows: int) -> None:
        """A write reported its row count; it belongs to the execution that just ran it."""
        if self._executions:
            self.sender.send(SinkRows(max(self._executions.values()), rows))

    def stop(self) -> None:
        if self._node_thread is not None:
            self._node_thread.stop()


def _check_gpus(stages: list[Stage]) -> None:
    wanted = [s for s in stages if (s.knobs.num_gpus or 0) > 0 and "num_gpus" in s.overridden]
    if wanted and nodes.cluster_resources().get("GPU", 0) == 0:
        raise UsageError(
            f"stage {wanted[0].key} asks for num_gpus={wanted[0].knobs.num_gpus} but the cluster has no GPU",
            "drop the num_gpus override or attach to a cluster with GPUs (--address)",
        )


def environment() -> EnvironmentSeen:
    import platform
    import sys

    driver = ray.get_runtime_context().get_node_id()
    return EnvironmentSeen(
        ray_version=ray.__version__,
        python_version=sys.version.split()[0],
        platform=platform.platform(),
        hostname=nodes.hostname(),
        session_dir=_ray_compat.session_dir(),
        cluster_resources=nodes.cluster_resources(),
        nodes=tuple(nodes.cluster_nodes(driver)),
        raylet_logs={node: path for node, (_, path) in nodes.local_raylets().items()},
        raylet_pids={node: pid for node, (pid, _) in nodes.local_raylets().items()},
    )


class SinkLogHandler(logging.Handler):
    """Catches Ray Data's "Data sink ... finished. N rows" line: a fused write reports rows nowhere else."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(level=logging.INFO)
        self.probe = probe

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _ray_compat.SINK_PATTERN and len(record.args or ()) == 3:
            self.probe.sink_written(int(record.args[1]))  # type: ignore[index, arg-type]


def watch_sinks(probe: Probe) -> None:
    logger = logging.getLogger(_ray_compat.SINK_LOGGER)
    logger.addHandler(SinkLogHandler(probe))


class NodeSampling(threading.Thread):
    """Once a second, one sample per node of the cluster."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(name="pipetune-nodes", daemon=True)
        self.probe = probe
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            samplers = self._samplers()
            while not self._stop_event.wait(SAMPLE_INTERVAL_S):
                self._tick(samplers)
        except Exception as err:  # sampling is best effort: never take the user's pipeline down
            warning = Event(self.probe.now(), EventKind.WARNING, f"node sampling stopped: {describe_exception(err)}")
            self.probe.sender.send(EventSeen(warning))

    def _samplers(self) -> dict[str, Any]:
        local = nodes.local_raylets()
        samplers: dict[str, Any] = {}
        for node in nodes.alive_nodes():
            node_id = node["NodeID"]
            pid = local.get(node_id, (None, ""))[0]
            samplers[node_id] = nodes.HostSampler(pid) if pid else nodes.remote_sampler(node_id)
        return samplers

    def _tick(self, samplers: dict[str, Any]) -> None:
        t = self.probe.now()
        values: dict[str, dict[str, float]] = {}
        for node_id, sampler in samplers.items():
            if isinstance(sampler, nodes.HostSampler):
                values[f"node:{node_id}"] = sampler.sample()
            else:
                values[f"node:{node_id}"] = ray.get(sampler.sample.remote(), timeout=5)
        self.probe.sender.send(NodeSamples(t, values))
