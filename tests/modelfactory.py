"""Builders of tiny real models in furrytag's native format and in the original's format."""

import zipfile
from pathlib import Path

import numpy as np

from furrytag_cli.model.categories import HEADS, CategorySet

LEGACY_SIZE = 32
LEGACY_NAME = "efficientnet_v2_b3_300_2c"
# The original's head order in the SavedModel; furrytag must map by name, not position.
LEGACY_HEAD_ORDER = ("identity", "species", "body", "clothing", "action", "rating")


def make_native_bundle(
    path: Path, size: int = 32, seed: int = 7, categories: CategorySet | None = None
) -> Path:
    """Build and save a tiny native bundle at ``path`` (shipped categories by default)."""
    import keras

    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.network import build_model
    from furrytag_cli.model.preprocess import PreprocessSpec

    keras.utils.set_random_seed(seed)
    categories = categories or CategorySet.load()
    model = build_model("tiny", size, categories)
    bundle = Bundle(
        path=path,
        kind="native",
        name="tiny-test",
        backbone="tiny",
        categories=categories,
        preprocess=PreprocessSpec(size=size),
    )
    save_bundle(model, path, bundle)
    return path


def make_normalizing_bundle(path: Path, size: int = 32, seed: int = 5) -> Path:
    """A tiny native bundle whose first layer is a Keras ``Normalization`` with fixed
    statistics, as the EfficientNetV2 backbones have (their constants must stay in an
    exported graph)."""
    import keras

    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.network import EMBEDDING
    from furrytag_cli.model.preprocess import PreprocessSpec

    keras.utils.set_random_seed(seed)
    categories = CategorySet.load()
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0, 2500.0, 4900.0])(
        image
    )
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Identity(name=EMBEDDING)(x)
    widths = {h: len(t) for h, t in categories.heads.items()} | {"rating": 1}
    outputs = {
        head: keras.layers.Dense(width, activation="sigmoid", name=f"{head}_output")(features)
        for head, width in widths.items()
    }
    bundle = Bundle(
        path=path,
        kind="native",
        name="normalizing-test",
        backbone="tiny",
        categories=categories,
        preprocess=PreprocessSpec(size=size),
    )
    save_bundle(keras.Model(image, outputs), path, bundle)
    return path


def make_legacy_saved_model(
    target: Path,
    size: int = LEGACY_SIZE,
    seed: int = 11,
    *,
    grouped: bool = False,
    batchnorm: bool = False,
    unstable: bool = False,
) -> Path:
    """Write a SavedModel in the original's exact format to ``target``.

    A tf_keras functional model: ``img_input`` → ``feature_layer`` (a SavedModel wrapped
    by TF-Hub's KerasLayer, as the original did) → per head ``<head>_hidden_layer``
    Dense(128) → ``<head>_output`` sigmoid. ``grouped`` adds a grouped convolution to
    the features, as ConvNeXt's depthwise ones; ``batchnorm`` builds them as the
    original's EfficientNet does (see ``_efficientnet_like``). ``unstable`` makes every
    score the difference of two large, nearly equal sums, so that it moves when the
    input changes by one rounding step: a model no conversion can reproduce.
    """
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    feature_src = target.parent / (target.name + "-feature-src")
    inp = tf_keras.Input((size, size, 3))
    if batchnorm:
        features = _efficientnet_like(tf_keras, inp, seed)
    else:
        x = tf_keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
        x = tf_keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
        if grouped:
            x = tf_keras.layers.Conv2D(16, 7, groups=16, padding="same")(x)
        features = tf_keras.Model(inp, tf_keras.layers.GlobalAveragePooling2D()(x))
    tf.saved_model.save(features, str(feature_src))

    categories = CategorySet.load()
    widths = {h: len(categories.tags(h)) for h in HEADS} | {"rating": 1}
    image = tf_keras.Input((size, size, 3), name="img_input")
    features = hub.KerasLayer(str(feature_src), trainable=False, name="feature_layer")(image)
    outputs = []
    for head in LEGACY_HEAD_ORDER:
        hidden = tf_keras.layers.Dense(128, activation="relu", name=f"{head}_hidden_layer")(
            features
        )
        outputs.append(
            tf_keras.layers.Dense(widths[head], activation="sigmoid", name=f"{head}_output")(hidden)
        )
    model = tf_keras.Model(image, outputs)
    # Random biases so that scores spread around 0.5 and tags come and go.
    for layer in model.layers:
        if layer.name.endswith("_output"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 8, np.random.default_rng(seed).normal(0, 1, bias.shape)])
    if unstable:
        _cancelling_heads(model, seed)
    model.save(str(target))
    return target


def _efficientnet_like(tf_keras, inp, seed: int):
    """A small backbone built as EfficientNet's blocks are: convolutions without bias,
    each followed by batch normalisation (its moving statistics set far from a batch's
    own, so that a graph normalising with a batch's statistics, as in training, gives
    other features), swish, a depthwise convolution, squeeze and
    excitation, and a residual connection."""
    layers = tf_keras.layers
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = layers.Activation("swish")(layers.BatchNormalization()(y))
    gate = layers.GlobalAveragePooling2D(keepdims=True)(y)
    gate = layers.Conv2D(4, 1, activation="swish")(gate)
    y = layers.Multiply()([y, layers.Conv2D(16, 1, activation="sigmoid")(gate)])
    y = layers.BatchNormalization()(layers.Conv2D(16, 1, use_bias=False)(y))
    x = layers.Add()([x, y])
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))
    model = tf_keras.Model(inp, layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            width = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, width),
                    rng.normal(0, 0.2, width),
                    rng.normal(0, 0.5, width),
                    rng.uniform(0.3, 3.0, width),
                ]
            )
    return model


def _cancelling_heads(model, seed: int, scale: float = 1e6) -> None:
    """Hidden units in pairs with the same large positive weights (plus a small part in
    the first of each pair), output weights of opposite signs on each pair: a score's
    logit is the small part, left over from sums of size ``scale``."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_hidden_layer"):
            kernel, bias = layer.get_weights()
            big = rng.uniform(1, 2, (kernel.shape[0], kernel.shape[1] // 2)) * scale
            kernel = np.repeat(big, 2, axis=1)
            kernel[:, ::2] += rng.normal(0, 1, big.shape)
            layer.set_weights([kernel, np.zeros_like(bias)])
        elif layer.name.endswith("_output"):
            kernel, bias = layer.get_weights()
            pairs = np.repeat(np.abs(kernel[::2]), 2, axis=0)
            signs = np.tile([1.0, -1.0], kernel.shape[0] // 2)[:, None]
            layer.set_weights([pairs * signs, bias])


def make_legacy_zip(folder: Path, name: str = LEGACY_NAME) -> Path:
    """Zip a legacy SavedModel inside a top folder, as the original's releases are."""
    saved = make_legacy_saved_model(folder / "build" / name)
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(saved.rglob("*")):
            if file.is_file():
                zf.write(file, f"{name}/{file.relative_to(saved)}")
    return archive
