"""The Keras engine: native bundles with Keras 3, legacy SavedModels with tf_keras, on
any device TensorFlow sees."""

from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.engines.base import Scores, named_outputs
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.loading import load_keras_model

_GROUPED_CONV = "does not support grouped convolutions"


class KerasEngine:
    """Runs native bundles with Keras 3 and legacy SavedModels with tf_keras."""

    name = "keras"

    def __init__(self, bundle: Bundle, *, embeddings: bool = False, device: str = "cpu"):
        from furrytag_cli.core.tfruntime import configure_device, tensorflow

        tf = tensorflow()
        if device == "cpu":
            # Hides GPUs from TensorFlow when the CPU was chosen without importing it.
            configure_device("cpu")
        self.bundle = bundle
        self.embeddings = embeddings
        self.device = device
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
        return Scores.from_named(
            {k: v.numpy() for k, v in named.items()}, self._heads, embeddings=self.embeddings
        )
