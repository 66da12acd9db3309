"""What the script's Ray Data does outside its driver process, recorded as if it happened inside it.

Two parts of a training-ingest pipeline run in other processes of the driver's node:

- the executor of a ``streaming_split``: Ray runs it in its ``SplitCoordinator`` actor, which Ray Data pins to
  the driver's node (a label selector on the driver's node id, ``stream_split_iterator.py``);
- the loops over the splits, when the script hands each split to an actor (a training worker).

Both report to the recorder over a Unix socket it listens on (:class:`Inbox`), with the same messages the
driver sends down its pipe. Ray starts its workers with the environment of the raylet, and a local Ray's
raylet is started by the driver, so the socket's path, the run's clock origin and its settings reach every
worker through the variables below. ``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock for every
process of the machine, so a time measured in a worker lands on the run's own timeline.

Indices must stay unique across those processes: stages (one per call site, also for a loop that two actors
run) and executions come from one :class:`Ledger`, a small file locked with ``flock`` beside the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from pipetune.capture import Message
from pipetune.record.channel import Sender, receive

if TYPE_CHECKING:
    from pipetune.record.interpose import StageRegistry
    from pipetune.record.probe import Probe

ENV_SOCKET = "PIPETUNE_EVENTS_SOCKET"
ENV_T0 = "PIPETUNE_T0"  # the driver's perf_counter at the run's start
ENV_OVERRIDES = "PIPETUNE_OVERRIDES"  # the run's settings, as ``Settings.to_config`` writes them
ENV_CWD = "PIPETUNE_CWD"  # the driver's working directory: call sites read relative to it everywhere
ENV_WORKERS_SOCKET = "PIPETUNE_WORKERS_SOCKET"  # the socket a study's own local Ray gave its workers at its start
LEDGER = "ledger.json"


# -- the recorder's side ---------------------------------------------------------------------------------


class Inbox:
    """A Unix socket the run's other processes connect to; each message is handed to ``deliver``.

    ``deliver`` is called from one reader thread per connection: it must be safe to call from several.
    """

    def __init__(self, deliver: Callable[[Message], None], path: str | None = None) -> None:
        """``path``: listen there (``ENV_WORKERS_SOCKET``, the socket a study's own Ray gave its workers when it
        started) while no other run does (two runs at once on that Ray: the second gets a directory of its
        own, and its workers do not reach it); else in a directory of its own."""
        self._claim = _claim(path) if path is not None else None
        self.dir = tempfile.mkdtemp(prefix="pipetune-") if self._claim is None else os.path.dirname(str(path))
        self.path = os.path.join(self.dir, "events.sock") if self._claim is None else str(path)
        self._forget()  # what an earlier run of the series left there
        self._deliver = deliver
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        self._readers: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="pipetune-inbox", daemon=True)
        self._accepting.start()

    def env(self) -> dict[str, str]:
        return {ENV_SOCKET: self.path}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed: the run is over
                return
            reader = threading.Thread(target=self._read, args=(conn,), name="pipetune-inbox-reader", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            for message in receive(stream):
                self._deliver(message)

    def close(self, wait_s: float = 2.0) -> None:
        """Stop listening, give open connections ``wait_s`` to finish (their processes end with Ray)."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        deadline = time.monotonic() + wait_s
        for reader in list(self._readers):
            reader.join(max(0.0, deadline - time.monotonic()))
        if self._claim is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self._forget()
            self._claim.close()  # the lock goes with it

    def _forget(self) -> None:
        for path in (self.path, os.path.join(self.dir, LEDGER)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _claim(path: str) -> IO[bytes] | None:
    """An exclusive lock on ``path``'s lock file, held while the file stays open; None while another holds it."""
    lock = open(path + ".lock", "ab")  # noqa: SIM115 - held open for the run: closing it releases the lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


# -- indices shared by the run's processes ---------------------------------------------------------------


_State = dict[str, dict[str, int]]  # "next": the next index of each kind; "keys": the index each key got


class Ledger:
    """Hands out stage and execution indices, unique across every process of the run.

    With no path (a unit test, or a process the recorder did not start) it counts in memory.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._memory: _State = {"next": {}, "keys": {}}
        self._lock = threading.Lock()

    def take(self, kind: str, key: str | None = None) -> tuple[int, bool]:
        """The next index of ``kind`` (``"stage"``, ``"execution"``), and True; or, for a ``key`` seen
        before (a loop's call site), the index it got then, and False."""
        with self._lock, self._state() as state:
            named = f"{kind}:{key}" if key is not None else None
            if named is not None and named in state["keys"]:
                return int(state["keys"][named]), False
            index = int(state["next"].get(kind, 0))
            state["next"][kind] = index + 1
            if named is not None:
                state["keys"][named] = index
            return index, True

    @contextlib.contextmanager
    def _state(self) -> Iterator[_State]:
        if self.path is None:
            yield self._memory
            return
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
            f.seek(0)
            text = f.read()
            state: _State = json.loads(text) if text else {"next": {}, "keys": {}}
            yield state
            f.seek(0)
            f.truncate()
            f.write(json.dumps(state))


def driver_cwd() -> str:
    """The driver's working directory, in any process of the run (a Ray worker runs in a directory of its own)."""
    return os.environ.get(ENV_CWD) or os.getcwd()


def ledger() -> Ledger:
    """This process's view of the run's ledger (in memory when the recorder gave no socket)."""
    path = os.environ.get(ENV_SOCKET)
    return Ledger(os.path.join(os.path.dirname(path), LEDGER) if path else None)


# -- the driver's side ----------------------------------------------------------------------------------

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray's: a job config that ``ray.init`` merges into the driver's


_reachable = False  # set by reach_workers: the run's workers run on this machine and get its environment


# What a script does that takes its data to other processes: a split (run by Ray's coordinator actor), Ray
# Train (its workers loop over shards), its own actors or tasks (a dataset or split passed to them)
_CROSSES = re.compile(r"streaming_split|ray\.train|\.remote\(")


def reach_workers(t0: float, overrides: dict[str, Any], names: tuple[str, ...], source: str = "") -> None:
    """Make the run's recording environment (the socket, the clock origin, the settings and ``names``) reach
    the workers Ray starts for this driver.

    A local Ray started by the driver passes its environment on by itself. A cluster this driver attaches to
    gets it as the job's ``runtime_env`` ``env_vars``, through the job config ``ray.init`` reads, only when the
    cluster runs on this machine (its workers then import this same pipetune, and the socket is here) and the
    script's ``source`` takes its data to other processes: a runtime_env costs every run about 0.7 s more to
    start its workers (measured on a 2-CPU cluster attached here: 6.5 s against 5.8 s, four runs each).
    """
    global _reachable
    os.environ.update({ENV_T0: repr(t0), ENV_OVERRIDES: json.dumps(overrides), ENV_CWD: os.getcwd()})
    address = os.environ.get("RAY_ADDRESS", "")
    if ENV_SOCKET not in os.environ:
        _reachable = False
    elif not address:
        _reachable = True  # a local Ray: its raylet, and so every worker, inherits this environment
    else:
        _reachable = on_this_machine(address) and bool(_CROSSES.search(source))
        if _reachable:
            _into_job_config((ENV_SOCKET, ENV_T0, ENV_OVERRIDES, ENV_CWD, *names))


def _into_job_config(keys: tuple[str, ...]) -> None:
    """Add these variables to the ``env_vars`` of the job config ``ray.init`` will read (kept: what is there)."""
    config = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}")
    runtime_env = config.get("runtime_env") or {}
    runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **{k: os.environ[k] for k in keys}}
    config["runtime_env"] = runtime_env
    os.environ[JOB_CONFIG_ENV] = json.dumps(config)


def on_this_machine(address: str) -> bool:
    """True for a Ray address whose head runs on this machine (``auto``, loopback, one of its own IPs)."""
    if address == "auto":
        return True
    if "://" in address:  # Ray Client (ray://): the driver runs on the cluster, not here
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return False
    return ip.startswith("127.") or ip in _own_ips()


def _own_ips() -> set[str]:
    import psutil

    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET}


# -- a worker's side -------------------------------------------------------------------------------------


def connect(path: str | None = None) -> Sender | None:
    """A sender to the recorder (at ``path``, else the run's socket), or None when this process was not
    started under one (or it is gone)."""
    path = path or os.environ.get(ENV_SOCKET)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    _keep.append(conn)  # the fd lives as long as the process
    return Sender(conn.fileno())


def _t0() -> float:
    try:
        return float(os.environ.get(ENV_T0, ""))
    except ValueError:
        return time.perf_counter()


_keep: list[socket.socket] = []
_lock = threading.Lock()
_executor_listener: Probe | None = None
_registry: StageRegistry | None = None


def executor_listener() -> Probe | None:
    """The probe for executions that run in this process though it is not the driver (a split's
    coordinator); None outside a recorded run. Made once, on the first execution."""
    global _executor_listener
    with _lock:
        if _executor_listener is None:
            sender = connect()
            if sender is not None:
                from pipetune.record.probe import Probe

                _executor_listener = Probe(sender, _overrides(), _t0(), remote=True)
        return _executor_listener


def _overrides() -> Any:
    from pipetune.settings import Settings

    return Settings.from_config(json.loads(os.environ.get(ENV_OVERRIDES) or "{}"))


class StageTag(int):
    """The stage index the driver writes on a logical operator. It unpickles through :func:`tag_arrived`, so a
    process the script's dataset reaches (a split's coordinator, Ray Train's dataset manager) loads pipetune
    and records what it does with it: the splits it makes, the loops over them."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (tag_arrived, (int(self),))


def workers_reach_recorder() -> bool:
    """Whether the run's workers can import this pipetune and reach the recorder's socket: this run's
    environment reaches them (``reach_workers``), or they run on a study's own Ray, started with the socket
    this run's recorder listens on (``record.shared``)."""
    inherited = os.environ.get(ENV_WORKERS_SOCKET)
    return _reachable or (inherited is not None and inherited == os.environ.get(ENV_SOCKET))


def tag_for(index: int) -> int:
    """What the driver writes on a logical operator: a :class:`StageTag` where the workers can load pipetune
    and reach the recorder (this machine), else the plain index (a cluster elsewhere must not need pipetune
    to unpickle the script's plan)."""
    return StageTag(index) if _reachable else index


def tag_arrived(index: int) -> StageTag:
    with contextlib.suppress(Exception):  # recording is best effort: the plan must unpickle regardless
        _consumer_registry()
    return StageTag(index)


def adopt(registry: StageRegistry) -> None:
    """The driver's own registry: datasets and splits that come back to it need nothing installed again."""
    global _registry
    with _lock:
        _registry = registry


def split_arrived(iterator: Any, source: int | None) -> None:
    """A split of a ``streaming_split`` was unpickled in this process: its loops here are consumers of the
    run, as they would be in the driver. ``source`` is the stage whose dataset was split."""
    registry = _consumer_registry()
    if registry is not None:
        registry.adopt_split(iterator, source)


def _consumer_registry() -> StageRegistry | None:
    global _registry
    with _lock:
        if _registry is None:
            sender = connect()
            if sender is None:
                return None
            _registry = _install_consumers(sender)
        return _registry


def _install_consumers(sender: Sender) -> StageRegistry:
    from pipetune.capture import ConsumerSamples, StageBuilt
    from pipetune.record import interpose
    from pipetune.record.consume import ConsumerLog

    t0 = _t0()
    registry = interpose.StageRegistry(_overrides(), lambda stage: sender.send(StageBuilt(stage)))
    registry.consumers = ConsumerLog(lambda values: sender.send(ConsumerSamples(time.perf_counter() - t0, values)))
    interpose.install_receiving(registry)
    return registry


def rebuild_split(cls: type[Any], state: dict[str, Any], source: int | None) -> Any:
    """Unpickles a split iterator as Ray would (``__dict__`` restored), then records its loops here."""
    iterator: Any = object.__new__(cls)
    iterator.__dict__.update(state)
    with contextlib.suppress(Exception):  # recording is best effort: the user's worker must get its split
        split_arrived(iterator, source)
    return iterator
