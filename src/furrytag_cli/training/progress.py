"""Training progress for people: a live rich bar on a terminal, plain lines in a log.

On a terminal the bar shows the epoch, steps done of the epoch, the running loss,
steps/s and the ETA, with one summary line per finished epoch printed above it. When
stderr is a file or a pipe (``nohup``, a cluster's log) there is one line per epoch plus
a progress line at most every ``LOG_INTERVAL`` seconds, so long epochs still show life
without filling the log.
"""

import sys
import time
from collections.abc import Mapping

import keras

LOG_INTERVAL = 60.0


def epoch_line(epoch: int, epochs: int, logs: Mapping, seconds: float) -> str:
    """``epoch 2/10: loss 0.4120, val_loss 0.3981, val F1 action 0.412 body 0.520, 41.2 s``."""
    parts = [f"{key} {logs[key]:.4f}" for key in ("loss", "val_loss") if key in logs]
    f1 = [
        f"{key[4:-3]} {value:.3f}"
        for key, value in logs.items()
        if key.startswith("val_") and key.endswith("_f1")
    ]
    if f1:
        parts.append("val F1 " + " ".join(f1))
    return f"epoch {epoch}/{epochs}: " + ", ".join([*parts, f"{seconds:.1f} s"])


class TrainProgress(keras.callbacks.Callback):
    """Keras callback showing progress over the whole run (one ``fit`` call an epoch).

    ``steps`` is the number of steps in a full epoch; a resumed epoch starts part way.
    ``live`` picks the rich bar (on ``console``) over plain lines (on ``stream``).
    """

    def __init__(
        self, steps: int, *, live: bool, console=None, stream=None, interval: float = LOG_INTERVAL
    ) -> None:
        super().__init__()
        self.steps, self.live, self.interval = steps, live, interval
        self.stream = stream or sys.stderr
        self._console = console
        self._progress = self._task = None
        self._epoch = self._done = 0
        self._status = ""
        self._started = self._last_line = 0.0

    def __enter__(self) -> "TrainProgress":
        if self.live:
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
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console or Console(file=sys.stderr),
                redirect_stdout=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("Training", total=self.steps, status="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def note(self, message: str) -> None:
        """A line for people, above the bar when there is one."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch + 1
        self._done = self.steps - self.params["steps"]
        self._started = self._last_line = time.perf_counter()
        if self._progress is not None:
            self._progress.reset(
                self._task,
                total=self.steps,
                completed=self._done,
                description=f"Epoch {self._epoch}/{self.params['epochs']}",
                status="",
            )

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._done += 1
        now = time.perf_counter()
        rate = (batch + 1) / max(now - self._started, 1e-9)
        loss = f"loss {logs['loss']:.4f}, " if logs and "loss" in logs else ""
        status = self._status = f"{loss}{rate:.2f} steps/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=self._done, status=status)
        elif now - self._last_line >= self.interval:
            self._last_line = now
            left = (self.steps - self._done) / rate
            self.note(
                f"epoch {self._epoch}/{self.params['epochs']}: step {self._done}/{self.steps}"
                f", {status}, about {_duration(left)} left in the epoch"
            )

    def on_test_begin(self, logs=None) -> None:
        if self._progress is not None:
            # The epoch's last loss and rate stay in view while validation runs.
            self._progress.update(self._task, status=f"{self._status}, validating", refresh=True)

    def on_epoch_end(self, epoch, logs=None) -> None:
        seconds = time.perf_counter() - self._started
        self.note(epoch_line(epoch + 1, self.params["epochs"], logs or {}, seconds))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
