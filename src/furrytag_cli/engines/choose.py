"""Choosing the engine for a bundle, device and wish: keras, lite, or auto."""

from collections.abc import Callable
from pathlib import Path

from furrytag_cli.core.console import notice
from furrytag_cli.core.errors import ConfigError
from furrytag_cli.engines.base import ENGINES, Engine
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.model.bundle import Bundle


def load_engine(
    bundle: Bundle,
    *,
    embeddings: bool = False,
    engine: str = "keras",
    device: str = "cpu",
    quantize: str = "none",
    notify: Callable[[str], None] | None = notice,
    home: Path | None = None,
) -> Engine:
    """The engine for ``bundle``: ``engine`` is "keras", "lite", or "auto" (lite on a
    CPU, keras on a GPU). ``notify`` (when not None) hears of a first conversion to
    LiteRT and, when the model cannot be converted, of the keras engine running it
    instead, with the reason. ``home`` is the cache home (the ``--cache-dir`` value) that
    conversions of bundles in the cache go to."""
    from furrytag_cli.engines.lite import QUANTIZE, LiteConversionError, LiteEngine

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}; received {engine!r}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}; received {quantize!r}")
    if quantize != "none" and engine == "keras":
        raise ConfigError("--quantize applies to the lite engine; drop it or use --engine lite")
    if engine == "keras" or (engine == "auto" and device == "gpu"):
        if quantize != "none" and notify is not None:
            notify(
                "--quantize applies to the lite engine; on a GPU the keras engine runs the "
                "model unquantized"
            )
        return KerasEngine(bundle, embeddings=embeddings, device=device)
    try:
        return LiteEngine(
            bundle, embeddings=embeddings, quantize=quantize, notify=notify, home=home
        )
    except LiteConversionError as exc:
        if notify is not None:
            notify(f"{exc}; using the keras engine instead")
        return KerasEngine(bundle, embeddings=embeddings, device=device)
