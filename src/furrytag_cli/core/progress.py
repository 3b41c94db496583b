"""Progress bars of the dataset commands: live on a terminal, a few plain lines in a log.

On a terminal a tqdm bar redraws in place. When stderr is a file or a pipe (CI logs,
``nohup``) each redraw would become a line of its own, hundreds for one fetch, so there
the bar is printed as a whole line at most every ``LOG_INTERVAL`` seconds, plus the
first and the final state.
"""

import sys

LOG_INTERVAL = 30.0


class _LogLines:
    """A stream for tqdm that turns each carriage-return redraw into one whole line."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        # tqdm pads a redraw with spaces to cover a longer previous one.
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(
    total: int | float,
    desc: str,
    unit: str,
    *,
    unit_scale: bool = False,
    log_interval: float = LOG_INTERVAL,
):
    """A tqdm bar on stderr with an ETA; see the module docstring for non-terminals."""
    from tqdm import tqdm

    stream = sys.stderr
    if _is_terminal(stream):
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=unit_scale,
            dynamic_ncols=True,
            file=stream,
        )
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        ncols=100,
        file=_LogLines(stream),
        mininterval=log_interval,
        ascii=True,
    )


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
