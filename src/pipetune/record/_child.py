"""Entry point of the recorded driver process: ``python -m pipetune.record._child``.

It installs the probe, then runs the user's script exactly as ``python SCRIPT ARGS`` would (``__main__``,
``sys.argv``, ``sys.path[0]``, the caller's working directory), and reports how the script ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the driver imports these only once it is running, after the parent-death signal is set
    from pipetune.capture import Outcome
    from pipetune.record.channel import Sender
    from pipetune.record.probe import Probe

SPEC_ENV = "PIPETUNE_SPEC"


def main() -> int:
    _die_with_parent()
    spec = json.loads(os.environ.pop(SPEC_ENV))
    from pipetune.record import _ray_compat, remote
    from pipetune.record.channel import ENV_FD, Sender

    sender = Sender(int(os.environ.pop(ENV_FD)))
    t0 = time.perf_counter()
    probe = _install(sender, spec, t0)
    # a split's coordinator and the actors that loop over splits report to the recorder as this process does
    remote.reach_workers(t0, spec["overrides"], (_ray_compat.CALLBACK_ENV,), _source(spec["script"]))
    _guard_files(spec.get("sandbox"), probe)
    outcome = _run_script(spec["script"], spec["args"])
    probe.stop()
    sender.send(outcome.timed(time.perf_counter() - t0))
    if probe.leaves_fast:
        _leave(outcome.exit_code or 0)
    return outcome.exit_code or 0


def _leave(code: int) -> None:
    """A tuning trial's driver ends without Python's and Ray's teardown: all the run measured has been sent,
    its outputs are the sandbox's, and the teardown (Ray's shutdown, the interpreter's) took 1.1-1.4 s a run
    on this machine, which the study would wait for before its next trial. Ray frees what the driver held
    when its process ends (its raylet sees the connection close); Ray Data's share of the cluster was given
    back as each execution ended (``Probe.leaves_fast``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _source(script: str) -> str:
    try:
        with open(script, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # the script's own run reports a missing file in its words
        return ""


def _die_with_parent() -> None:
    """If the recorder is killed outright (kill -9), this driver goes too, and Ray frees what it held."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _install(sender: Sender, spec: dict[str, Any], t0: float) -> Probe:
    from ray.data import DataContext

    from pipetune.capture import Started
    from pipetune.record import _ray_compat, interpose
    from pipetune.record.channel import WIND_DOWN_SIGNAL
    from pipetune.record.probe import Probe, watch_sinks
    from pipetune.settings import Settings

    overrides = Settings.from_config(spec["overrides"])
    probe = Probe(sender, overrides, t0, spec.get("sandbox"), spec.get("sample_rows"))
    _ray_compat.install_callback(probe)
    interpose.install(probe.registry)
    _ray_compat.enable_stage_timing()
    watch_sinks(probe)
    signal.signal(WIND_DOWN_SIGNAL, lambda *_: probe.winding_down.set())
    for o in overrides.context:  # before the script builds datasets: they copy the context
        setattr(DataContext.get_current(), o.field, o.value)
    sender.send(Started(os.getpid(), _ray_compat.check_version() or ""))
    return probe


def _guard_files(sandbox: str | None, probe: Probe) -> None:
    """Tuning: journal what the script changes itself, so the recorder can put its outputs back afterwards."""
    if sandbox is None:
        return
    import tempfile

    from pipetune.record import files

    ray_tmp = os.environ.get("RAY_TMPDIR") or os.path.join(tempfile.gettempdir(), "ray")
    caches = [os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")]
    journal = files.Journal(sandbox, exempt=[ray_tmp, *caches])
    probe.registry.files = journal
    files.install(journal)


def _run_script(script: str, args: list[str]) -> Outcome:
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
        return _outcome("succeeded" if code == 0 else "failed", code, f"the script exited with {exit_.code}")
    except KeyboardInterrupt:
        return _outcome("interrupted", 130, "interrupted (Ctrl-C)")
    except BaseException as err:
        return _failure(err)
    return _outcome("succeeded", 0, "")


def _failure(err: BaseException) -> Outcome:
    from pipetune.errors import PipetuneError, describe_exception

    ours = _find(err, PipetuneError)
    if ours is not None:  # refused by pipetune (e.g. an unknown stage): one line, no traceback
        return _outcome("failed", 2, str(ours), kind="usage")
    ray_start = _ray_start_failure(err)
    text = _user_traceback(err)
    message = describe_exception(err)
    if ray_start:
        message = f"Ray could not start or connect ({message}); check RAY_ADDRESS / --address and Ray's logs"
    return _outcome("failed", 1, message, traceback=text, kind="ray" if ray_start else "script")


def _user_traceback(err: BaseException) -> str:
    """The traceback as Python prints it, without pipetune's and runpy's own frames (noise to the user)."""
    package = os.path.dirname(os.path.dirname(__file__))
    noise = (f'  File "{package}', f'  File "{runpy.__file__}')
    return "".join(entry for entry in traceback.format_exception(err) if not entry.startswith(noise))


def _find(err: BaseException | None, cls: type) -> Any:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, cls):
            return err
        err = err.__cause__ or err.__context__
    return None


def _ray_start_failure(err: BaseException) -> bool:
    """True when the script died inside ``ray.init`` (Ray could not start or connect), not in its own code."""
    frames = traceback.extract_tb(err.__traceback__)
    return any(f.name == "init" and f.filename.endswith(os.path.join("ray", "_private", "worker.py")) for f in frames)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _outcome(status: str, code: int, error: str, traceback: str = "", kind: str = "") -> Outcome:
    from pipetune.capture import Outcome
    from pipetune.model import RunStatus

    return Outcome(RunStatus(status), code, error, traceback, kind)


if __name__ == "__main__":
    sys.exit(main())
