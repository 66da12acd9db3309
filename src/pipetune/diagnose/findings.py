"""What a diagnosis says: findings with their evidence, one fix each, and how to check the fix worked."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pipetune.settings import change, show


class Level(enum.IntEnum):
    """The guide's hierarchy: try num_cpus-level changes first, then batch_size, then DataContext."""

    PARALLELISM = 1  # num_cpus, concurrency, blocks: most problems end here
    BATCH = 2  # batch_size: memory and per-batch overhead
    CONTEXT = 3  # DataContext settings: the rare, advanced cases


@dataclass(frozen=True)
class Evidence:
    """A measured number, and the threshold it crossed (with where the threshold comes from)."""

    metric: str
    value: float
    unit: str = ""
    threshold: float | None = None
    source: str = ""

    def describe(self) -> str:
        shown = f"{self.value:,.3g}{self.unit}"
        if self.threshold is None:
            return f"{self.metric} {shown}"
        return f"{self.metric} {shown} (threshold {self.threshold:,.3g}{self.unit})"


@dataclass(frozen=True)
class Fix:
    """One change: a knob of one stage (or ``ctx.FIELD``), from its current value to the proposed one, with
    the changes of the same stage that only make sense together with it (``also``: a pool size and the smaller
    reservation that lets it fit)."""

    knob: str
    current: Any
    proposed: Any
    level: Level
    stage: int | None = None
    also: tuple[Fix, ...] = ()

    def describe(self) -> str:
        where = f"stage {self.stage} " if self.stage is not None else ""
        parts = [change(self.knob, self.current, self.proposed)]
        parts += [("" if f.stage == self.stage else f"stage {f.stage} ") + change(f.knob, f.current, f.proposed)
                  for f in self.also]  # fmt: skip
        return where + ", ".join(parts)

    @property
    def settings(self) -> tuple[str, ...]:
        """Every ``--set`` argument the fix needs, in order (the first is :attr:`setting`)."""
        return tuple(s for f in (self, *self.also) if (s := f.setting) is not None)

    @property
    def setting(self) -> str | None:
        """The ``--set`` argument that applies it, when it is a knob pipetune can set."""
        if self.knob.startswith("ctx."):
            return f"{self.knob}={self.proposed}"
        if self.stage is None or self.knob.startswith("remove"):
            return None
        return f"{self.stage}.{self.knob}={show(self.knob, self.proposed)}"


@dataclass(frozen=True)
class Criterion:
    """The guide's verification, as a check on a later run: ``metric op value``."""

    metric: str
    op: str  # ">", "<", "<=", ">=", "=="
    value: float
    text: str  # as the guide puts it, e.g. "CPU utilisation above 80%"
    stage: int | None = None

    def holds(self, measured: float | None) -> bool | None:
        if measured is None:
            return None
        return bool(_OPS[self.op](measured, self.value))


_OPS = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Finding:
    rule: str
    symptom: str
    stage: int | None
    stage_key: str
    udf: str
    evidence: tuple[Evidence, ...]
    cause: str
    fix: Fix | None
    verify: Criterion
    confidence: float  # 0..1: how often this rule's fix is the right one when it fires
    severity: float = 1.0  # how much it costs: the share of the pipeline's time at stake, 0..1
    gain: float = 1.0  # the run's predicted speed-up from the fix (``capacity``); 1.0: none, or cannot say
