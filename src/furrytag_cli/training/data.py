"""Training and validation input pipelines over the TFRecord shards, with augmentation.

Every random choice is seeded by the run seed and the epoch (and, streaming, the element
index), so an epoch's batches are the same whatever the parallelism, and a resumed run
that skips the batches already trained on sees exactly what the interrupted run would
have seen. Small splits are decoded once and held in memory; large ones stream from the
shards.
Validation images get the bundle's own preprocessing, as at inference.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.dataset.implications import read_table
from furrytag_cli.dataset.manifest import STATS
from furrytag_cli.dataset.records import read_info, read_split, records_dir
from furrytag_cli.model.categories import RATING_HEAD, CategorySet
from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_image
from furrytag_cli.training.config import AugmentConfig


@dataclass(frozen=True)
class DataSource:
    """A packed dataset and the tag lists training reads it with."""

    path: Path
    categories: CategorySet
    examples: Mapping[str, int]
    max_side: int = 0
    implications: Mapping[str, list[str]] | None = None  # from the dataset folder, when it has one
    # Splits decoded once and held in memory (see ``train_dataset``), by split name.
    held: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, path: Path, categories: CategorySet | None = None) -> "DataSource":
        """The shards at ``path``; ``categories`` default to the lists they were packed with."""
        folder = records_dir(path)
        info = read_info(folder)
        if categories is None:
            categories = CategorySet(heads=info.heads)
        else:
            info.check_heads(categories, str(folder))
        examples = {split: int(value["examples"]) for split, value in info.splits.items()}
        return cls(
            path=Path(path),
            categories=categories,
            examples=examples,
            max_side=int(info.max_side or 0),
            implications=read_table(path, categories),
        )

    def count(self, split: str) -> int:
        examples = self.examples.get(split, 0)
        if not examples:
            packed = ", ".join(s for s, n in self.examples.items() if n) or "none"
            raise DatasetError(
                f"{self.path} has no examples of split {split!r} "
                f"(splits with examples: {packed}); pack that split or pick another"
            )
        return examples


def _targets(labels: Mapping, rating):
    """The model's target dict: one multi-hot vector per head, rating as a (1,) vector."""
    tf = tensorflow()
    return {**labels, RATING_HEAD: tf.reshape(tf.cast(rating, tf.float32), [1])}


def _augment(image, seed, spec: PreprocessSpec, augment: AugmentConfig):
    """One decoded image → a randomly cropped, resized, maybe flipped float model input."""
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if augment.crop_area is not None:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            tf.zeros([1, 0, 4]),
            seed=seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=list(augment.crop_ratio),
            area_range=list(augment.crop_area),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, size)
    image = preprocess_image(image, spec)
    if augment.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return image


def _normalize(x, spec: PreprocessSpec):
    """``preprocess_image`` on images already at the input size, without its resize."""
    tf = tensorflow()
    if spec.decoder == "legacy":
        x = x / 255.0
        if spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0):
            return x
    else:
        x = x * spec.scale
    return (x - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)


def _mixup(images, targets: Mapping, seed, alpha: float):
    """Mix each example with its mirror in the batch, weight ~ Beta(alpha, alpha)."""
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, 2)
    shape = tf.shape(images)[:1]
    a = tf.random.stateless_gamma(shape, seeds[0], alpha=alpha)
    b = tf.random.stateless_gamma(shape, seeds[1], alpha=alpha)
    lam = a / (a + b)

    def mix(x):
        weight = tf.reshape(tf.cast(lam, x.dtype), [-1] + [1] * (len(x.shape) - 1))
        return weight * x + (1 - weight) * tf.reverse(x, [0])

    return mix(images), {head: mix(value) for head, value in targets.items()}


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def train_dataset(
    source: DataSource,
    split: str,
    spec: PreprocessSpec,
    augment: AugmentConfig,
    *,
    batch_size: int,
    steps: int,
    seed: int,
    epoch: int,
    skip: int = 0,
    shuffle_buffer: int = 4096,
    hold: bool | None = None,
):
    """Epoch ``epoch``'s batches (image, targets), ``steps`` of them, the first ``skip`` left out.

    A split whose decoded images fit in ``HOLD_BYTES`` is read from its shards once and
    held in memory (``hold=None``; ``True``/``False`` force the choice): each epoch then
    gathers its shuffled batches from there and augments them whole (a small epoch all at
    once), so the input costs little next to a small model's step. Larger splits stream
    from the shards every epoch, one image at a time.
    """
    tf = tensorflow()
    base = epoch_seed(seed, epoch)
    if hold is None:
        hold = fits_in_memory(source, split)
    if hold:
        dataset = _held_batches(
            hold_split(source, split), spec, augment, batch_size=batch_size, steps=steps, base=base
        )
    else:
        dataset = read_split(
            source.path,
            split,
            source.categories,
            shuffle=True,
            seed=base,
            shuffle_buffer=shuffle_buffer,
        )
        if steps * batch_size > source.count(split):
            dataset = dataset.repeat()

        def element(index, item):
            image, labels, rating = item
            x = _augment(image, tf.stack([tf.cast(base, tf.int64), index]), spec, augment)
            return x, _targets(labels, rating)

        dataset = dataset.enumerate().map(element, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(batch_size, drop_remainder=True).take(steps)
    if augment.mixup > 0:
        dataset = dataset.enumerate().map(
            lambda index, batch: _mixup(
                *batch, tf.stack([tf.cast(base + 1, tf.int64), index]), augment.mixup
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if skip:
        dataset = dataset.skip(skip)
    # fit stops after the epoch's steps; repeating keeps it from warning at the end.
    return _distribution_options(dataset.repeat()).prefetch(tf.data.AUTOTUNE)


# Splits whose decoded images (padded to the packed longer side) take at most this many
# bytes are held in memory by ``train_dataset``.
HOLD_BYTES = 512 * 2**20


@dataclass(frozen=True)
class HeldSplit:
    """A split decoded into tensors: each image at the top left of a zero-padded square."""

    images: object  # uint8 (N, S, S, 3), S the packed longer side
    sizes: object  # int32 (N, 2): each image's height and width
    labels: Mapping  # head → float32 (N, tags)
    rating: object  # float32 (N,)
    functions: dict = field(default_factory=dict, compare=False, repr=False)


def fits_in_memory(source: DataSource, split: str) -> bool:
    return bool(source.max_side) and (source.count(split) * source.max_side**2 * 3 <= HOLD_BYTES)


def hold_split(source: DataSource, split: str) -> HeldSplit:
    """``split`` decoded once (in shard order) and kept on ``source``."""
    if split in source.held:
        return source.held[split]
    tf = tensorflow()
    side = source.max_side

    def pad(image, labels, rating):
        return (
            tf.image.pad_to_bounding_box(image, 0, 0, side, side),
            tf.shape(image)[:2],
            labels,
            rating,
        )

    dataset = (
        read_split(source.path, split, source.categories)
        .map(pad, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(256)
    )
    parts = list(dataset.as_numpy_iterator())
    heads = source.categories.head_names
    held = HeldSplit(
        images=tf.constant(np.concatenate([p[0] for p in parts])),
        sizes=tf.constant(np.concatenate([p[1] for p in parts])),
        labels={h: tf.constant(np.concatenate([p[2][h] for p in parts])) for h in heads},
        rating=tf.constant(np.concatenate([p[3] for p in parts])),
    )
    source.held[split] = held
    return held


# An epoch from a held split whose inputs take at most this many bytes is augmented at
# once, before its first step; a larger one is augmented batch by batch as it goes.
EPOCH_BYTES = 128 * 2**20


def _held_batches(
    held: HeldSplit,
    spec: PreprocessSpec,
    augment: AugmentConfig,
    *,
    batch_size: int,
    steps: int,
    base: int,
):
    """An epoch's ``steps`` batches from a held split: shuffled passes, augmented per image.

    The order and every image's random draws come from one generator seeded by ``base``,
    so the batches are the same however they are computed.
    """
    tf = tensorflow()
    count = int(held.images.shape[0])
    rng = np.random.default_rng(base)
    passes = -(-steps * batch_size // count)
    order = np.concatenate([rng.permutation(count) for _ in range(passes)])
    order = order[: steps * batch_size].reshape(steps, batch_size)
    draws = rng.random((steps, batch_size, _DRAWS), dtype=np.float32)
    function = _batch_function(held, spec, augment)
    if steps * batch_size * spec.size**2 * 3 * 4 <= EPOCH_BYTES:
        images, targets = function(order.reshape(-1), draws.reshape(-1, _DRAWS))
        images = tf.reshape(images, [steps, batch_size, *images.shape[1:]])
        targets = {
            head: tf.reshape(value, [steps, batch_size, -1]) for head, value in targets.items()
        }
        return tf.data.Dataset.from_tensor_slices((images, targets))
    return tf.data.Dataset.from_tensor_slices((order, draws)).map(
        function, num_parallel_calls=tf.data.AUTOTUNE
    )


def _batch_function(held: HeldSplit, spec: PreprocessSpec, augment: AugmentConfig):
    """(rows, draws) → (images, targets), traced once for all the epochs of a run."""
    tf = tensorflow()
    key = (spec, augment)
    if key not in held.functions:

        @tf.function(autograph=False, reduce_retracing=True)
        def batch(rows, draws):
            x = _augment_batch(
                tf.gather(held.images, rows), tf.gather(held.sizes, rows), draws, spec, augment
            )
            targets = {head: tf.gather(value, rows) for head, value in held.labels.items()}
            targets[RATING_HEAD] = tf.reshape(tf.gather(held.rating, rows), [-1, 1])
            return x, targets

        held.functions[key] = batch
    return held.functions[key]


# Uniform draws per image: crop area, aspect ratio, top, left; flip.
_DRAWS = 5


def _augment_batch(images, sizes, draws, spec: PreprocessSpec, augment: AugmentConfig):
    """Padded uint8 images, their sizes and uniform draws → cropped, resized, maybe flipped.

    The same augmentation as ``_augment`` (crop area and aspect ratio drawn uniformly,
    the ratio on a log scale), done for the whole batch by one ``crop_and_resize``.
    """
    tf = tensorflow()
    count = tf.shape(images)[0]
    hw = tf.cast(sizes, tf.float32)
    h, w = hw[:, 0], hw[:, 1]
    if augment.crop_area is not None:
        u = draws
        low, high = augment.crop_area
        area = (low + (high - low) * u[:, 0]) * h * w
        low, high = np.log(augment.crop_ratio)
        ratio = tf.exp(low + (high - low) * u[:, 1])
        ch = tf.minimum(tf.round(tf.sqrt(area / ratio)), h)
        cw = tf.minimum(tf.round(tf.sqrt(area * ratio)), w)
        y0, x0 = tf.floor((h - ch + 1) * u[:, 2]), tf.floor((w - cw + 1) * u[:, 3])
        y0, x0 = tf.minimum(y0, h - ch), tf.minimum(x0, w - cw)
    else:
        ch, cw, y0, x0 = h, w, tf.zeros_like(h), tf.zeros_like(w)
    # Sample where tf.image.resize (half-pixel centres) would, kept inside the crop.
    size = float(spec.size)

    def span(start, length):
        first = start + 0.5 * length / size - 0.5
        last = first + length * (size - 1) / size
        return (
            tf.clip_by_value(first, start, start + length - 1),
            tf.clip_by_value(last, start, start + length - 1),
        )

    (top, bottom), (left, right) = span(y0, ch), span(x0, cw)
    last = tf.cast(tf.shape(images)[1] - 1, tf.float32)
    boxes = tf.stack([top, left, bottom, right], axis=1) / last
    x = tf.image.crop_and_resize(images, boxes, tf.range(count), [spec.size, spec.size])
    x = _normalize(x, spec)
    if augment.flip:
        flip = draws[:, 4] < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
    return x


def eval_dataset(
    source: DataSource, split: str, spec: PreprocessSpec, *, batch_size: int, cache: bool = False
):
    """A split's batches (image, targets) in shard order, preprocessed as at inference."""
    tf = tensorflow()
    dataset = read_split(source.path, split, source.categories).map(
        lambda image, labels, rating: (preprocess_image(image, spec), _targets(labels, rating)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.batch(batch_size)
    if cache:
        dataset = dataset.cache()
    return _distribution_options(dataset).prefetch(tf.data.AUTOTUNE)


def _distribution_options(dataset):
    # Several workers each read every shard and keep their share of the batches, so runs
    # with fewer shards than workers work too.
    tf = tensorflow()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def positive_fractions(source: DataSource, split: str) -> dict[str, np.ndarray]:
    """Per head, the fraction of ``split``'s posts having each tag (from ``stats.json``)."""
    folder = records_dir(source.path)
    candidates = [folder / STATS, folder.parent / STATS, Path(source.path) / STATS]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(
            f"loss.positive_weight_power needs the dataset's {STATS} (written by `furrytag "
            f"dataset build`) next to the shards of {source.path}; set it to 0 or copy the file"
        )
    stats = json.loads(path.read_text(encoding="utf-8"))
    posts = max(int(stats["posts"][split]), 1)
    fractions = {}
    for head, tags in source.categories.heads.items():
        counts = stats["tags"].get(head, {})
        fractions[head] = np.array([counts.get(t, {}).get(split, 0) / posts for t in tags])
    return fractions
