"""Turns the script's Ray Data calls into stages, and applies the run's settings (``--set``, ``--config``) to them.

Only public API is wrapped (``ray.data.read_*`` / ``from_*`` / ``range*`` and the ``Dataset`` methods), so Ray
still validates every argument itself. Calls made from inside Ray (``write_parquet`` calling
``write_datasink``, ``add_column`` calling ``map_batches``) are passed straight through: they are not stages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import ray
import ray.data
from ray.data import ActorPoolStrategy, DataIterator, Dataset, TaskPoolStrategy

from pipetune.errors import UsageError
from pipetune.model import MATERIALIZING, Knobs, KnobValue, Stage, StageKind
from pipetune.record import _ray_compat, in_task, remote
from pipetune.record.consume import ConsumerLog, source_of

if TYPE_CHECKING:
    from pipetune.record.files import Journal
from pipetune.settings import DEFAULT, KNOBS, Knob, Settings, Where, with_knobs

_RAY_DIR = os.path.dirname(ray.__file__) + os.sep
_PIPETUNE_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep

_MAP_METHODS = {
    "map": StageKind.TRANSFORM,
    "map_batches": StageKind.TRANSFORM,
    "flat_map": StageKind.TRANSFORM,
    "filter": StageKind.FILTER,
    "add_column": StageKind.TRANSFORM,
    "with_column": StageKind.TRANSFORM,
    "select_columns": StageKind.TRANSFORM,
    "drop_columns": StageKind.TRANSFORM,
    "rename_columns": StageKind.TRANSFORM,
    "limit": StageKind.TRANSFORM,
}
# Iteration calls: each is a consumer stage (the user's loop); on a Dataset and on a DataIterator (a split's)
_ITERATING = ("iter_batches", "iter_rows", "iter_torch_batches", "iter_tf_batches", "iter_jax_batches")
_SPLITTING = ("streaming_split", "split")  # start an execution from the user's code, but consume nothing here
_ALL_TO_ALL = ("repartition", "random_shuffle", "randomize_block_order", "sort", "union", "zip", "join")
_TAG = "_pipetune_stage"  # on a logical operator: the stage that built it (travels with a pickled plan)


def _source_names() -> list[str]:
    return [n for n in dir(ray.data) if n.startswith(("read_", "from_", "range")) and n != "read_api"]


def _write_names() -> list[str]:
    return [n for n in dir(Dataset) if n.startswith("write_")]


class StageRegistry:
    """The stages built so far, and which logical operators belong to which stage."""

    def __init__(
        self,
        overrides: Settings,
        on_stage: Callable[[Stage], None],
        on_materialize: Callable[[str, str, int], None] = lambda method, site, built: None,
        sandbox: str | None = None,
        sample_rows: int | None = None,
    ) -> None:
        self.overrides = overrides
        self.sample_rows = sample_rows  # set: each source yields only this many rows (a slice of real input)
        self.sandbox = sandbox  # set: every write goes below this directory instead of the script's path
        self.stages: list[Stage] = []
        self._on_stage = on_stage
        self.on_materialize = on_materialize
        self.ledger = remote.ledger()  # stage indices, unique across the run's processes
        self._owner: dict[int, int] = {}  # id(logical op) -> stage index
        self._keep: list[Any] = []  # keeps tagged ops alive so their ids are never reused
        self._active: list[int] = []
        self.before_execution: Callable[[], None] = lambda: None  # runs on the user's thread, before Ray executes
        self.files: Journal | None = None  # while tuning: write targets become the outputs it restores
        self.consumers = ConsumerLog(lambda values: None)  # the probe gives it a way to send
        self._consumer_sites: dict[str, Stage] = {}
        self._split_from: dict[int, int] = {}  # id(split iterator) -> the stage whose dataset was split
        self._lock = threading.Lock()

    def add(self, stage: Stage, announce: bool = True) -> None:
        """Keep ``stage``; ``announce`` it unless another process of the run did (a loop two actors run)."""
        self.stages.append(stage)
        if announce:
            self._on_stage(stage)

    def built(self) -> int:
        """How many stages the run had when this process last built one."""
        return max((s.index for s in self.stages), default=-1) + 1

    def consumer_stage(self, method: str, bound: inspect.BoundArguments, site: str) -> Stage:
        """The stage of an iteration call: one per call site, so a loop that calls ``iter_batches`` once per
        epoch, or a function two split consumers share, is one stage. The run's settings apply at every call."""
        with self._lock:  # two consumer threads (the splits of a streaming_split) reach one site at once
            known = self._consumer_sites.get(site)
            if known is None:
                stage = _new_stage(self, method, StageKind.CONSUME, bound, site, key=site)
                self._consumer_sites[site] = stage
                return stage
        _apply_changes(bound, known, self.overrides.for_stage(known))
        return known

    def inputs_of(self, bound: inspect.BoundArguments) -> tuple[int, ...]:
        """The stages that built the datasets (or split iterators) a call reads."""
        found: list[int] = []
        for value in bound.arguments.values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                index = self.produced_by(item)
                if index is not None:
                    found.append(index)
        return tuple(dict.fromkeys(found))

    def produced_by(self, item: Any) -> int | None:
        if isinstance(item, DataIterator):
            return self._split_from.get(id(item))
        if not isinstance(item, Dataset):
            return None
        claims = (self._claim(op) for op in _ray_compat.logical_ops(item))
        return next((c for c in claims if c is not None), None)

    def _claim(self, op: Any) -> int | None:
        """The stage that built a logical operator: known here, or written on it by the driver."""
        claim = self._owner.get(id(op), getattr(op, _TAG, None))
        return int(claim) if isinstance(claim, int) else None

    def split(self, dataset: Any, iterators: Any) -> None:
        """The iterators a streaming_split returned read the dataset it split."""
        source = self.produced_by(dataset)
        if source is None or not isinstance(iterators, list):
            return
        for it in iterators:
            self.adopt_split(it, source)

    def adopt_split(self, iterator: Any, source: int | None) -> None:
        """A split iterator that reached this process reads the dataset stage ``source`` built."""
        if source is not None:
            self._split_from[id(iterator)] = source
            self._keep.append(iterator)

    def tag(self, stage: Stage, result: Any) -> None:
        """Claim the logical operators a call created (those no earlier stage claimed). The claim is also
        written on the operator, so a process that unpickles the plan (a split's coordinator) reads it."""
        if not isinstance(result, Dataset):
            return
        for op in _ray_compat.logical_ops(result):
            if id(op) not in self._owner:
                self._owner[id(op)] = stage.index
                self._keep.append(op)
                with contextlib.suppress(AttributeError):  # a frozen dataclass: set as its __init__ would
                    object.__setattr__(op, _TAG, remote.tag_for(stage.index))

    @contextlib.contextmanager
    def active(self, stage: Stage) -> Iterator[None]:
        """Operators planned during the call (a write executes inside it) belong to ``stage``."""
        self._active.append(stage.index)
        try:
            yield
        finally:
            self._active.pop()

    def owners(self, logical_ops: list[Any]) -> tuple[int, ...]:
        claims = [self._claim(op) for op in logical_ops]
        found = {c for c in claims if c is not None}
        untagged = any(c is None for c in claims)
        if untagged and self._active:
            found.add(self._active[-1])
        return tuple(sorted(found))


def install(registry: StageRegistry) -> None:
    """Wrap every public Ray Data entry point the script may call."""
    for name in _source_names():
        wrapped = _wrap(getattr(ray.data, name), name, registry, StageKind.READ)
        setattr(ray.data, name, wrapped)
        if hasattr(ray.data.read_api, name):
            setattr(ray.data.read_api, name, wrapped)
    for name, kind in _MAP_METHODS.items():
        setattr(Dataset, name, _wrap(getattr(Dataset, name), name, registry, kind))
    for name in _ALL_TO_ALL:
        setattr(Dataset, name, _wrap(getattr(Dataset, name), name, registry, StageKind.ALL_TO_ALL))
    for name in _write_names():
        setattr(Dataset, name, _wrap(getattr(Dataset, name), name, registry, StageKind.WRITE))
    for name in MATERIALIZING:
        setattr(Dataset, name, _wrap_materializing(getattr(Dataset, name), name, registry))
    install_receiving(registry)
    remote.adopt(registry)


def install_receiving(registry: StageRegistry) -> None:
    """What a process that receives the script's datasets or splits needs (the driver too): its loops are
    consumers, the splits it makes remember their dataset, and a split it sends on carries that along."""
    for name in _SPLITTING:
        setattr(Dataset, name, _splitting(getattr(Dataset, name), registry))
    install_consumers(registry)
    _ray_compat.install_split_pickling(functools.partial(_pickled_split, registry))


def install_consumers(registry: StageRegistry) -> None:
    """Wrap the iteration calls only."""
    for cls in (Dataset, DataIterator):
        for name in _ITERATING:
            if hasattr(cls, name):
                setattr(cls, name, _wrap_iterating(getattr(cls, name), name, registry))
    _ray_compat.install_iteration_hook(lambda stats: registry.consumers.on_stats(stats))


def _pickled_split(registry: StageRegistry, iterator: Any) -> tuple[Any, ...]:
    """How a split iterator travels to another process: as Ray would send it, rebuilt there by
    ``remote.rebuild_split``, which records its loops and knows which stage's dataset it reads."""
    return (remote.rebuild_split, (type(iterator), dict(iterator.__dict__), registry.produced_by(iterator)))


def _wrap_iterating(fn: Callable[..., Any], method: str, registry: StageRegistry) -> Callable[..., Any]:
    """An iteration call from the user's code: a consumer stage, and its loop measured."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if caller.f_code.co_filename.startswith((_RAY_DIR, _PIPETUNE_DIR)):
            return fn(*args, **kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)
        stage = registry.consumer_stage(method, bound, _short_site(f"{caller.f_code.co_filename}:{caller.f_lineno}"))
        registry.before_execution()
        result = fn(*bound.args, **bound.kwargs)
        source = source_of(stage.index, _ray_compat.split_index(bound.arguments.get("self")))
        return registry.consumers.wrap(result, source, per_row=method == "iter_rows")

    return wrapper


def _checked_first(fn: Callable[..., Any], registry: StageRegistry) -> Callable[..., Any]:
    """A call that starts an execution from the user's code: pipetune's checks run first, on this thread, so a
    refused override is the user's one-line error and not an exception inside Ray's executor."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not sys._getframe(1).f_code.co_filename.startswith((_RAY_DIR, _PIPETUNE_DIR)):
            registry.before_execution()
        return fn(*args, **kwargs)

    return wrapper


def _splitting(fn: Callable[..., Any], registry: StageRegistry) -> Callable[..., Any]:
    """``streaming_split`` / ``split``: checked first (it may start an execution), and its iterators remembered
    as reading the dataset it split."""
    checked = _checked_first(fn, registry)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = checked(*args, **kwargs)
        if args:
            registry.split(args[0], result)
        return result

    return wrapper


def _wrap_materializing(fn: Callable[..., Any], method: str, registry: StageRegistry) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if not caller.f_code.co_filename.startswith((_RAY_DIR, _PIPETUNE_DIR)):
            site = _short_site(f"{caller.f_code.co_filename}:{caller.f_lineno}")
            registry.on_materialize(method, site, registry.built())
            registry.before_execution()
        return fn(*args, **kwargs)

    return wrapper


def _wrap(fn: Callable[..., Any], method: str, registry: StageRegistry, kind: StageKind) -> Callable[..., Any]:
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if caller.f_code.co_filename.startswith((_RAY_DIR, _PIPETUNE_DIR)):
            return fn(*args, **kwargs)  # Ray calling its own API: not a stage of the user's
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let Ray report the bad call in its own words
        stage = _new_stage(registry, method, kind, bound, f"{caller.f_code.co_filename}:{caller.f_lineno}")
        if kind is StageKind.WRITE and registry.sandbox is not None:
            _redirect(bound, stage, registry)
        if kind is StageKind.WRITE:  # a write executes the pipeline inside this call
            registry.before_execution()
        with registry.active(stage):
            result = fn(*bound.args, **bound.kwargs)
            if kind is StageKind.READ and registry.sample_rows and isinstance(result, Dataset):
                result = result.limit(registry.sample_rows)
            if stage.knobs.repartition and isinstance(result, Dataset):
                # e.g. a parquet read that packs small files into one block: spread it so tasks can run at once
                result = result.repartition(stage.knobs.repartition)
        registry.tag(stage, result)
        _apply_context(registry.overrides, kind, result)
        return result

    return wrapper


def _new_stage(
    registry: StageRegistry,
    method: str,
    kind: StageKind,
    bound: inspect.BoundArguments,
    site: str,
    key: str | None = None,
) -> Stage:
    """The stage of a call; with ``key`` (a loop's call site), the one stage every process shares for it."""
    udf_obj = bound.arguments.get("fn")
    index, new = registry.ledger.take("stage", key)
    stage = Stage(
        index=index,
        method=method,
        udf=_udf_name(udf_obj),
        site=_short_site(site),
        kind=StageKind.ACTOR if kind is StageKind.TRANSFORM and _is_actor(bound) else kind,
        inputs=registry.inputs_of(bound),
        takes=tuple(_knobs_of(bound)),
    )
    changes = registry.overrides.for_stage(stage)
    chained = _apply_changes(bound, stage, changes)
    if stage.counted_in_task and remote.workers_reach_recorder() and in_task.can_count(udf_obj):
        bound.arguments["fn"] = in_task.counting(udf_obj, index, stage.udf, stage.counted_per_row)  # progress in tasks
    knobs = with_knobs(read_knobs(bound), chained)
    stage = dataclasses.replace(stage, knobs=knobs, overridden=tuple(changes))
    registry.add(stage, announce=new)
    return stage


def _apply_changes(bound: inspect.BoundArguments, stage: Stage, changes: dict[str, KnobValue]) -> dict[str, KnobValue]:
    """Put the run's settings for ``stage`` into the call; the chained ones (applied to the call's result, not
    in it) are returned instead."""
    chained = {k: v for k, v in changes.items() if KNOBS[k].where is Where.CHAINED}
    for knob, value in changes.items():
        if knob not in chained:
            _apply_knob(bound, KNOBS[knob], value, stage)
    return chained


def _redirect(bound: inspect.BoundArguments, stage: Stage, registry: StageRegistry) -> None:
    """Send a write to the sandbox; a write that does not take a path cannot be redirected, so it never runs."""
    if registry.files is not None:
        registry.files.protect(bound.arguments.get("path"))
    if "path" not in bound.signature.parameters:
        raise UsageError(
            f"stage {stage.key}: {stage.method} writes to a target pipetune cannot redirect to a scratch directory",
            "tuning never writes to your real outputs: give the stage a path-based write (e.g. write_parquet) "
            "while tuning",
        )
    bound.arguments["path"] = os.path.join(str(registry.sandbox), f"{stage.index}-{stage.method}")
    if "filesystem" in bound.signature.parameters:
        bound.arguments["filesystem"] = None  # the sandbox is a local directory, whatever the script wrote to


def _udf_name(fn: Any) -> str:
    if fn is None:
        return ""
    if isinstance(fn, functools.partial):
        return _udf_name(fn.func)
    return str(getattr(fn, "__name__", type(fn).__name__))


def _short_site(site: str) -> str:
    path, _, line = site.rpartition(":")
    try:
        rel = os.path.relpath(path, remote.driver_cwd())
    except ValueError:
        rel = path
    return f"{path if rel.startswith('..') else rel}:{line}"


def _is_actor(bound: inspect.BoundArguments) -> bool:
    compute = bound.arguments.get("compute")
    return inspect.isclass(bound.arguments.get("fn")) or isinstance(compute, ActorPoolStrategy)


def _remote_args(bound: inspect.BoundArguments) -> dict[str, Any]:
    """Resource arguments passed as ``ray_remote_args={...}`` or as extra keyword arguments."""
    params = bound.signature.parameters
    extra: dict[str, Any] = {}
    for name, param in params.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD or name == "ray_remote_args":
            extra.update(bound.arguments.get(name) or {})
    return extra


def read_knobs(bound: inspect.BoundArguments) -> Knobs:
    """The knobs the call sets, as Ray will see them; a chained knob is not in the call, so it is left unset."""
    found = {k.name: _read_knob(bound, k) for k in KNOBS.values() if k.where is not Where.CHAINED}
    return Knobs(**found, compute="actors" if _is_actor(bound) else "tasks")


def _read_knob(bound: inspect.BoundArguments, knob: Knob) -> Any:
    args = bound.arguments
    if knob.where is Where.RESOURCE:
        return _num(args.get(knob.name, _remote_args(bound).get(knob.name)))
    if knob.where is Where.STRATEGY:
        return _concurrency_of(args.get(knob.name), args.get("compute"))
    value = args.get(knob.name)
    return value if isinstance(value, knob.types) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _concurrency_of(concurrency: Any, compute: Any) -> int | tuple[int, ...] | None:
    if isinstance(compute, ActorPoolStrategy):
        lo, hi = compute.min_size, compute.max_size
        return lo if lo == hi else (int(lo), int(hi) if hi != float("inf") else 0)
    if isinstance(compute, TaskPoolStrategy):
        return compute.size
    if isinstance(concurrency, int):
        return concurrency
    if isinstance(concurrency, tuple):
        return tuple(int(c) for c in concurrency)
    return None


def _apply_knob(bound: inspect.BoundArguments, knob: Knob, value: KnobValue, stage: Stage) -> None:
    """Put ``value`` where the declaration says it goes in this call, or refuse a knob the call has not.
    ``default`` removes the argument, so Ray Data uses its own default."""
    params = bound.signature.parameters
    if value == DEFAULT and (knob.where is Where.STRATEGY or knob.name in _knobs_of(bound)):
        _remove_knob(bound, knob)
    elif knob.where is Where.STRATEGY:
        _apply_concurrency(bound, value, stage)
    elif knob.name in params and params[knob.name].kind is not inspect.Parameter.VAR_KEYWORD:
        bound.arguments[knob.name] = value
        _drop_remote_arg(bound, knob.name)
    elif knob.where is Where.RESOURCE and "ray_remote_args" in params:
        remote = dict(bound.arguments.get("ray_remote_args") or {})
        remote[knob.name] = value
        bound.arguments["ray_remote_args"] = remote
    else:
        raise UsageError(
            f"stage {stage.key} ({stage.method}) has no knob '{knob.name}'",
            f"{stage.method} takes {', '.join(_knobs_of(bound)) or 'no knob pipetune can set'}",
        )


def _remove_knob(bound: inspect.BoundArguments, knob: Knob) -> None:
    params = bound.signature.parameters
    for name in knob.keywords:
        if name in params and params[name].kind is not inspect.Parameter.VAR_KEYWORD:
            bound.arguments.pop(name, None)
    _drop_remote_arg(bound, knob.name)


def _drop_remote_arg(bound: inspect.BoundArguments, knob: str) -> None:
    for name, param in bound.signature.parameters.items():
        holder = bound.arguments.get(name)
        if (param.kind is inspect.Parameter.VAR_KEYWORD or name == "ray_remote_args") and holder:
            bound.arguments[name] = {k: v for k, v in holder.items() if k != knob}


def _apply_concurrency(bound: inspect.BoundArguments, value: KnobValue, stage: Stage) -> None:
    params = bound.signature.parameters
    if "compute" in params and stage.kind is not StageKind.READ:
        bound.arguments.pop("concurrency", None)
        bound.arguments["compute"] = _strategy(value, actors=_is_actor(bound))
    elif "concurrency" in params:
        bound.arguments["concurrency"] = value
    else:
        raise UsageError(f"stage {stage.key} ({stage.method}) has no knob 'concurrency'")


def _strategy(value: KnobValue, actors: bool) -> Any:
    if not actors:
        return TaskPoolStrategy(size=value if isinstance(value, int) else int(value[1]))  # type: ignore[index]
    if isinstance(value, int):
        return ActorPoolStrategy(size=value)
    sizes: dict[str, Any] = dict(zip(("min_size", "max_size", "initial_size"), value, strict=False))  # type: ignore[arg-type]
    return ActorPoolStrategy(**sizes)


def _knobs_of(bound: inspect.BoundArguments) -> list[str]:
    """The knobs the call takes, in declaration order (a chained knob goes on any stage, so it is not listed)."""
    params = bound.signature.parameters
    remote = "ray_remote_args" in params
    return [k.name for k in KNOBS.values() if k.name in params or (remote and k.where is Where.RESOURCE)]


def _apply_context(overrides: Settings, kind: StageKind, result: Any) -> None:
    """A dataset copies the DataContext when its source is created, so ``ctx.`` overrides go there too."""
    if kind is StageKind.READ and isinstance(result, Dataset):
        for o in overrides.context:
            setattr(result.context, o.field, o.value)
