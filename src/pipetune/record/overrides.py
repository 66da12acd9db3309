"""``--set STAGE.KNOB=VALUE`` and ``--set ctx.FIELD=VALUE``: parsing and validation, pure.

A value is checked the moment it is parsed (a negative ``num_cpus`` or ``batch_size=0`` never reaches Ray);
stage selectors are checked against the stages the script really builds, before its first execution.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.errors import UsageError
from pipetune.model import KnobValue, Stage

STAGE_KNOBS = ("num_cpus", "num_gpus", "memory", "batch_size", "concurrency", "override_num_blocks", "repartition")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """``64MiB`` -> 67108864, ``2GB`` -> 2000000000, ``1024`` -> 1024."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"'{text}' is not a size", "write bytes as a number with an optional unit, e.g. 64MiB")
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    base = 1024 ** "kmgt".index(unit[0]) * 1024 if unit.endswith("i") else _UNITS[unit[:1]]
    return int(number * base)


@dataclass(frozen=True)
class StageOverride:
    selector: str  # an index, a stage key, a UDF name or a method name
    knob: str
    value: KnobValue

    def matches(self, stage: Stage) -> bool:
        return self.selector in (str(stage.index), stage.key, stage.udf, stage.method)


@dataclass(frozen=True)
class ContextOverride:
    field: str
    value: Any


@dataclass(frozen=True)
class Overrides:
    stages: tuple[StageOverride, ...] = ()
    context: tuple[ContextOverride, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.stages or self.context)

    def for_stage(self, stage: Stage) -> dict[str, KnobValue]:
        """The knob values this run sets on ``stage``; later settings win over earlier ones."""
        return {o.knob: o.value for o in self.stages if o.matches(stage)}

    def to_config(self) -> dict[str, Any]:
        """The ``--config`` file form: ``{"stages": {selector: {knob: value}}, "context": {field: value}}``."""
        stages: dict[str, dict[str, Any]] = {}
        for o in self.stages:
            stages.setdefault(o.selector, {})[o.knob] = list(o.value) if isinstance(o.value, tuple) else o.value
        return {"stages": stages, "context": {o.field: o.value for o in self.context}}

    def describe(self) -> tuple[str, ...]:
        """The overrides as ``--set`` arguments, for the run record."""
        stage_sets = [f"{o.selector}.{o.knob}={_show(o.value)}" for o in self.stages]
        return (*stage_sets, *(f"ctx.{o.field}={o.value}" for o in self.context))

    def merged(self, other: Overrides) -> Overrides:
        return Overrides(self.stages + other.stages, self.context + other.context)


def _show(value: KnobValue) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def parse_assignment(text: str) -> StageOverride | ContextOverride:
    """One ``--set`` argument."""
    target, sep, raw = text.partition("=")
    selector, dot, name = target.strip().rpartition(".")
    if not sep or not dot or not selector or not name:
        raise UsageError(
            f"--set '{text}' is not STAGE.KNOB=VALUE or ctx.FIELD=VALUE",
            f"STAGE is an index, a stage key or a UDF name; KNOB is one of {', '.join(STAGE_KNOBS)}",
        )
    if selector == "ctx":
        return ContextOverride(name, raw.strip())  # typed later, against DataContext's own fields
    return StageOverride(selector, name, parse_knob(name, raw.strip()))


def parse_knob(knob: str, raw: str | int | float | list[int]) -> KnobValue:
    """A knob value, typed and range-checked."""
    if knob not in STAGE_KNOBS:
        raise UsageError(f"unknown knob '{knob}'", f"valid knobs are {', '.join(STAGE_KNOBS)}")
    try:
        return _KNOB_PARSERS[knob](raw)
    except (ValueError, TypeError):
        raise UsageError(f"{knob}={raw!r} is not valid", _KNOB_HELP[knob]) from None


def _non_negative(raw: Any) -> float:
    value = float(raw)
    if value < 0 or value != value:
        raise ValueError(raw)
    return value


def _positive_int(raw: Any) -> int:
    value = int(str(raw))
    if value < 1:
        raise ValueError(raw)
    return value


def _memory(raw: Any) -> float:
    value = float(raw) if isinstance(raw, (int, float)) else float(parse_size(str(raw)))
    if value <= 0:
        raise ValueError(raw)
    return value


def _concurrency(raw: Any) -> int | tuple[int, ...]:
    """``4`` is a fixed pool; ``1-4`` or ``1,4[,2]`` an autoscaling one (min, max[, initial])."""
    parts = raw if isinstance(raw, list) else re.split(r"[-,]", str(raw))
    sizes = tuple(_positive_int(p) for p in parts)
    if len(sizes) == 1:
        return sizes[0]
    if len(sizes) > 3 or sizes[0] > sizes[1] or (len(sizes) == 3 and not sizes[0] <= sizes[2] <= sizes[1]):
        raise ValueError(raw)
    return sizes


_KNOB_PARSERS = {
    "num_cpus": _non_negative,
    "num_gpus": _non_negative,
    "memory": _memory,
    "batch_size": _positive_int,
    "concurrency": _concurrency,
    "override_num_blocks": _positive_int,
    "repartition": _positive_int,
}

_KNOB_HELP = {
    "num_cpus": "num_cpus is a number of CPUs per task or actor, 0 or more (e.g. 0.25)",
    "num_gpus": "num_gpus is a number of GPUs per task or actor, 0 or more (e.g. 1 or 0.5)",
    "memory": "memory is the bytes a task or actor reserves, more than 0 (e.g. 2GiB)",
    "batch_size": "batch_size is a whole number of rows, 1 or more",
    "concurrency": "concurrency is a pool size (4) or MIN-MAX[-INITIAL] for an autoscaling pool (1-4)",
    "override_num_blocks": "override_num_blocks is a whole number of blocks, 1 or more",
    "repartition": "repartition is the number of blocks to split the stage's output into, 1 or more",
}


def parse_config(path: Path) -> Overrides:
    """A ``--config`` file: JSON or TOML with ``stages`` and ``context`` tables (``tune`` writes this form)."""
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist", "pass the path of a JSON or TOML file") from None
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"config file {path} cannot be parsed ({err})", "fix the file or regenerate it") from None
    if not isinstance(data, dict) or set(data) - {"stages", "context"}:
        raise UsageError(f"config file {path} must hold only 'stages' and 'context' tables")
    return from_mapping(data)


def from_mapping(data: Mapping[str, Any]) -> Overrides:
    stages = tuple(
        StageOverride(str(selector), knob, parse_knob(knob, value))
        for selector, knobs in _table(data, "stages").items()
        for knob, value in _table({"k": knobs}, "k").items()
    )
    context = tuple(ContextOverride(k, v) for k, v in _table(data, "context").items())
    return Overrides(stages, context)


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise UsageError(f"'{name}' in a config must be a table of names to values")
    return table


def type_context(overrides: Iterable[ContextOverride], fields: Mapping[str, Any]) -> tuple[ContextOverride, ...]:
    """Check ``ctx.FIELD`` names against DataContext and convert each value to its field's type."""
    return tuple(ContextOverride(o.field, _context_value(o, fields)) for o in overrides)


def _context_value(o: ContextOverride, fields: Mapping[str, Any]) -> Any:
    if o.field not in fields:
        close = [f for f in fields if o.field.split("_")[0] in f][:8]
        hint = f"did you mean one of {', '.join(close)}?" if close else "see ray.data.DataContext for its fields"
        raise UsageError(f"DataContext has no field '{o.field}'", hint)
    default = fields[o.field]
    try:
        return _coerce(o.value, default)
    except (ValueError, TypeError):
        kind = type(default).__name__
        raise UsageError(f"ctx.{o.field}={o.value!r} is not valid", f"it takes a {kind}") from None


def _coerce(raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int) or (default is None and _SIZE.match(raw)):
        value = parse_size(raw)
        if value < 0:
            raise ValueError(raw)
        return value
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, str):
        return raw
    raise TypeError(f"DataContext field of type {type(default).__name__} cannot be set from the command line")


def check_selectors(overrides: Overrides, stages: list[Stage]) -> None:
    """Every stage selector must name exactly one stage the script built."""
    for o in overrides.stages:
        hits = [s for s in stages if o.matches(s)]
        if len(hits) == 1 or (hits and o.selector in (str(hits[0].index), hits[0].key)):
            continue
        valid = "; ".join(f"{s.index} ({s.key})" for s in stages) or "none: the script built no stage yet"
        if not hits:
            raise UsageError(f"no stage '{o.selector}' in this pipeline", f"valid stages are {valid}")
        raise UsageError(f"stage '{o.selector}' is ambiguous ({len(hits)} stages)", f"use an index: {valid}")
