"""The settings of a run: the knobs pipetune can set on a stage, each declared once, and the typed value that
carries a run's settings through record, tune and plan.

A :class:`Knob` says everything about one knob: how its value is parsed (from ``--set`` text or a config
value) and checked, the one-line hint when a value is refused, where it goes in the Ray call (:class:`Where`)
and how it is shown. Every knob list and value formatter in pipetune reads :data:`KNOBS`.

:class:`Settings` is the one form the code passes around. The ``--config`` dict and the ``--set`` strings are
edge forms only: :meth:`Settings.from_config` / :meth:`Settings.to_config` for files and stored payloads,
:meth:`Settings.from_args` / :meth:`Settings.to_args` for the command line and the run record. A value is
checked the moment it is parsed (a negative ``num_cpus`` or ``batch_size=0`` never reaches Ray); DataContext
fields are typed against DataContext itself (:meth:`Settings.typed`), and stage selectors against the stages
the script really builds (:func:`check_selectors`).
"""

from __future__ import annotations

import enum
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.errors import UsageError
from pipetune.model import Knobs, KnobValue, Stage

ContextValue = bool | int | float | str | None | list[object]  # a DataContext field's value, as JSON can hold it

DEFAULT = "default"  # a stage knob's value meaning "Ray Data's own default": the argument is removed from the call

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


class Where(enum.Enum):
    """Where a knob goes in the Ray Data call that built the stage (and in the patched source)."""

    RESOURCE = "resource"  # the call's own keyword if it has one, else a ``ray_remote_args`` entry
    KEYWORD = "keyword"  # a keyword argument of the call
    STRATEGY = "strategy"  # ``compute=`` a pool strategy where the call takes one, else the ``concurrency`` keyword
    CHAINED = "chained"  # pipetune's own: ``.repartition(n)`` chained onto the call's result


@dataclass(frozen=True)
class Knob:
    """One stage knob. ``parse`` raises ValueError or TypeError on a value it refuses; ``hint`` says what is valid."""

    name: str
    types: tuple[type, ...]  # what a value of the knob is, once parsed
    parse: Callable[[object], KnobValue]
    hint: str
    where: Where
    show: Callable[[object], str]

    def value(self, raw: object) -> KnobValue:
        """``raw`` (``--set`` text or a config value) typed and range-checked, or the one-line refusal.
        ``default`` is valid for every knob: Ray Data's own default, the argument removed."""
        if raw == DEFAULT:
            return DEFAULT
        try:
            return self.parse(raw)
        except (ValueError, TypeError):
            raise UsageError(f"{self.name}={raw!r} is not valid", self.hint) from None

    @property
    def keywords(self) -> tuple[str, ...]:
        """The keyword arguments that can carry the knob in a call (a pool size may be written ``compute=``)."""
        return ("compute", "concurrency") if self.where is Where.STRATEGY else (self.name,)

    @property
    def keyword(self) -> bool:
        """The patcher writes it as a keyword argument of the call; otherwise as a call chained onto it."""
        return self.where is not Where.CHAINED


def _non_negative(raw: object) -> float:
    value = float(raw)  # type: ignore[arg-type]
    if value < 0 or value != value:
        raise ValueError(raw)
    return value


def _positive_int(raw: object) -> int:
    value = int(str(raw))
    if value < 1:
        raise ValueError(raw)
    return value


def _non_negative_int(raw: object) -> int:
    value = int(str(raw))
    if value < 0:
        raise ValueError(raw)
    return value


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(raw)
    return text == "true"


def _memory(raw: object) -> float:
    value = float(raw) if isinstance(raw, (int, float)) else float(parse_size(str(raw)))
    if value <= 0:
        raise ValueError(raw)
    return value


def _concurrency(raw: object) -> int | tuple[int, ...]:
    """``4`` is a fixed pool; ``1-4`` or ``1,4[,2]`` an autoscaling one (min, max[, initial])."""
    parts = raw if isinstance(raw, (list, tuple)) else re.split(r"[-,]", str(raw))
    sizes = tuple(_positive_int(p) for p in parts)
    if len(sizes) == 1:
        return sizes[0]
    if len(sizes) > 3 or sizes[0] > sizes[1] or (len(sizes) == 3 and not sizes[0] <= sizes[2] <= sizes[1]):
        raise ValueError(raw)
    return sizes


def show_number(value: object) -> str:
    """``0.25`` -> ``0.25``, ``1.0`` -> ``1``: short where that loses nothing, exact where it would."""
    if not isinstance(value, float):
        return str(value)
    short = f"{value:g}"
    return short if math.isnan(value) or float(short) == value else repr(value)


def _show_bytes(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else show_number(value)


def _show_pool(value: object) -> str:
    return "-".join(map(str, value)) if isinstance(value, tuple) else str(value)


_ROWS = "batch_size is a whole number of rows, 1 or more"
_BLOCKS = "override_num_blocks is a whole number of blocks, 1 or more"
_SPLIT = "repartition is the number of blocks to split the stage's output into, 1 or more"
_PREFETCH = "prefetch_batches is a whole number of batches to fetch ahead of the loop, 0 or more"
_SHUFFLE = "local_shuffle_buffer_size is a whole number of rows, 1 or more"
_DROP = "drop_last is true or false"
_POOL = "concurrency is a pool size (4) or MIN-MAX[-INITIAL] for an autoscaling pool (1-4)"

KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("num_cpus", (float,), _non_negative,
             "num_cpus is a number of CPUs per task or actor, 0 or more (e.g. 0.25)", Where.RESOURCE, show_number),
        Knob("num_gpus", (float,), _non_negative,
             "num_gpus is a number of GPUs per task or actor, 0 or more (e.g. 1 or 0.5)", Where.RESOURCE, show_number),
        Knob("memory", (float,), _memory,
             "memory is the bytes a task or actor reserves, more than 0 (e.g. 2GiB)", Where.RESOURCE, _show_bytes),
        Knob("batch_size", (int,), _positive_int, _ROWS, Where.KEYWORD, str),
        Knob("concurrency", (int, tuple), _concurrency, _POOL, Where.STRATEGY, _show_pool),
        Knob("override_num_blocks", (int,), _positive_int, _BLOCKS, Where.KEYWORD, str),
        Knob("repartition", (int,), _positive_int, _SPLIT, Where.CHAINED, str),
        Knob("prefetch_batches", (int,), _non_negative_int, _PREFETCH, Where.KEYWORD, str),
        Knob("local_shuffle_buffer_size", (int,), _positive_int, _SHUFFLE, Where.KEYWORD, str),
        Knob("drop_last", (bool,), _boolean, _DROP, Where.KEYWORD, lambda v: str(v).lower()),
    )
}  # fmt: skip


# An iteration call's knobs that change what the script's loop receives (a training batch size is a model
# hyperparameter; the shuffle buffer decides the data's order; drop_last, which rows it sees), not how fast:
# tuning leaves them alone unless the user allows one, by these names.
ITERATOR_PROTECTED = ("batch_size", "local_shuffle_buffer_size", "drop_last")
ALLOWABLE = tuple(f"iterator.{name}" for name in ITERATOR_PROTECTED)


def knob(name: str) -> Knob:
    """The declaration of ``name``, or the one-line refusal listing the valid knobs."""
    if name not in KNOBS:
        raise UsageError(f"unknown knob '{name}'", f"valid knobs are {', '.join(KNOBS)}")
    return KNOBS[name]


def show(name: str, value: object) -> str:
    """A value as the user writes it after ``--set STAGE.NAME=``; a name that is no knob is shown plainly."""
    return KNOBS[name].show(value) if name in KNOBS else show_number(value)


def change(name: str, current: object, proposed: object) -> str:
    """``batch_size 16 -> 32``: one knob's (or ``ctx.FIELD``'s) change as reports show it; None is ``default``."""
    return f"{name} {_or_default(name, current)} -> {_or_default(name, proposed)}"


def _or_default(name: str, value: object) -> str:
    return "default" if value is None else show(name, value)


@dataclass(frozen=True)
class StageSetting:
    """One knob of the stages ``selector`` names: an index, a stage key, a UDF name or a method name."""

    selector: str
    knob: str
    value: KnobValue

    def matches(self, stage: Stage) -> bool:
        """Whether ``selector`` names ``stage`` (it may name several: :func:`check_selectors` refuses that)."""
        return self.selector in (str(stage.index), stage.key, stage.udf, stage.method)

    @property
    def arg(self) -> str:
        """The ``--set`` argument: ``1.batch_size=512``."""
        return f"{self.selector}.{self.knob}={show(self.knob, self.value)}"


@dataclass(frozen=True)
class ContextSetting:
    """One DataContext field. Raw ``--set`` text until :meth:`Settings.typed` types it against DataContext."""

    field: str
    value: ContextValue

    @property
    def arg(self) -> str:
        """The ``--set`` argument: ``ctx.target_max_block_size=67108864``."""
        return f"ctx.{self.field}={self.value}"


Setting = StageSetting | ContextSetting


@dataclass(frozen=True)
class Settings:
    """A run's settings, in the order they were given: a later setting of the same knob or field wins."""

    stages: tuple[StageSetting, ...] = ()
    context: tuple[ContextSetting, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.stages or self.context)

    @staticmethod
    def of(items: Iterable[Setting]) -> Settings:
        """Stage and context settings from one sequence, each kept in its order."""
        listed = list(items)
        stages = tuple(i for i in listed if isinstance(i, StageSetting))
        return Settings(stages, tuple(i for i in listed if isinstance(i, ContextSetting)))

    def for_stage(self, stage: Stage) -> dict[str, KnobValue]:
        """The knob values these settings put on ``stage``; later settings win over earlier ones."""
        return {o.knob: o.value for o in self.stages if o.matches(stage)}

    def knobs_of(self, stage: Stage) -> Knobs:
        """``stage``'s knobs with these settings applied (``default`` is None there: Ray Data's default)."""
        return with_knobs(stage.knobs, self.for_stage(stage))

    def merged(self, other: Settings) -> Settings:
        """``other`` applied on top of these settings (all kept: see :meth:`collapsed`)."""
        return Settings(self.stages + other.stages, self.context + other.context)

    def collapsed(self) -> Settings:
        """One setting per (stage selector, knob) and per field, the last given, where it was first given."""
        stages = {(o.selector, o.knob): o for o in self.stages}
        context = {o.field: o for o in self.context}
        return Settings(tuple(stages.values()), tuple(context.values()))  # a key stays where it was first set

    def key(self) -> str:
        """A canonical form: the same configuration gives the same key however it was written (a chained knob
        at ``default`` is no chained call, the same as not set)."""
        values = {(o.selector, o.knob): o.value for o in self.stages}
        stages = sorted((k, v) for k, v in values.items() if not (v == DEFAULT and KNOBS[k[1]].where is Where.CHAINED))
        context = sorted({o.field: o.value for o in self.context}.items())
        return repr((stages, context))

    def to_args(self) -> tuple[str, ...]:
        """The ``--set`` arguments, in order: for the run record, the stored study and the user."""
        return (*(o.arg for o in self.stages), *(o.arg for o in self.context))

    def to_config(self) -> dict[str, Any]:
        """The ``--config`` form: ``{"stages": {selector: {knob: value}}, "context": {field: value}}``."""
        stages: dict[str, dict[str, Any]] = {}
        for o in self.stages:
            stages.setdefault(o.selector, {})[o.knob] = list(o.value) if isinstance(o.value, tuple) else o.value
        return {"stages": stages, "context": {o.field: o.value for o in self.context}}

    @staticmethod
    def from_config(data: Mapping[str, Any]) -> Settings:
        """The ``--config`` form read back, every value checked."""
        stages = tuple(
            StageSetting(str(selector), name, knob(name).value(value))
            for selector, knobs in _table(data, "stages").items()
            for name, value in _table({"k": knobs}, "k").items()
        )
        return Settings(stages, tuple(ContextSetting(k, v) for k, v in _table(data, "context").items()))

    @staticmethod
    def from_args(texts: Iterable[str]) -> Settings:
        """``--set`` arguments, every value checked."""
        return Settings.of(parse_assignment(text) for text in texts)

    def typed(self, fields: Mapping[str, object]) -> Settings:
        """Context fields checked against DataContext's (name -> default value), each converted to its type."""
        return Settings(self.stages, tuple(ContextSetting(o.field, _context_value(o, fields)) for o in self.context))


def with_knobs(knobs: Knobs, changes: Mapping[str, KnobValue]) -> Knobs:
    """``knobs`` with ``changes`` applied; ``default`` becomes None, which is how :class:`Knobs` says "Ray's"."""
    plain = {k: None if v == DEFAULT else v for k, v in changes.items()}
    return knobs.replace(**plain) if plain else knobs


def parse_assignment(text: str) -> Setting:
    """One ``--set`` argument: ``STAGE.KNOB=VALUE`` (checked) or ``ctx.FIELD=VALUE`` (raw until typed)."""
    target, sep, raw = text.partition("=")
    selector, dot, name = target.strip().rpartition(".")
    if not sep or not dot or not selector or not name:
        raise UsageError(
            f"--set '{text}' is not STAGE.KNOB=VALUE or ctx.FIELD=VALUE",
            f"STAGE is an index, a stage key or a UDF name; KNOB is one of {', '.join(KNOBS)}",
        )
    if selector == "ctx":
        return ContextSetting(name, raw.strip())
    return StageSetting(selector, name, knob(name).value(raw.strip()))


def parse_config(path: Path) -> Settings:
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
    return Settings.from_config(data)


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise UsageError(f"'{name}' in a config must be a table of names to values")
    return table


def _context_value(o: ContextSetting, fields: Mapping[str, object]) -> ContextValue:
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


def _coerce(raw: ContextValue, default: object) -> ContextValue:
    if not isinstance(raw, str):
        return raw
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int) or (default is None and _SIZE.match(raw)):
        return parse_size(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, str):
        return raw
    raise TypeError(f"DataContext field of type {type(default).__name__} cannot be set from the command line")


def check_selectors(settings: Settings, stages: list[Stage]) -> None:
    """Every stage selector must name exactly one stage the script built."""
    for o in settings.stages:
        hits = [s for s in stages if o.matches(s)]
        if len(hits) == 1 or (hits and o.selector in (str(hits[0].index), hits[0].key)):
            continue
        valid = "; ".join(f"{s.index} ({s.key})" for s in stages) or "none: the script built no stage yet"
        if not hits:
            raise UsageError(f"no stage '{o.selector}' in this pipeline", f"valid stages are {valid}")
        raise UsageError(f"stage '{o.selector}' is ambiguous ({len(hits)} stages)", f"use an index: {valid}")
