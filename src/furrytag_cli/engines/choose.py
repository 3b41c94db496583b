"""Choosing the engine for a bundle, device and wish: keras, lite, onnx, or auto."""

from collections.abc import Callable
from pathlib import Path

from furrytag_cli.core.console import notice
from furrytag_cli.core.errors import ConfigError
from furrytag_cli.engines.base import ENGINES, Engine
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.model.bundle import ONNX_WEIGHTS, TFLITE_WEIGHTS, WEIGHTS, Bundle


def own_engine(bundle: Bundle) -> str:
    """The engine that runs the bundle's own model file as it is, without converting it."""
    return {ONNX_WEIGHTS: "onnx", TFLITE_WEIGHTS: "lite"}.get(bundle.weights, "keras")


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
    """The engine for ``bundle``: ``engine`` is "keras", "lite", "onnx", or "auto" (lite
    on a CPU, keras on a GPU; for an exported bundle, the engine of its model file; on a
    CPU, before the model's first conversion is cached, keras while a background process
    converts it unless ``$FURRYTAG_BACKGROUND_CONVERSION`` is 0, see ``background.py``).
    ``notify`` (when not None) hears of a first conversion to LiteRT and, when the model
    cannot be converted, of the keras engine running it instead, with the reason.
    ``home`` is the cache home (the ``--cache-dir`` value) that conversions of bundles
    in the cache go to."""
    from furrytag_cli.engines.background import InterimEngine, failure_path
    from furrytag_cli.engines.background import enabled as background_enabled
    from furrytag_cli.engines.lite import QUANTIZE, LiteConversionError, LiteEngine, cache_path

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}; received {engine!r}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}; received {quantize!r}")
    if quantize != "none" and engine in ("keras", "onnx"):
        raise ConfigError("--quantize applies to the lite engine; drop it or use --engine lite")
    if bundle.kind == "native" and bundle.weights != WEIGHTS:
        return _exported(bundle, engine, embeddings=embeddings, device=device, quantize=quantize)
    if engine == "onnx":
        from furrytag_cli.engines.onnx import OnnxEngine

        return OnnxEngine(bundle, embeddings=embeddings, device=device)
    if engine == "keras" or (engine == "auto" and device == "gpu"):
        if quantize != "none" and notify is not None:
            notify(
                "--quantize applies to the lite engine; on a GPU the keras engine runs the "
                "model unquantized"
            )
        return KerasEngine(bundle, embeddings=embeddings, device=device)
    if engine == "auto":
        lite = LiteEngine.cached(bundle, embeddings=embeddings, quantize=quantize, home=home)
        if lite is not None:
            return lite
        failed = failure_path(cache_path(bundle, quantize, home))
        if failed.is_file():
            if notify is not None:
                reason = failed.read_text(encoding="utf-8").strip()
                notify(f"{reason}; using the keras engine instead")
            return KerasEngine(bundle, embeddings=embeddings, device=device)
        if background_enabled():
            return InterimEngine(
                bundle, embeddings=embeddings, quantize=quantize, notify=notify, home=home
            )
    try:
        return LiteEngine(
            bundle, embeddings=embeddings, quantize=quantize, notify=notify, home=home
        )
    except LiteConversionError as exc:
        if notify is not None:
            notify(f"{exc}; using the keras engine instead")
        return KerasEngine(bundle, embeddings=embeddings, device=device)


def _exported(bundle: Bundle, engine: str, *, embeddings: bool, device: str, quantize: str):
    """The engine of a bundle that holds an exported model file instead of model.keras."""
    own = own_engine(bundle)
    if engine not in ("auto", own):
        raise ConfigError(
            f"model {bundle.name!r} ({bundle.path}) holds {bundle.weights} only, which the "
            f"{engine} engine cannot run; use --engine {own} or --engine auto"
        )
    if own == "onnx":
        from furrytag_cli.engines.onnx import OnnxEngine

        return OnnxEngine(bundle, embeddings=embeddings, device=device)
    if quantize != "none":
        raise ConfigError(
            f"model {bundle.name!r} is an exported {TFLITE_WEIGHTS}, run as it is; drop --quantize"
        )
    from furrytag_cli.engines.lite import LiteEngine

    return LiteEngine(bundle, embeddings=embeddings)
