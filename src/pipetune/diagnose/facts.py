"""The measured facts every rule reads, computed once per run. Pure: a Run in, plain numbers out."""

from __future__ import annotations

import enum
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from pipetune.diagnose.bottleneck import Bottleneck, OperatorRate, find_bottleneck, main_execution, operator_rates
from pipetune.diagnose.consumers import Consumption, consumption
from pipetune.diagnose.fusion import lead_stage
from pipetune.diagnose.thresholds import COMPUTING_CORES, WAITING_CORES
from pipetune.metrics import declared
from pipetune.model import Execution, Operator, OperatorStats, Run, Sample, Stage, StageKind, TaskSpan


class OpType(enum.StrEnum):
    """The guide's operation types, which decide a stage's recommended resources."""

    DATA_LOADING = "data loading"
    FILTERING = "filtering"
    CPU_PREPROCESSING = "CPU preprocessing"
    CPU_INFERENCE = "CPU inference"
    GPU_INFERENCE = "GPU inference"
    WRITING = "writing"
    RESHUFFLE = "all-to-all"
    CONSUMING = "the script's loop"


class Hardware(enum.StrEnum):
    GPU = "GPU cluster"
    CPU = "CPU cluster"
    MIXED = "mixed cluster"


@dataclass(frozen=True)
class BatchCost:
    """A stage's time per batch and per row, fitted on runs at two or more batch sizes (``capacity``)."""

    fixed_s: float
    per_row_s: float
    batches: tuple[int, ...]  # the batch sizes it was measured at


@dataclass(frozen=True)
class Facts:
    run: Run
    execution: Execution | None
    rates: dict[str, OperatorRate] = field(default_factory=dict)
    bottleneck: Bottleneck | None = None
    batch_costs: Mapping[int, BatchCost] = field(default_factory=dict)  # by stage; measured over several runs

    @staticmethod
    def of(run: Run, batch_costs: Mapping[int, BatchCost] | None = None) -> Facts:
        execution = main_execution(run)
        rates = {r.uid: r for r in operator_rates(run, execution)} if execution else {}
        return Facts(run, execution, rates, find_bottleneck(run), batch_costs or {})

    # -- the cluster ------------------------------------------------------------------------------------

    @property
    def cpus(self) -> float:
        return self.run.env.cluster_resources.get("CPU", 0.0)

    @property
    def gpus(self) -> float:
        return self.run.env.cluster_resources.get("GPU", 0.0)

    @property
    def hardware(self) -> Hardware:
        with_gpu = [n for n in self.run.env.nodes if n.resources.get("GPU", 0) > 0]
        if not with_gpu and self.gpus == 0:
            return Hardware.CPU
        return Hardware.GPU if len(with_gpu) == len(self.run.env.nodes) else Hardware.MIXED

    # -- node utilisation over the main execution -------------------------------------------------------

    def during(self, samples: tuple[Sample, ...]) -> list[Sample]:
        """The samples taken while the main execution ran."""
        if self.execution is None:
            return []
        end = self.execution.ended_t or float("inf")
        return [s for s in samples if self.execution.started_t <= s.t <= end]

    def node_mean(self, metric: str) -> float | None:
        metric = declared(metric)
        values = [s.values[metric] for s in self.during(self.run.node_samples) if metric in s.values]
        return statistics.fmean(values) if values else None

    @cached_property
    def cpu_pct(self) -> float | None:
        """Mean CPU use of the nodes while the pipeline ran: the dashboard's cluster CPU figure."""
        return self.node_mean("cpu_pct")

    @cached_property
    def gpu_pct(self) -> float | None:
        return self.node_mean("gpu_util_pct") if self.gpus else None

    @cached_property
    def gpu_cv(self) -> float | None:
        values = [s.values["gpu_util_pct"] for s in self.during(self.run.node_samples) if "gpu_util_pct" in s.values]
        if len(values) < 3 or statistics.fmean(values) == 0:
            return None
        return statistics.pstdev(values) / statistics.fmean(values)

    # -- stages and their operators ---------------------------------------------------------------------

    @cached_property
    def operators(self) -> list[Operator]:
        """The main execution's operators, each once (a fused chain is listed once per stage it runs)."""
        return list({o.uid: o for o in self.execution.operators}.values()) if self.execution else []

    def spans_of(self, op: Operator) -> list[TaskSpan]:
        """The tasks of ``op`` the run kept, as the driver saw them."""
        return self._spans.get(op.uid, [])

    @cached_property
    def _spans(self) -> dict[str, list[TaskSpan]]:
        by_op: dict[str, list[TaskSpan]] = {}
        for t in self.run.tasks:
            by_op.setdefault(t.uid, []).append(t)
        return by_op

    def operator_of(self, stage: int) -> Operator | None:
        """The operator that ran the stage in the main execution (else in any execution)."""
        ops = self.run.operators_of(stage)
        main = [o for o in ops if self.execution and o.uid.startswith(f"{self.execution.index}/")]
        chosen = main or ops
        return chosen[-1] if chosen else None

    def stage_stats(self, stage: int) -> OperatorStats | None:
        """What the operator that ran the stage did (shared by every stage fused into it)."""
        op = self.operator_of(stage)
        return self.run.stats_of(op.uid) if op else None

    def rate_of(self, stage: int) -> OperatorRate | None:
        op = self.operator_of(stage)
        return self.rates.get(op.uid) if op else None

    def stage_type(self, stage: Stage) -> OpType:
        """The guide's operation type, from what the stage is and what it measurably costs."""
        rate = self.rate_of(stage.index)
        op = self.operator_of(stage.index)
        leads = op is not None and self.lead_of(op) == stage.index  # fused stages share one measurement
        waiting = leads and rate is not None and rate.cores_per_task < WAITING_CORES.value
        if stage.kind is StageKind.READ:
            return OpType.DATA_LOADING
        if stage.kind is StageKind.WRITE:
            return OpType.WRITING
        if stage.kind is StageKind.ALL_TO_ALL:
            return OpType.RESHUFFLE
        if stage.kind is StageKind.CONSUME:
            return OpType.CONSUMING
        if (stage.knobs.num_gpus or 0) > 0:
            return OpType.GPU_INFERENCE
        if waiting:
            return OpType.DATA_LOADING  # a map that mostly waits (a download) is I/O, whatever its method
        if stage.kind is StageKind.FILTER:
            return OpType.FILTERING
        heavy = leads and rate is not None and rate.cores_per_task >= COMPUTING_CORES.value
        return OpType.CPU_INFERENCE if stage.kind is StageKind.ACTOR and heavy else OpType.CPU_PREPROCESSING

    def lead_of(self, op: Operator) -> int | None:
        return lead_stage(self.run, op)

    def bottleneck_stage(self) -> Stage | None:
        return self.stage_of(self.bottleneck.rate) if self.bottleneck is not None else None

    def stage_of(self, rate: OperatorRate | None) -> Stage | None:
        """The stage that carries a measured operator's figures (its lead stage)."""
        op = next((o for _, o in self.run.operators() if rate is not None and o.uid == rate.uid), None)
        lead = self.lead_of(op) if op else None
        return self.run.stage(lead) if lead is not None else None

    # -- the script's loops -----------------------------------------------------------------------------

    @cached_property
    def consumers(self) -> list[Consumption]:
        """Every loop of the script over the data (read once for all the rules that look at them)."""
        return consumption(self.run)

    def wall_share(self, stage: int) -> float:
        """How much of the run the stage's operator was active: the stake of a finding on it."""
        stats = self.stage_stats(stage)
        if not stats or not self.run.wall_s:
            return 0.0
        return min(stats.wall_s / self.run.wall_s, 1.0)


def bottleneck_label(run: Run) -> str:
    """The short name the run history shows in its bottleneck column."""
    facts = Facts.of(run)
    stage = facts.bottleneck_stage()
    if stage is not None:
        return stage.key
    return facts.bottleneck.rate.name if facts.bottleneck else ""
