"""The multi-head Keras model: a backbone's pooled features → one head per category.

Every model takes float32 RGB images in [0, 255] of shape (S, S, 3) (the backbones
normalise internally) and returns a dict: one sigmoid vector per multi-label head and
a one-unit sigmoid ``rating``. The pooled feature vector is the layer ``embedding``.
"""

from dataclasses import dataclass

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.schema import did_you_mean
from furrytag_cli.model.categories import RATING_HEAD, CategorySet

# The layer whose output is an image's feature vector (``tag --embeddings``).
EMBEDDING = "embedding"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone from ``keras.applications``."""

    constructor: str
    default_size: int


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_v2_b0": BackboneSpec("EfficientNetV2B0", 224),
    "efficientnet_v2_b1": BackboneSpec("EfficientNetV2B1", 240),
    "efficientnet_v2_b2": BackboneSpec("EfficientNetV2B2", 260),
    "efficientnet_v2_b3": BackboneSpec("EfficientNetV2B3", 300),
    "efficientnet_v2_s": BackboneSpec("EfficientNetV2S", 384),
    "efficientnet_v2_m": BackboneSpec("EfficientNetV2M", 384),
    "mobilenet_v3_small": BackboneSpec("MobileNetV3Small", 224),
    "mobilenet_v3_large": BackboneSpec("MobileNetV3Large", 224),
    "convnext_tiny": BackboneSpec("ConvNeXtTiny", 224),
    "tiny": BackboneSpec("", 64),
}

HIDDEN_UNITS = 128


def output_name(head: str) -> str:
    """The name of a head's output layer."""
    return f"{head}_output"


def build_model(
    backbone: str,
    input_size: int,
    categories: CategorySet,
    *,
    weights: str | None = None,
    hidden_units: int = HIDDEN_UNITS,
    dropout: float = 0.0,
):
    """Build the multi-head model.

    ``weights`` is "imagenet", a path to a backbone weights file, or None for random
    initialisation. "tiny" is a small convolutional backbone for tests and CPU trials.
    """
    from furrytag_cli.core.tfruntime import tensorflow

    tensorflow()
    import keras

    if backbone not in BACKBONES:
        raise ConfigError(
            f"unknown backbone {backbone!r}{did_you_mean(backbone, BACKBONES)}; "
            f"known backbones: {', '.join(BACKBONES)}"
        )
    if input_size < 32:
        raise ConfigError(f"input_size must be at least 32; received input_size={input_size}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    features = _backbone(keras, backbone, input_size, weights)(inputs)
    features = keras.layers.Identity(name=EMBEDDING)(features)
    if dropout:
        features = keras.layers.Dropout(dropout, name="embedding_dropout")(features)
    outputs = {}
    widths = {**{h: len(t) for h, t in categories.heads.items()}, RATING_HEAD: 1}
    for head, width in widths.items():
        hidden = keras.layers.Dense(hidden_units, activation="relu", name=f"{head}_hidden")(
            features
        )
        outputs[head] = keras.layers.Dense(
            width, activation="sigmoid", dtype="float32", name=output_name(head)
        )(hidden)
    return keras.Model(inputs, outputs, name=f"furrytag_{backbone}")


def _backbone(keras, backbone: str, input_size: int, weights: str | None):
    if backbone == "tiny":
        if weights not in (None, "none"):
            raise ConfigError("the tiny backbone has no pretrained weights; use weights: none")
        return keras.Sequential(
            [
                keras.layers.Rescaling(1 / 255.0),
                keras.layers.Conv2D(16, 3, strides=2, activation="relu", padding="same"),
                keras.layers.Conv2D(32, 3, strides=2, activation="relu", padding="same"),
                keras.layers.Conv2D(64, 3, strides=2, activation="relu", padding="same"),
                keras.layers.GlobalAveragePooling2D(),
            ],
            name="backbone",
        )
    constructor = getattr(keras.applications, BACKBONES[backbone].constructor)
    weights = None if weights in (None, "none") else weights
    try:
        model = constructor(
            include_top=False,
            weights=weights,
            input_shape=(input_size, input_size, 3),
            pooling="avg",
            include_preprocessing=True,
        )
    except Exception as exc:
        if weights is None:
            raise
        raise ConfigError(
            f"could not load {weights!r} weights for backbone {backbone!r} ({exc}). "
            "ImageNet weights are downloaded from the internet on first use; when offline, "
            "set `weights: none` in the config or give a local weights file path"
        ) from None
    model.name = "backbone"
    return model
