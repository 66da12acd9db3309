"""Runs a user's script under the recorder and stores the run as it goes.

The script runs in a child process (its own driver), so whatever it does (exit, crash, hang, get OOM-killed)
the recorder survives to mark the run and keep what was sent. Ctrl-C is passed on to the script once; a
second Ctrl-C, or the time limit, ends the child's whole process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipetune.capture import (
    EnvironmentSeen,
    EventSeen,
    ExecutionEnded,
    Message,
    OpId,
    OpSamples,
    Outcome,
    Part,
    Started,
    UdfRows,
)
from pipetune.diagnose import bottleneck_label
from pipetune.errors import RayUnavailable, ScriptError, UsageError, describe_exception
from pipetune.model import Event, EventKind, Run, RunStatus
from pipetune.record import logs, remote, stacks
from pipetune.record.channel import ENV_FD, WIND_DOWN_SIGNAL, receive
from pipetune.record.in_task import InTaskRows
from pipetune.record.watchdog import Watchdog
from pipetune.settings import Settings
from pipetune.store import RunHeader, Store, new_run_id

Listener = Callable[[Message], None]
StopRule = Callable[[Message], str | None]  # sees every message; a reason ends the run there
WIND_DOWN_S = 5.0  # chosen: the scheduler steps many times a second; a driver silent this long is stuck


@dataclass(frozen=True)
class Launch:
    """What to run and how."""

    script: Path
    args: tuple[str, ...] = ()
    overrides: Settings = field(default_factory=Settings)
    address: str | None = None  # a Ray cluster to attach to; None: the script's own (local) Ray
    timeout_s: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    stdout_to_stderr: bool = False  # keeps pipetune's own stdout clean for --json
    stall_after_s: float = 60.0  # the watchdog captures stacks after this long without progress
    sandbox: Path | None = None  # set: every write_* goes below this directory (tuning trials)
    stop: StopRule | None = None  # set: may end the run early (a time box, a warm-up that has done its job)
    run_id: str | None = None  # set: the id to store the run under (a tuning study names its trials first)
    output: Path | None = None  # set: the script's stdout and stderr go to this file (a study's trial log)
    sample_rows: int | None = None  # set: every source is cut to this many rows (batch-size search on a slice)


def record(launch: Launch, store: Store, listener: Listener | None = None) -> Run:
    """Run the script, store every part of the run as it arrives, return the finished Run (as stored)."""
    script = check_script(launch.script)
    overrides = typed_overrides(launch.overrides)
    address = launch.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_address(address)
    header = _header(script, launch, overrides)
    store.create(header)
    recorder = _Recorder(store, header.id, listener, Watchdog(launch.stall_after_s), launch.stop)
    # a split's coordinator, the actors that loop over splits, the workers counting rows (``in_task``)
    inbox = remote.Inbox(recorder.handle, os.environ.get(remote.ENV_WORKERS_SOCKET))
    try:
        outcome = recorder.drive(_spawn(script, launch, overrides, address, inbox.env()), launch)
    finally:
        inbox.close()
    for event in logs.events_since(recorder.raylet_logs, header.started_at, header.started_at):
        store.append(header.id, EventSeen(event))
    if launch.sandbox is not None:
        _put_outputs_back(store, header.id, launch.sandbox)
    run = store.load(header.id)
    outcome = _judge(run, outcome)
    store.finish(header.id, outcome, run.rows, bottleneck_label(run))
    return outcome.applied_to(run)


def _put_outputs_back(store: Store, run_id: str, sandbox: Path) -> None:
    """Undo what the script itself wrote beside its outputs during a trial (``record.files``), and say so."""
    from pipetune.record import files

    restored = files.restore(sandbox)
    if restored:
        shown = ", ".join(restored[:5]) + (" ..." if len(restored) > 5 else "")
        text = f"the script changed {len(restored)} path(s) beside its outputs; pipetune put them back: {shown}"
        store.append(run_id, EventSeen(Event(0.0, EventKind.WARNING, text)))


def check_script(path: Path) -> Path:
    if not path.is_file():
        raise ScriptError(f"script {path} does not exist", "pass the path of a Python file")
    try:
        compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as err:
        raise ScriptError(f"{path}:{err.lineno}: syntax error: {err.msg}", "fix the script and run again") from None
    return path.resolve()


def typed_overrides(overrides: Settings) -> Settings:
    """``ctx.FIELD`` values get DataContext's types here, before anything runs."""
    if not overrides.context:
        return overrides
    return overrides.typed(_context_fields())


def _context_fields() -> dict[str, Any]:
    from pipetune.record._ray_compat import context_fields

    return context_fields()


def check_address(address: str) -> None:
    """Fail in a second, not after Ray's minute of retries, when nothing listens at the address."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"'{address}' is not a Ray address", "write it as HOST:PORT, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({err.strerror or err})",
            "start one with `ray start --head`, or drop --address / RAY_ADDRESS to use a local Ray",
        ) from None


def _header(script: Path, launch: Launch, overrides: Settings) -> RunHeader:
    return RunHeader(
        id=launch.run_id or new_run_id(),
        script=_display_path(script),
        args=launch.args,
        cwd=os.getcwd(),
        script_sha256=hashlib.sha256(script.read_bytes()).hexdigest(),
        overrides=overrides.to_args(),
        started_at=time.time(),
    )


def _display_path(script: Path) -> str:
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _spawn(
    script: Path, launch: Launch, overrides: Settings, address: str | None, extra: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    spec = {
        "script": str(script),
        "args": list(launch.args),
        "overrides": overrides.to_config(),
        "sandbox": str(launch.sandbox) if launch.sandbox else None,
        "sample_rows": launch.sample_rows,
    }
    env = {**os.environ, **launch.extra_env, **extra, "PIPETUNE_SPEC": json.dumps(spec), ENV_FD: str(write_fd)}
    if address:
        env["RAY_ADDRESS"] = address
    log = open(launch.output, "ab") if launch.output else None  # noqa: SIM115 - closed once the child has it
    stdout = log.fileno() if log else sys.stderr.fileno() if launch.stdout_to_stderr else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipetune.record._child"],
        env=env,
        pass_fds=(write_fd,),
        start_new_session=True,  # its own process group: we can end it and everything it started
        stdout=stdout,
        stderr=log.fileno() if log else None,
    )
    os.close(write_fd)
    if log:
        log.close()
    return proc, read_fd


class _Recorder:
    """Reads the child's messages, appends each to the store, and decides how the run ended."""

    def __init__(
        self, store: Store, run_id: str, listener: Listener | None, watchdog: Watchdog, stop: StopRule | None = None
    ) -> None:
        self.watchdog = watchdog
        self.stop = stop
        self.stopped: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.raylet_pids: list[int] = []
        self.captures: list[threading.Thread] = []
        self._lock = threading.Lock()  # the stack-capturing thread appends to the store too
        self._handling = threading.Lock()  # messages arrive from the driver's pipe and from other processes
        self.store = store
        self.run_id = run_id
        self.listener = listener
        self.finished: Outcome | None = None
        self.raylet_logs: list[str] = []  # OOM kills and spilling show only there, read after the run
        self.timed_out = False
        self.interrupts = 0
        self._kill: threading.Timer | None = None  # armed once the run is wound down (a stop rule, the time limit)
        self.in_task = InTaskRows()

    def drive(self, child: tuple[subprocess.Popen[bytes], int], launch: Launch) -> Outcome:
        proc, read_fd = child
        self._proc = proc
        started = time.perf_counter()
        timer = self._arm_timeout(proc, launch.timeout_s)
        with os.fdopen(read_fd, "rb") as stream:
            self._pump(proc, stream)
        for thread in self.captures:  # stacks being captured belong to the run: wait before it is closed
            thread.join()  # bounded: each py-spy dump has its own time limit (record.stacks)
        for armed in (timer, self._kill):
            if armed is not None:
                armed.cancel()
        outcome = self._outcome(proc.wait())
        if outcome.wall_s is not None:  # the child's own figure wins if it sent one
            return outcome
        return outcome.timed(time.perf_counter() - started)

    def _pump(self, proc: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        while True:
            try:
                for message in receive(stream):
                    self.handle(message)
                return
            except KeyboardInterrupt:
                self.interrupts += 1
                _signal_group(proc, signal.SIGINT if self.interrupts == 1 else signal.SIGKILL)

    def handle(self, message: Message) -> None:
        """Store what belongs to the run, note how it ended, then show the message and ask the stop rule."""
        with self._handling:
            self._handle(message)

    def _handle(self, message: Message) -> None:
        if isinstance(message, UdfRows):
            self.in_task.add(message)  # kept in the operator samples it is folded into, not on its own
            return
        message = self.in_task.fold(message)
        match message:
            case Outcome():
                self.finished = message
            case Started(warning=warning):
                if warning:  # e.g. a Ray version the adapter was not written against
                    self._append(EventSeen(Event(0.0, EventKind.WARNING, warning)))
            case _:
                self._keep(message)
        if self.listener is not None:
            self._show(message)
        self._maybe_stop(message)

    def _show(self, message: Message) -> None:
        """A display that fails must not end the recording: it is switched off and the run goes on."""
        try:
            self.listener(message)  # type: ignore[misc]
        except Exception as err:  # any bug of a renderer; the run's data is what matters
            self.listener = None
            print(f"pipetune: the live view stopped ({describe_exception(err)}); recording goes on", file=sys.stderr)

    def _keep(self, part: Part) -> None:
        if isinstance(part, EnvironmentSeen):
            self.raylet_logs = list(part.raylet_logs.values())
            self.raylet_pids = list(part.raylet_pids.values())
        self._append(part)
        if isinstance(part, OpSamples):
            self._watch(part)

    def _maybe_stop(self, message: Message) -> None:
        if self._proc is None:
            return
        if self._kill is not None:
            if isinstance(message, ExecutionEnded):  # what the finished tasks did is stored: the rest is not needed
                _signal_group(self._proc, signal.SIGKILL)
            return
        if self.stop is None:
            return
        reason = self.stop(message)
        if reason:
            self.stopped = reason
            self._wind_down(self._proc)

    def _wind_down(self, proc: subprocess.Popen[bytes]) -> None:
        """Ask the driver for its execution's stats so far (``channel.WIND_DOWN_SIGNAL``), then end it: at once
        when they arrive, after ``WIND_DOWN_S`` if they do not."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, WIND_DOWN_SIGNAL)
        self._kill = threading.Timer(WIND_DOWN_S, _signal_group, (proc, signal.SIGKILL))
        self._kill.daemon = True
        self._kill.start()

    def _append(self, part: Part) -> None:
        with self._lock:
            self.store.append(self.run_id, part)

    def _watch(self, samples: OpSamples) -> None:
        stuck = self.watchdog.observe(samples.t, samples.values)
        if stuck is not None:
            args = (stuck, samples.t)
            thread = threading.Thread(target=self._capture, args=args, name="pipetune-stacks", daemon=True)
            thread.start()
            self.captures.append(thread)

    def _capture(self, op: OpId, t: float) -> None:
        """Stacks of the stuck operator's workers, stored with the run as a stall event."""
        op_name = op.name
        workers = stacks.busy_workers(self.raylet_pids, op_name)[:4]
        dumps = [d for d in (stacks.dump(p) for p in workers) if d is not None]
        frames = sorted({d.user_frame for d in dumps if d.user_frame})
        where = f" in {', '.join(frames)}" if frames else ""
        where = where or " not readable (py-spy missing or denied)"
        message = f"no rows moved for {self.watchdog.stall_after:g} s; workers of {op_name} are{where}"
        detail = "\n\n".join(f"pid {d.pid} {d.title}\n{d.text}" for d in dumps)
        self._append(EventSeen(Event(t, EventKind.STALL, message, detail=detail)))

    def _arm_timeout(self, proc: subprocess.Popen[bytes], timeout_s: float | None) -> threading.Timer | None:
        if timeout_s is None:
            return None

        def expire() -> None:
            self.timed_out = True
            self._wind_down(proc)  # a hung driver does not answer: it is killed WIND_DOWN_S later

        timer = threading.Timer(timeout_s, expire)
        timer.daemon = True
        timer.start()
        return timer

    def _outcome(self, returncode: int) -> Outcome:
        if self.timed_out:
            return _killed(returncode, "the run passed its time limit and was stopped")
        if self.stopped is not None:
            return Outcome(RunStatus.STOPPED, 0, self.stopped)
        if self.finished is not None:
            return self.finished
        if self.interrupts:
            return Outcome(RunStatus.INTERRUPTED, 130, "interrupted (Ctrl-C)")
        if returncode < 0:
            name = signal.Signals(-returncode).name
            return _killed(returncode, f"the script was killed by {name} (out of memory, or ended from outside)")
        why = f"the script's process exited with {returncode} before it finished"
        return Outcome(RunStatus.FAILED, returncode, why)


def _killed(returncode: int, why: str) -> Outcome:
    return Outcome(RunStatus.KILLED, returncode if returncode > 0 else 137, why)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the group we created for this child, and only it


def _judge(run: Run, outcome: Outcome) -> Outcome:
    """A script that ran to the end but never built a Ray Data pipeline did not give us a run."""
    if outcome.status is RunStatus.SUCCEEDED and not run.stages:
        why = f"{run.script} ran to the end without building a Ray Data pipeline: nothing to record"
        return Outcome(RunStatus.FAILED, 1, why, outcome.traceback, "not_a_pipeline", outcome.wall_s)
    return outcome
