"""Importing TensorFlow the way furrytag wants it: quiet logs, chosen device, GPU memory growth.

Everything that needs TensorFlow gets it through ``tensorflow()`` so that its C++ log
spam is silenced before the first import, unless the user asked for it.
"""

import os
import sys
from contextlib import contextmanager

_DEVICES = ("auto", "cpu", "gpu")


def tensorflow():
    """Import and return the ``tensorflow`` module with quiet logs.

    TensorFlow's C++ runtime prints start-up notices (CUDA probing on machines without
    a GPU) straight to file descriptor 2 before any log setting applies; they are
    hidden during the first import unless ``FURRYTAG_DEBUG`` or ``TF_CPP_MIN_LOG_LEVEL``
    is set by the user.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet = not (os.environ.get("FURRYTAG_DEBUG") or "TF_CPP_MIN_LOG_LEVEL" in os.environ)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced(quiet):
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf


@contextmanager
def _stderr_silenced(enabled: bool):
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def configure_device(device: str = "auto") -> str:
    """Select the device for this process; return "cpu" or "gpu".

    Must run before TensorFlow touches a GPU. On GPUs memory growth is turned on so
    furrytag takes what it needs, not the whole card.
    """
    from furrytag_cli.core.errors import ConfigError

    if device not in _DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(_DEVICES)}; received {device!r}")
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise ConfigError(
            "--device gpu was asked for, but TensorFlow sees no GPU; use --device cpu"
        )
    try:
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
            return "cpu"
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        # Devices were already initialised by an earlier call in this process.
        pass
    return "gpu" if gpus and device != "cpu" else "cpu"
