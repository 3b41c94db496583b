"""Ctrl-C during long work: the first press asks to stop after the current batch, the
second exits at once (exit code 130)."""

import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager


class StopFlag:
    """Set by the first Ctrl-C; long loops check it between units of work."""

    def __init__(self):
        self.requested = False


@contextmanager
def graceful_interrupt(notify: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
    """Within this block Ctrl-C sets the yielded flag instead of raising (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            os._exit(130)
        flag.requested = True
        notify("Stopping after the current batch; press Ctrl-C again to quit at once.")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
