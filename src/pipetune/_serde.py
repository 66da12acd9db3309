"""Plain-data conversion for the frozen dataclasses in ``model``.

One generic converter instead of a to_dict/from_dict pair per class: the type hints are the schema. Loading
ignores keys it does not know and fills missing ones with the field default, so a newer pipetune reads runs
saved by an older one (and the other way round, field by field).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """Dataclasses -> dicts, enums -> values, tuples -> lists; everything JSON can hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: Any) -> T:
    """Rebuild ``cls`` from what :func:`to_plain` produced."""
    return typing.cast(T, _convert(cls, data))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin is tuple:
        return _convert_tuple(tp, data)
    if origin in (dict, typing.Mapping) or tp is dict:
        args = get_args(tp) or (str, Any)
        return {k: _convert(args[1], v) for k, v in data.items()}
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def _convert_union(tp: Any, data: Any) -> Any:
    options = [a for a in get_args(tp) if a is not type(None)]
    for option in options:  # the first option whose shape fits wins
        if _fits(option, data):
            return _convert(option, data)
    return data


def _fits(tp: Any, data: Any) -> bool:
    origin = get_origin(tp) or tp
    if origin is tuple:
        return isinstance(data, (list, tuple))
    if dataclasses.is_dataclass(origin) or origin in (dict, typing.Mapping):
        return isinstance(data, dict)
    if origin is float:
        return isinstance(data, (int, float)) and not isinstance(data, bool)
    return isinstance(origin, type) and isinstance(data, origin)


def _convert_tuple(tp: Any, data: Any) -> tuple[Any, ...]:
    args = get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v) for v in data)
    return tuple(_convert(a, v) for a, v in zip(args, data, strict=False))


def _convert_dataclass(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {k: _convert(hints[k], v) for k, v in data.items() if k in known}
    return cls(**kwargs)
