"""The one-way line from the recorded script (child) to the recorder (parent): capture messages on a pipe.

The child only writes; the parent reads, stores every message as it arrives, and so keeps everything sent
before a crash. The one word the other way is a signal (``WIND_DOWN_SIGNAL``): the parent is about to stop the
run, so the child sends what its executions' finished tasks did. Messages are small (one sample tick is a few
hundred bytes), so a write never blocks long.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import IO

from pipetune import capture
from pipetune.capture import Message

ENV_FD = "PIPETUNE_EVENTS_FD"
WIND_DOWN_SIGNAL = signal.SIGUSR1


class Sender:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()  # the executor thread and the node sampler both send
        self._broken = False

    def send(self, message: Message) -> None:
        """Write one message as one line; once the recorder is gone, drop messages (never fail the script)."""
        data = capture.encode(message) + b"\n"
        with self._lock:
            if self._broken:
                return
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError:  # the recorder is gone: keep the user's pipeline running regardless
                self._broken = True


def receive(stream: IO[bytes]) -> Iterator[Message]:
    """Messages in the order sent; a torn last line (the child was killed mid-write) is dropped."""
    for raw in stream:
        try:
            message = capture.decode(raw)
        except capture.DecodeError:
            continue
        yield message
