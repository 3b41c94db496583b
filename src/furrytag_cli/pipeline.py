"""tf.data pipelines. Inference: paths → header check → read → decode → preprocess
(parallel, order kept) → batch → prefetch.

A file whose header is rejected is recorded in ``rejected`` (index → reason) and never
enters the pipeline; a file that fails to decode is dropped by ``ignore_errors`` and
shows up as a gap in the indices, which the caller diagnoses. No list of decoded
images exists anywhere, so memory stays flat in the number of files.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from furrytag_cli.decode import MAX_PIXELS, ROUTE_TF, decode_with_pillow, inspect
from furrytag_cli.errors import ImageError
from furrytag_cli.preprocess import PreprocessSpec, preprocess_image
from furrytag_cli.tfruntime import tensorflow


tf = tensorflow()


def decode_tf(data, spec: PreprocessSpec):
    """TF decode of JPEG/PNG bytes to uint8 RGB per ``spec``."""
    if spec.decoder == "legacy":
        # Exactly the original: decode_jpeg (which also reads PNG), alpha dropped.
        return tf.io.decode_jpeg(data, channels=3)
    if spec.alpha == "drop":
        return tf.io.decode_image(data, channels=3, expand_animations=False)
    rgba = tf.cast(tf.io.decode_image(data, channels=4, expand_animations=False), tf.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return tf.cast(tf.round(rgb), tf.uint8)


def inference_dataset(
    paths: Sequence[Path],
    spec: PreprocessSpec,
    *,
    batch_size: int,
    rejected: dict[int, str],
    max_pixels: int = MAX_PIXELS,
):
    """Batches of ``(indices int64 (B,), images float32 (B, S, S, 3))`` in input order."""

    def items():
        for index, path in enumerate(paths):
            try:
                route = inspect(Path(path), spec, max_pixels)
            except ImageError as exc:
                rejected[index] = str(exc)
                continue
            yield index, os.fsencode(path), route

    def pillow(path_bytes):
        return decode_with_pillow(Path(os.fsdecode(path_bytes)), spec)

    def load(index, path, route):
        image = tf.cond(
            tf.equal(route, ROUTE_TF),
            lambda: decode_tf(tf.io.read_file(path), spec),
            lambda: tf.numpy_function(pillow, [path], tf.uint8, stateful=False),
        )
        image = tf.ensure_shape(image, [None, None, 3])
        return index, preprocess_image(image, spec)

    dataset = tf.data.Dataset.from_generator(
        items,
        output_signature=(
            tf.TensorSpec((), tf.int64),
            tf.TensorSpec((), tf.string),
            tf.TensorSpec((), tf.int32),
        ),
    )
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
