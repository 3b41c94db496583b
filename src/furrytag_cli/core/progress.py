"""Progress of long work, shown the way the place it goes to can show it.

A ``Progress`` counts work done out of a total (files, images, bytes, training steps),
the failures among it and a short status; a renderer, chosen by where stderr goes,
shows it:

- ``live``: on a terminal, a rich bar redrawn in place (count, rate, failures, elapsed
  time, ETA), with notes printed above it;
- ``lines``: in a log (stderr is a file or a pipe: CI, ``nohup``, a cluster's job log),
  one plain line at most every ``LOG_INTERVAL`` seconds and one when a pass ends, so a
  long run shows life without a line per redraw;
- ``notebook``: in a Jupyter notebook (the Python API), a tqdm bar, which draws there;
- ``off``: no bar; notes (e.g. a skipped file) are still printed.

A pass is one run of the count from start to end; ``restart`` begins another on the
same display (a resumed download, the next training epoch).
"""

import sys
import time
from collections.abc import Iterable

from furrytag_cli.core.console import printable
from furrytag_cli.core.errors import ConfigError

LOG_INTERVAL = 30.0
RENDERERS = ("live", "lines", "notebook", "off")


def choose_renderer(stream=None) -> str:
    """``live`` on a terminal, ``notebook`` in a Jupyter kernel, else ``lines``."""
    if _is_terminal(stream if stream is not None else sys.stderr):
        return "live"
    return "notebook" if _in_notebook() else "lines"


class Progress:
    """Progress of one piece of work (a context manager: ``with Progress(...) as bar``).

    ``total`` may be None (unknown); ``unit`` names what is counted ("B" shows sizes and
    transfer speeds); ``failures`` adds the count of failed items to the display.
    ``enabled`` False, or ``renderer`` "off", shows no bar. ``renderer`` None picks one by
    where ``stream`` (default stderr) goes; ``console`` is the rich console of the live
    bar. ``line``, a format string over ``label``, ``done``, ``total``, ``unit``,
    ``percent``, ``rate``, ``left`` and ``status``, replaces the default interval line
    of a log.
    """

    def __init__(
        self,
        total: float | None = None,
        label: str = "",
        unit: str = "it",
        *,
        enabled: bool = True,
        renderer: str | None = None,
        stream=None,
        console=None,
        interval: float = LOG_INTERVAL,
        failures: bool = False,
        line: str | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        kind = "off" if not enabled else renderer or choose_renderer(self.stream)
        if kind not in RENDERERS:
            raise ConfigError(f"renderer must be one of {', '.join(RENDERERS)}; received {kind!r}")
        self.total, self.label, self.unit = total, label, unit
        self.interval, self.failures, self.line = interval, failures, line
        self.completed, self.failed, self.status = 0, 0, ""
        self._from = 0
        self._started = time.perf_counter()
        self._open = False
        self._renderer = _RENDERERS[kind](self, console)

    @property
    def renderer(self) -> str:
        """The renderer in use: one of ``RENDERERS``."""
        return self._renderer.kind

    def start(self) -> "Progress":
        """Show the bar and begin the first pass; return self (``close`` ends it)."""
        self._started = time.perf_counter()
        self._open = True
        self._renderer.start()
        return self

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the pass (see ``end``) and take the bar down; closing twice does nothing."""
        self.end()
        self._renderer.stop()

    def advance(self, count: float = 1, *, status: str | None = None) -> None:
        """Count ``count`` more units done (and set the status text, when given)."""
        self.completed += count
        if status is not None:
            self.status = status
        self._renderer.refresh()

    def set(
        self,
        completed: float | None = None,
        *,
        total: float | None = None,
        failed: int | None = None,
        status: str | None = None,
    ) -> None:
        """Set any of the counts, the total or the status text outright."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if failed is not None:
            self.failed = failed
        if status is not None:
            self.status = status
        self._renderer.refresh()

    def batch(self, items: Iterable) -> None:
        """Count a finished batch of items (each with ``ok``, ``path`` and ``reason``);
        a note names each failed one."""
        items = list(items)
        for item in items:
            if not item.ok:
                self.failed += 1
                self.note(f"furrytag: skipped {printable(item.path)}: {printable(item.reason)}")
        self.advance(len(items))

    def note(self, message: str) -> None:
        """A line for people, above the bar when there is one."""
        self._renderer.note(message)

    def restart(
        self,
        total: float | None,
        completed: float = 0,
        *,
        label: str | None = None,
        line: str | None = None,
    ) -> None:
        """Begin a new pass at ``completed`` of ``total``; rate and ETA count from here."""
        self.total, self.completed = total, completed
        self._from, self._started = completed, time.perf_counter()
        if label is not None:
            self.label = label
        if line is not None:
            self.line = line
        self.status = ""
        self._open = True
        self._renderer.restart()

    def end(self, line: str | None = None) -> None:
        """End the pass: ``line`` (default in a log: the pass's final state) is printed."""
        if self._open:
            self._open = False
            self._renderer.end(line)

    def rate(self) -> float:
        """Units per second since the pass began."""
        seconds = time.perf_counter() - self._started
        return (self.completed - self._from) / seconds if seconds > 0 else 0.0

    def interval_line(self) -> str:
        """The line a log gets every interval."""
        rate = self.rate()
        left = (self.total - self.completed) / rate if self.total and rate > 0 else None
        fields = {
            "label": self.label,
            "done": self._count(self.completed),
            "total": self._count(self.total) if self.total else "?",
            "unit": self.unit,
            "percent": f"{100 * self.completed / self.total:.0f}%" if self.total else "?%",
            "rate": self._speed(rate),
            "left": _duration(left) if left is not None else "?",
            "status": self.status,
        }
        if self.line is not None:
            return self.line.format(**fields)
        text = f"{self._where()}, {fields['rate']}{self._extras()}"
        return f"{text}, about {fields['left']} left" if left is not None else text

    def final_line(self) -> str:
        """The line a log gets when a pass ends."""
        seconds = time.perf_counter() - self._started
        return (
            f"{self._where()} in {_duration(seconds)}, {self._speed(self.rate())}{self._extras()}"
        )

    def live_status(self) -> str:
        """The text beside the live bar: the status, or the rate; failures when counted."""
        text = self.status or self._speed(self.rate())
        return f"{text}, {self.failed} failed" if self.failures else text

    def _where(self) -> str:
        unit = "" if self.unit == "B" else f" {self.unit}"
        if not self.total:
            return f"{self.label}: {self._count(self.completed)}{unit}"
        percent = 100 * self.completed / self.total
        done, total = self._count(self.completed), self._count(self.total)
        return f"{self.label}: {percent:.0f}% {done}/{total}{unit}"

    def _extras(self) -> str:
        failed = f", {self.failed} failed" if self.failures else ""
        status = f", {self.status}" if self.status else ""
        return failed + status

    def _count(self, value: float) -> str:
        return _size(value) if self.unit == "B" else f"{value:g}"

    def _speed(self, rate: float) -> str:
        return f"{_size(rate)}/s" if self.unit == "B" else f"{rate:.1f} {self.unit}/s"


class _Off:
    kind = "off"

    def __init__(self, progress: Progress, console=None) -> None:
        self.progress = progress

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def restart(self) -> None:
        pass

    def note(self, message: str) -> None:
        print(message, file=self.progress.stream, flush=True)

    def end(self, line: str | None) -> None:
        pass

    def stop(self) -> None:
        pass


class _Lines(_Off):
    kind = "lines"

    def __init__(self, progress: Progress, console=None) -> None:
        super().__init__(progress)
        self._last_time = time.perf_counter()
        self._last_count = None

    def start(self) -> None:
        self._last_time = time.perf_counter()

    restart = start

    def refresh(self) -> None:
        now = time.perf_counter()
        count = self.progress.completed
        if now - self._last_time >= self.progress.interval and count != self._last_count:
            self._last_time, self._last_count = now, count
            self.note(self.progress.interval_line())

    def end(self, line: str | None) -> None:
        self.note(line if line is not None else self.progress.final_line())


class _Live(_Off):
    kind = "live"

    def __init__(self, progress: Progress, console=None) -> None:
        super().__init__(progress)
        self._console = console
        self._rich = self._task = None

    def start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        p = self.progress
        counts = (
            [DownloadColumn(), TransferSpeedColumn()]
            if p.unit == "B"
            else [MofNCompleteColumn(), TextColumn("{task.fields[status]}")]
        )
        self._rich = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            *counts,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console or Console(file=p.stream),
            redirect_stdout=False,
        )
        self._rich.start()
        self._task = self._rich.add_task(
            p.label, total=p.total, completed=p.completed, status=p.live_status()
        )

    def refresh(self) -> None:
        if self._rich is not None:
            p = self.progress
            self._rich.update(
                self._task, completed=p.completed, total=p.total, status=p.live_status()
            )

    def restart(self) -> None:
        if self._rich is not None:
            p = self.progress
            self._rich.reset(
                self._task,
                total=p.total,
                completed=p.completed,
                description=p.label,
                status=p.live_status(),
            )

    def note(self, message: str) -> None:
        if self._rich is None:
            super().note(message)
        else:
            self._rich.console.print(message, markup=False, highlight=False)

    def end(self, line: str | None) -> None:
        self.refresh()
        if line is not None:
            self.note(line)

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


class _Notebook(_Off):
    kind = "notebook"

    def __init__(self, progress: Progress, console=None) -> None:
        super().__init__(progress)
        self._bar = None

    def start(self) -> None:
        from tqdm.auto import tqdm

        p = self.progress
        self._bar = tqdm(
            total=p.total,
            desc=p.label,
            unit=p.unit,
            unit_scale=p.unit == "B",
            initial=p.completed,
            file=p.stream,
        )

    def refresh(self) -> None:
        if self._bar is not None:
            p = self.progress
            if p.failures or p.status:
                self._bar.set_postfix_str(p.live_status(), refresh=False)
            self._bar.update(p.completed - self._bar.n)

    def restart(self) -> None:
        if self._bar is not None:
            p = self.progress
            self._bar.reset(total=p.total)
            self._bar.set_description_str(p.label, refresh=False)
            self._bar.update(p.completed)

    def note(self, message: str) -> None:
        if self._bar is None:
            super().note(message)
        else:
            self._bar.write(message, file=self.progress.stream)

    def end(self, line: str | None) -> None:
        self.refresh()
        if line is not None:
            self.note(line)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_RENDERERS = {"off": _Off, "lines": _Lines, "live": _Live, "notebook": _Notebook}


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython is imported only when it already is)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            break
        n /= 1024
    return f"{n:.1f} {unit}"
