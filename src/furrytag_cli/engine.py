"""Running a bundle's model on batches of preprocessed images.

An engine takes a float32 batch (N, S, S, 3) already preprocessed per the bundle's
spec and returns per-head score arrays (and the embedding when asked). Two engines
share that interface: ``KerasEngine`` (TensorFlow, any device) and ``LiteEngine``
(LiteRT with XNNPACK, CPU; see ``lite.py``). ``load_engine`` picks one.
"""

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from furrytag_cli.bundle import WEIGHTS, Bundle, check_model_matches
from furrytag_cli.categories import RATING_HEAD
from furrytag_cli.errors import BundleError, ConfigError, FurrytagError

ENGINES = ("auto", "keras", "lite")
EMBEDDING = "embedding"
_GROUPED_CONV = "does not support grouped convolutions"


@dataclass
class Scores:
    """Scores of one batch: ``heads[head]`` is (N, tags); ``rating`` is (N,)."""

    heads: dict[str, np.ndarray]
    rating: np.ndarray
    embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rating)

    @classmethod
    def from_named(cls, named: Mapping, heads: Sequence[str], *, embeddings: bool) -> "Scores":
        """Scores from arrays keyed by head name, ``rating`` (N, 1) and ``embedding``."""
        return cls(
            heads={h: np.asarray(named[h]) for h in heads},
            rating=np.asarray(named[RATING_HEAD])[:, 0],
            embedding=np.asarray(named[EMBEDDING]) if embeddings else None,
        )


def named_outputs(outputs, heads: Sequence[str], *, embeddings: bool) -> dict:
    """A model's outputs keyed by name, whether it returns a dict (native bundles) or
    a list ``[heads..., rating, (embedding)]`` (legacy models, see ``legacy.py``)."""
    if isinstance(outputs, Mapping):
        return dict(outputs)
    values = list(outputs)
    named = dict(zip(heads, values))
    named[RATING_HEAD] = values[len(heads)]
    if embeddings:
        named[EMBEDDING] = values[-1]
    return named


class KerasEngine:
    """Runs native bundles with Keras 3 and legacy SavedModels with tf_keras."""

    name = "keras"

    def __init__(self, bundle: Bundle, *, embeddings: bool = False):
        from furrytag_cli.tfruntime import tensorflow

        tf = tensorflow()
        self.bundle = bundle
        self.embeddings = embeddings
        self._heads = bundle.categories.head_names
        model = load_keras_model(bundle, embeddings=embeddings)
        self._model = model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, batch) -> Scores:
        try:
            outputs = self._call(batch)
        except Exception as exc:
            if _GROUPED_CONV in str(exc):
                raise FurrytagError(
                    f"model {self.bundle.name!r} uses grouped convolutions, which TensorFlow's "
                    "CPU kernels cannot run; use --engine lite (LiteRT runs them on a CPU) or "
                    "run it on a GPU (--device gpu)"
                ) from None
            raise
        named = named_outputs(outputs, self._heads, embeddings=self.embeddings)
        return Scores.from_named({k: v.numpy() for k, v in named.items()}, self._heads,
                                 embeddings=self.embeddings)


def load_keras_model(bundle: Bundle, *, embeddings: bool):
    """The bundle's Keras model (tf_keras for legacy SavedModels); with ``embeddings``
    it also outputs the feature vector."""
    if bundle.kind == "legacy":
        from furrytag_cli.legacy import load_legacy_model

        return load_legacy_model(bundle, embeddings=embeddings)
    return _load_native(bundle, embeddings=embeddings)


def _load_native(bundle: Bundle, *, embeddings: bool):
    import keras

    try:
        model = keras.saving.load_model(bundle.path / WEIGHTS, compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise BundleError(
                f"{bundle.path / WEIGHTS} contains code (e.g. a Lambda layer) that furrytag will not "
                "run: Keras safe mode refused it. Only load models from sources you trust; "
                "furrytag does not turn safe mode off"
            ) from None
        raise BundleError(f"cannot load {bundle.path / WEIGHTS}: {exc}") from None
    except Exception as exc:
        raise BundleError(f"cannot load {bundle.path / WEIGHTS}: {exc}") from None
    check_model_matches(bundle, model)
    if not embeddings:
        return model
    outputs = dict(model.output)
    try:
        outputs[EMBEDDING] = model.get_layer(EMBEDDING).output
    except ValueError:
        raise BundleError(f"{bundle.path}: the model has no 'embedding' layer") from None
    return keras.Model(model.inputs, outputs)


def notice(message: str) -> None:
    """Print a one-line notice on stderr (the default ``notify`` of engines)."""
    print(f"furrytag: {message}", file=sys.stderr, flush=True)


def load_engine(
    bundle: Bundle,
    *,
    embeddings: bool = False,
    engine: str = "keras",
    device: str = "cpu",
    quantize: str = "none",
    notify: Callable[[str], None] | None = notice,
):
    """The engine for ``bundle``: ``engine`` is "keras", "lite", or "auto" (lite on a
    CPU, keras on a GPU). ``notify`` (when not None) hears of a first conversion to
    LiteRT and, when the model cannot be converted, of the keras engine running it
    instead, with the reason."""
    from furrytag_cli.lite import QUANTIZE, LiteConversionError, LiteEngine

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}; received {engine!r}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}; received {quantize!r}")
    if quantize != "none" and engine == "keras":
        raise ConfigError("--quantize applies to the lite engine; drop it or use --engine lite")
    if engine == "keras" or (engine == "auto" and device == "gpu"):
        if quantize != "none" and notify is not None:
            notify("--quantize applies to the lite engine; on a GPU the keras engine runs the "
                   "model unquantized")
        return KerasEngine(bundle, embeddings=embeddings)
    try:
        return LiteEngine(bundle, embeddings=embeddings, quantize=quantize, notify=notify)
    except LiteConversionError as exc:
        if notify is not None:
            notify(f"{exc}; using the keras engine instead")
        return KerasEngine(bundle, embeddings=embeddings)
