"""Progress for batch work on a terminal: files done/total, images/s, ETA, failures."""

import sys

import typer

from furrytag_cli.core.console import printable


class BatchProgress:
    """A rich progress bar on stderr when ``enabled``; otherwise silent."""

    def __init__(self, total: int, *, enabled: bool, label: str = "Tagging"):
        self.total = total
        self.enabled = enabled
        self.label = label
        self.failed = 0
        self._progress = None

    def __enter__(self) -> "BatchProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s"),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                redirect_stdout=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, rate="-", failed=0)
        return self

    def update(self, items) -> None:
        """Advance by one finished batch; print its failures above the bar."""
        for item in items:
            if not item.ok:
                self.failed += 1
                self.note(f"furrytag: skipped {printable(item.path)}: {printable(item.reason)}")
        if self._progress is not None:
            self._progress.update(self._task, failed=self.failed)
        self.advance(len(items))

    def advance(self, count: int) -> None:
        """Advance by ``count`` finished images that cannot fail (e.g. from TFRecords)."""
        if self._progress is not None:
            speed = self._progress.tasks[0].speed
            self._progress.update(self._task, advance=count, rate=f"{speed:.1f}" if speed else "-")

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            typer.echo(message, err=True)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
