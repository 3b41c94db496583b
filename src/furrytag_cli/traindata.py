"""Training and validation input pipelines over the TFRecord shards, with augmentation.

Every random choice is a stateless op seeded by (run seed, epoch, element index), so an
epoch's batches are the same whatever the parallelism, and a resumed run that skips the
batches already trained on sees exactly what the interrupted run would have seen.
Validation images get the bundle's own preprocessing, as at inference.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from furrytag_cli.categories import RATING_HEAD, CategorySet
from furrytag_cli.errors import ConfigError, DatasetError
from furrytag_cli.manifest import STATS
from furrytag_cli.preprocess import PreprocessSpec, preprocess_image
from furrytag_cli.records import read_info, read_split, records_dir
from furrytag_cli.tfruntime import tensorflow
from furrytag_cli.trainconfig import AugmentConfig


@dataclass(frozen=True)
class DataSource:
    """A packed dataset and the tag lists training reads it with."""

    path: Path
    categories: CategorySet
    examples: Mapping[str, int]

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
        return cls(path=Path(path), categories=categories, examples=examples)

    def count(self, split: str) -> int:
        examples = self.examples.get(split, 0)
        if not examples:
            packed = ", ".join(s for s, n in self.examples.items() if n) or "none"
            raise DatasetError(f"{self.path} has no examples of split {split!r} "
                               f"(splits with examples: {packed}); pack that split or pick another")
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
            tf.shape(image), tf.zeros([1, 0, 4]), seed=seeds[0],
            min_object_covered=0.0, aspect_ratio_range=list(augment.crop_ratio),
            area_range=list(augment.crop_area), max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, size)
    image = preprocess_image(image, spec)
    if augment.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return image


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
    source: DataSource, split: str, spec: PreprocessSpec, augment: AugmentConfig, *,
    batch_size: int, steps: int, seed: int, epoch: int, skip: int = 0,
    shuffle_buffer: int = 4096,
):
    """Epoch ``epoch``'s batches (image, targets), ``steps`` of them, the first ``skip`` left out."""
    tf = tensorflow()
    base = epoch_seed(seed, epoch)
    dataset = read_split(source.path, split, source.categories, shuffle=True, seed=base,
                         shuffle_buffer=shuffle_buffer)
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
            lambda index, batch: _mixup(*batch, tf.stack([tf.cast(base + 1, tf.int64), index]),
                                        augment.mixup),
            num_parallel_calls=tf.data.AUTOTUNE)
    if skip:
        dataset = dataset.skip(skip)
    # fit stops after the epoch's steps; repeating keeps it from warning at the end.
    return _distribution_options(dataset.repeat()).prefetch(tf.data.AUTOTUNE)


def eval_dataset(source: DataSource, split: str, spec: PreprocessSpec, *, batch_size: int,
                 cache: bool = False):
    """A split's batches (image, targets) in shard order, preprocessed as at inference."""
    tf = tensorflow()
    dataset = read_split(source.path, split, source.categories).map(
        lambda image, labels, rating: (preprocess_image(image, spec), _targets(labels, rating)),
        num_parallel_calls=tf.data.AUTOTUNE)
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
