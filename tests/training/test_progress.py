"""Training progress: the live bar on a terminal and the plain lines in a log."""

import io

import numpy as np
import pytest

from furrytag_cli.core.tfruntime import tensorflow

tensorflow()
import keras  # noqa: E402  (after the runtime settings)

from furrytag_cli.training.progress import TrainProgress, epoch_line  # noqa: E402


def fit_tiny(progress: TrainProgress, epochs: int = 2, initial_epoch: int = 0, steps: int = 6):
    """A real two-output Keras model fitted on random data, ``steps`` batches an epoch."""
    inputs = keras.Input((4,))
    outputs = {
        "species": keras.layers.Dense(3, activation="sigmoid", name="species")(inputs),
        "body": keras.layers.Dense(2, activation="sigmoid", name="body")(inputs),
    }
    model = keras.Model(inputs, outputs)
    metrics = {
        head: [keras.metrics.F1Score(average="micro", threshold=0.5, name="f1")] for head in outputs
    }
    model.compile("adam", loss="binary_crossentropy", metrics=metrics)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * steps, 4)).astype("float32")
    y = {
        "species": (rng.random((8 * steps, 3)) > 0.5).astype("float32"),
        "body": (rng.random((8 * steps, 2)) > 0.5).astype("float32"),
    }
    with progress:
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=epochs,
            initial_epoch=initial_epoch,
            validation_data=(x[:8], {k: v[:8] for k, v in y.items()}),
            callbacks=[progress],
            verbose=0,
        )


def test_plain_lines_give_one_summary_an_epoch_and_throttled_step_lines():
    stream = io.StringIO()
    fit_tiny(TrainProgress(6, live=False, stream=stream, interval=0.0))
    lines = stream.getvalue().splitlines()
    summaries = [line for line in lines if " s" in line and "val_loss" in line]
    assert [line.split(":")[0] for line in summaries] == ["epoch 1/2", "epoch 2/2"]
    assert "val F1 " in summaries[0] and "species 0." in summaries[0] and "body 0." in summaries[0]
    steps = [line for line in lines if "step " in line]
    assert "epoch 1/2: step 1/6, loss " in steps[0] and "left in the epoch" in steps[0]
    assert len(steps) == 12

    quiet = io.StringIO()
    fit_tiny(TrainProgress(6, live=False, stream=quiet, interval=3600.0))
    assert not [line for line in quiet.getvalue().splitlines() if "step " in line]
    assert quiet.getvalue().count("epoch ") == 2


def test_the_live_bar_draws_epochs_steps_and_loss_on_a_terminal():
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    progress = TrainProgress(6, live=True, console=console)
    fit_tiny(progress, epochs=3, initial_epoch=1)
    text = screen.getvalue()
    assert "Epoch 3/3" in text and "6/6" in text and "steps/s" in text and "loss " in text
    assert "epoch 2/3: loss " in text and "epoch 3/3: loss " in text
    assert "epoch 1/3" not in text


def test_a_resumed_epoch_counts_from_the_step_it_resumes_at():
    stream = io.StringIO()
    # An epoch of 10 steps resumed after 4: fit runs the 6 left.
    fit_tiny(TrainProgress(10, live=False, stream=stream, interval=0.0), epochs=1)
    steps = [line for line in stream.getvalue().splitlines() if "step " in line]
    assert steps[0].startswith("epoch 1/1: step 5/10") and steps[-1].startswith(
        "epoch 1/1: step 10/10"
    )


@pytest.mark.parametrize(
    "logs, expected",
    [
        ({"loss": 0.5}, "epoch 2/4: loss 0.5000, 3.0 s"),
        (
            {"loss": 0.5, "val_loss": 0.25, "val_species_f1": 0.5, "species_f1": 0.1},
            "epoch 2/4: loss 0.5000, val_loss 0.2500, val F1 species 0.500, 3.0 s",
        ),
    ],
)
def test_epoch_line(logs, expected):
    assert epoch_line(2, 4, logs, 3.0) == expected
