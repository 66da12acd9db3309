"""The script's own loops over its data: every iteration call (``iter_batches``, ``iter_torch_batches``,
``iter_rows`` ..., on a dataset or on one split of a ``streaming_split``) is a consumer, measured as it runs.

The figures are Ray Data's own iterator statistics where Ray keeps them (the DatasetStats its batch iterator
times ``next()`` and the user's code with); where it does not (a Ray that moved them), the same two spans are
timed here: the wait inside ``next()`` and the time until the loop asks again. Either way a batch costs two
clock reads and a few additions, on the consumer's own thread. Figures are cumulative over the run, so a loop
that iterates the same call once per epoch stays one consumer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipetune.metrics import CONSUMER_METRICS, SAMPLE_INTERVAL_S
from pipetune.record import _ray_compat

Send = Callable[[dict[str, dict[str, float]]], None]
_FIGURES = tuple(n for n in CONSUMER_METRICS if n != "ray_stats")


def source_of(stage: int, split: int | None) -> str:
    """The name a consumer's samples go under: ``consumer:3``, or ``consumer:3/1`` for split 1."""
    return f"consumer:{stage}" if split is None else f"consumer:{stage}/{split}"


def rows_in(batch: Any) -> int:
    """Rows in a batch as the loop received it: a table, a frame, a dict of columns, or a list."""
    if hasattr(batch, "num_rows"):
        return int(batch.num_rows)
    if isinstance(batch, dict):
        first: Any = next(iter(batch.values()), None)
        return len(first) if hasattr(first, "__len__") else 1
    return len(batch) if hasattr(batch, "__len__") else 1


@dataclass
class Consumer:
    """One consumer's figures: ``done`` from iterations that ended, plus the one in progress (Ray's own
    statistics in ``ray`` once its batch iterator exists, else ``own``)."""

    source: str
    done: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_FIGURES, 0.0))
    own: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_FIGURES, 0.0))
    ray: Any = None
    from_ray: bool = False  # Ray's own statistics were read for this consumer
    sent_at: float = 0.0

    def current(self) -> dict[str, float]:
        if self.ray is not None:
            try:
                return _ray_compat.iteration_figures(self.ray)
            except Exception:  # Ray moved its timers: fall back to ours
                self.ray, self.from_ray = None, False
        return self.own

    def values(self) -> dict[str, float]:
        now = self.current()
        return {**{k: self.done[k] + now.get(k, 0.0) for k in _FIGURES}, "ray_stats": float(self.from_ray)}

    def begin(self) -> None:
        self.own, self.ray = dict.fromkeys(_FIGURES, 0.0), None

    def attach(self, stats: Any) -> None:
        self.ray, self.from_ray = stats, True

    def end(self) -> None:
        self.done = {k: v for k, v in self.values().items() if k in _FIGURES}
        self.begin()


class ConsumerLog:
    """Every consumer of the run; ``send`` ships their samples (``{source: values}``) to the recorder."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._consumers: dict[str, Consumer] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # the consumer whose iteration this thread is starting

    def on_stats(self, stats: Any) -> None:
        """Ray built a batch iterator on this thread: its statistics are the starting consumer's."""
        consumer = getattr(self._local, "starting", None)
        if consumer is not None and consumer.ray is None:
            consumer.attach(stats)

    def wrap(self, iterable: Iterable[Any], source: str, per_row: bool = False) -> Iterable[Any]:
        with self._lock:
            consumer = self._consumers.setdefault(source, Consumer(source))
        return _Loop(self, iterable, consumer, per_row)

    def send(self, consumer: Consumer, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - consumer.sent_at >= SAMPLE_INTERVAL_S:
            consumer.sent_at = now
            self._send({consumer.source: consumer.values()})

    def starting(self, consumer: Consumer | None) -> None:
        self._local.starting = consumer


def _milestone(batches: float) -> bool:
    """1, 2, 4, 8 ... batches: sent whatever the clock says, so a stop rule that waits for a count (a tuning
    probe) sees it exactly, however fast the loop runs; a handful of messages over any run."""
    n = int(batches)
    return n > 0 and n & (n - 1) == 0


class _Loop:
    """The iterable handed back to the script: Ray's own, timed. Iterating it twice runs two epochs."""

    def __init__(self, log: ConsumerLog, iterable: Iterable[Any], consumer: Consumer, per_row: bool) -> None:
        self._log, self._iterable, self._consumer, self._per_row = log, iterable, consumer, per_row

    def __iter__(self) -> Iterator[Any]:
        log, consumer = self._log, self._consumer
        consumer.begin()
        log.send(consumer, force=True)
        items = iter(self._iterable)
        try:
            yield from self._timed(items)
        finally:
            log.starting(None)
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a `break` shuts Ray's executor down now, as it would without us
            consumer.end()
            log.send(consumer, force=True)

    def _timed(self, items: Iterator[Any]) -> Iterator[Any]:
        own, log, consumer = self._consumer.own, self._log, self._consumer
        log.starting(consumer)  # Ray builds its batch iterator inside the first next(), on this thread
        while True:
            asked = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            got = time.perf_counter()
            if own["batches"] == 0:
                log.starting(None)
            own["blocked_s"] += got - asked
            own["first_wait_s"] += got - asked if own["batches"] == 0 else 0.0
            own["batches"] += 1
            own["rows"] += 1 if self._per_row else rows_in(item)
            yield item
            own["user_s"] += time.perf_counter() - got
            log.send(consumer, force=_milestone(consumer.done["batches"] + own["batches"]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterable, name)  # anything else Ray's iterable offers
