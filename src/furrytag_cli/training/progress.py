"""Training progress for people: a live rich bar on a terminal, plain lines in a log
(both rendered by ``core.progress``).

On a terminal the bar shows the epoch, steps done of the epoch, the running loss,
steps/s and the ETA, with one summary line per finished epoch printed above it. When
stderr is a file or a pipe (``nohup``, a cluster's log) there is one line per epoch plus
a progress line at most every ``LOG_INTERVAL`` seconds, so long epochs still show life
without filling the log.
"""

import time
from collections.abc import Mapping

import keras

from furrytag_cli.core.progress import Progress

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
    """Keras callback showing progress over the whole run (one ``fit`` call an epoch),
    rendered by ``core.progress``: each epoch is a pass of the bar.

    ``steps`` is the number of steps in a full epoch; a resumed epoch starts part way.
    ``live`` picks the rich bar (on ``console``) over plain lines (on ``stream``).
    """

    def __init__(
        self, steps: int, *, live: bool, console=None, stream=None, interval: float = LOG_INTERVAL
    ) -> None:
        super().__init__()
        self.steps = steps
        self._bar = Progress(
            steps,
            "Training",
            "step",
            renderer="live" if live else "lines",
            stream=stream,
            console=console,
            interval=interval,
        )
        self._epoch = 0
        self._status = ""
        self._started = 0.0

    def __enter__(self) -> "TrainProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def note(self, message: str) -> None:
        """A line for people, above the bar when there is one."""
        self._bar.note(message)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch + 1
        self._started = time.perf_counter()
        where = f"{self._epoch}/{self.params['epochs']}"
        self._bar.restart(
            self.steps,
            self.steps - self.params["steps"],
            label=f"Epoch {where}",
            line=f"epoch {where}: step {{done}}/{{total}}, {{status}}, about {{left}} left in "
            "the epoch",
        )

    def on_train_batch_end(self, batch, logs=None) -> None:
        rate = (batch + 1) / max(time.perf_counter() - self._started, 1e-9)
        loss = f"loss {logs['loss']:.4f}, " if logs and "loss" in logs else ""
        self._status = f"{loss}{rate:.2f} steps/s"
        self._bar.advance(status=self._status)

    def on_test_begin(self, logs=None) -> None:
        # The epoch's last loss and rate stay in view while validation runs.
        self._bar.set(status=f"{self._status}, validating")

    def on_epoch_end(self, epoch, logs=None) -> None:
        seconds = time.perf_counter() - self._started
        self._bar.end(epoch_line(epoch + 1, self.params["epochs"], logs or {}, seconds))
