"""Stopping long work cleanly: Ctrl-C, SIGTERM and SIGHUP (what ``timeout``, systemd,
Docker, job schedulers and a closed terminal send) ask to stop after the current batch;
a second one exits at once. The exit code is 128 + the signal's number (130, 143, 129)."""

import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class StopFlag:
    """Set by the first stop signal; long loops check it between units of work."""

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT

    def request(self, signum: int = signal.SIGINT) -> None:
        self.requested = True
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 130, 143 or 129."""
        return 128 + int(self.signum)


@contextmanager
def graceful_interrupt(notify: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
    """Within this block a stop signal sets the yielded flag instead of ending the process
    (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            os._exit(128 + signum)
        flag.request(signum)
        name = _NAMES.get(signum, f"signal {signum}")
        again = "press Ctrl-C again" if signum == signal.SIGINT else f"send {name} again"
        try:
            notify(f"Stopping after the current batch ({name}); {again} to quit at once.")
        except (OSError, ValueError):
            pass  # a hung-up terminal: stopping matters, the notice does not

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
