"""Running a bundle's model on batches of preprocessed images.

An engine takes a float32 batch (N, S, S, 3) already preprocessed per the bundle's
spec and returns per-head score arrays (and the embedding when asked).
"""

from dataclasses import dataclass

import numpy as np

from furrytag_cli.bundle import WEIGHTS, Bundle, check_model_matches
from furrytag_cli.errors import BundleError, FurrytagError

_GROUPED_CONV = "does not support grouped convolutions"


@dataclass
class Scores:
    """Scores of one batch: ``heads[head]`` is (N, tags); ``rating`` is (N,)."""

    heads: dict[str, np.ndarray]
    rating: np.ndarray
    embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rating)


class KerasEngine:
    """Runs native bundles with Keras 3 and legacy SavedModels with tf_keras."""

    name = "keras"

    def __init__(self, bundle: Bundle, *, embeddings: bool = False):
        from furrytag_cli.tfruntime import tensorflow

        tf = tensorflow()
        self.bundle = bundle
        self.embeddings = embeddings
        self._heads = bundle.categories.head_names
        if bundle.kind == "legacy":
            from furrytag_cli.legacy import load_legacy_model

            model = load_legacy_model(bundle, embeddings=embeddings)
        else:
            model = _load_native(bundle, embeddings=embeddings)
        self._model = model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, batch) -> Scores:
        try:
            outputs = self._call(batch)
        except Exception as exc:
            if _GROUPED_CONV in str(exc):
                raise FurrytagError(
                    f"model {self.bundle.name!r} uses grouped convolutions, which TensorFlow's "
                    "CPU kernels cannot run; run it on a GPU (--device gpu)"
                ) from None
            raise
        if isinstance(outputs, dict):
            heads = {h: outputs[h].numpy() for h in self._heads}
            rating = outputs["rating"].numpy()[:, 0]
            embedding = outputs["embedding"].numpy() if self.embeddings else None
        else:
            values = [o.numpy() for o in outputs]
            heads = dict(zip(self._heads, values))
            rating = values[len(self._heads)][:, 0]
            embedding = values[-1] if self.embeddings else None
        return Scores(heads=heads, rating=rating, embedding=embedding)


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
        outputs["embedding"] = model.get_layer("embedding").output
    except ValueError:
        raise BundleError(f"{bundle.path}: the model has no 'embedding' layer") from None
    return keras.Model(model.inputs, outputs)


def load_engine(bundle: Bundle, *, embeddings: bool = False) -> KerasEngine:
    """The engine for ``bundle``."""
    return KerasEngine(bundle, embeddings=embeddings)
