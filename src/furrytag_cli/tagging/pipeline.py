"""tf.data pipelines. Inference: paths → header check → read → decode → preprocess
(parallel, order kept) → batch → prefetch.

A file whose header is rejected is recorded in ``rejected`` (index → reason) and never
enters the pipeline; a file that fails to decode is dropped by ``ignore_errors`` and
shows up as a gap in the indices, which the caller fills with ``fallback_input``. No list of decoded
images exists anywhere, so memory stays flat in the number of files.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from furrytag_cli.core.errors import ImageError
from furrytag_cli.core.machine import cpu_threads
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_image
from furrytag_cli.tagging.decode import (
    JPEG_SCALES,
    MAX_PIXELS,
    ROUTE_TF,
    ROUTE_TF_ALPHA,
    decode_with_pillow,
    inspect,
)

tf = tensorflow()


def decode_tf(data, spec: PreprocessSpec, scale=0):
    """TF decode of opaque JPEG/PNG bytes to uint8 RGB; JPEGs at ``JPEG_SCALES[scale]``."""
    if spec.decoder == "legacy":
        # Exactly the original: decode_jpeg (which also reads PNG), alpha dropped.
        return tf.io.decode_jpeg(data, channels=3)
    full = lambda: tf.io.decode_image(data, channels=3, expand_animations=False)  # noqa: E731
    reduced = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in JPEG_SCALES[1:]]
    return tf.switch_case(scale, [full, *reduced])


def composite_on_white(data, spec: PreprocessSpec):
    """Decode RGBA PNG bytes, resize, and composite on white: float32 (S, S, 3) in 0..255.

    Resizing is linear, so resizing the premultiplied colour and the alpha and then
    compositing equals compositing first, at a fraction of the cost for large images.
    """
    rgba = tf.cast(tf.io.decode_image(data, channels=4, expand_animations=False), tf.float32)
    alpha = rgba[..., 3:] / 255.0
    small = tf.image.resize(
        tf.concat([rgba[..., :3] * alpha, alpha], -1),
        [spec.size, spec.size],
        antialias=spec.antialias,
    )
    return small[..., :3] + 255.0 * (1.0 - small[..., 3:])


def fallback_input(path: Path, spec: PreprocessSpec):
    """The model input (float32 (S, S, 3)) of a file the pipeline dropped because
    TensorFlow could not decode it, through Pillow; raises ImageError with the reason."""
    return preprocess_image(tf.convert_to_tensor(decode_with_pillow(path, spec)), spec)


def inference_dataset(
    paths: Sequence[Path],
    spec: PreprocessSpec,
    *,
    batch_size: int,
    rejected: dict[int, str],
    max_pixels: int = MAX_PIXELS,
    overlap: bool = False,
):
    """Batches of ``(indices int64 (B,), images float32 (B, S, S, 3))`` in input order.

    Decoding runs on every core. With ``overlap`` (for a model on a GPU, which leaves
    the CPU free) batches are prefetched while the model runs. Without it (a model on
    the CPU, which keeps every core busy) a batch is decoded only when it is asked for,
    so decoding and the model take turns on the cores instead of competing for them:
    both use thread pools that spin while they wait for work, and overlapping them made
    tagging slower and erratic (up to half as fast).
    """

    def items():
        for index, path in enumerate(paths):
            try:
                route, scale = inspect(Path(path), spec, max_pixels)
            except ImageError as exc:
                rejected[index] = str(exc)
                continue
            yield index, os.fsencode(path), route, scale

    def pillow(path_bytes):
        return decode_with_pillow(Path(os.fsdecode(path_bytes)), spec)

    def pillow_input(path):
        image = tf.numpy_function(pillow, [path], tf.uint8, stateful=False)
        return preprocess_image(tf.ensure_shape(image, [None, None, 3]), spec)

    def load(index, path, route, scale):
        # Every branch yields the model input, float32 (S, S, 3).
        image = tf.switch_case(
            route,
            {
                ROUTE_TF: lambda: preprocess_image(
                    decode_tf(tf.io.read_file(path), spec, scale), spec
                ),
                # Resizing an image already S×S is the identity; preprocess_image then normalises.
                ROUTE_TF_ALPHA: lambda: preprocess_image(
                    composite_on_white(tf.io.read_file(path), spec), spec
                ),
            },
            default=lambda: pillow_input(path),
        )
        return index, tf.ensure_shape(image, [spec.size, spec.size, 3])

    dataset = tf.data.Dataset.from_generator(
        items,
        output_signature=(
            tf.TensorSpec((), tf.int64),
            tf.TensorSpec((), tf.string),
            tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.int32),
        ),
    )
    threads = cpu_threads()
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    if overlap:
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return (
            dataset.ignore_errors()
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )
    # No prefetching, injected or autotuned: the parallel map runs at most `threads` images ahead.
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    dataset = dataset.map(load, num_parallel_calls=threads, deterministic=True)
    return dataset.ignore_errors().batch(batch_size).with_options(options)
