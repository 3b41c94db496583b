"""TFRecord shards of a packed dataset: the example format, writing, and reading back.

Every example holds::

    image/encoded   bytes     JPEG, RGB, longer side at most the pack's max side
    labels/<head>   int64[]   positions of the post's tags in the head's tag list
    rating          float     target: safe 0, questionable 0.5, explicit 1
    post_id         int64     the e621 post id

Shards are named ``<split>-<index:05d>-of-<count:05d>.tfrecord``. Their folder holds
``records.json``: format, training size, max side, JPEG quality, the heads with their
ordered tags (so label indices are never read against another tag list), and per split
its shard files and number of examples. ``read_split`` is how training and evaluation
read data.
"""

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.model.categories import CategorySet

RECORDS_INFO = "records.json"
RECORDS_DIR = "shards"
RECORDS_FORMAT = 1
IMAGE_KEY = "image/encoded"
LABELS_PREFIX = "labels/"
RATING_KEY = "rating"
POST_ID_KEY = "post_id"


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


@dataclass(frozen=True)
class RecordsInfo:
    """The content of ``records.json``."""

    size: int
    max_side: int
    quality: int
    heads: Mapping[str, tuple[str, ...]]
    splits: Mapping[str, Mapping] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": RECORDS_FORMAT,
            "size": self.size,
            "max_side": self.max_side,
            "quality": self.quality,
            "heads": {head: list(tags) for head, tags in self.heads.items()},
            "splits": {split: dict(value) for split, value in self.splits.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> "RecordsInfo":
        try:
            if data["format"] != RECORDS_FORMAT:
                raise ValueError(f"format {data['format']!r}, expected {RECORDS_FORMAT}")
            return cls(
                size=int(data["size"]),
                max_side=int(data["max_side"]),
                quality=int(data["quality"]),
                heads={h: tuple(tags) for h, tags in data["heads"].items()},
                splits={
                    s: {"examples": int(v["examples"]), "shards": list(v["shards"])}
                    for s, v in data["splits"].items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(
                f"{where} is not a valid records file ({type(exc).__name__}: {exc}); "
                "pack the dataset again with `furrytag dataset pack`"
            ) from None

    def check_heads(self, categories: CategorySet, where: str) -> None:
        """Fail unless every head of ``categories`` was packed with the same tag list."""
        for head in categories.head_names:
            packed = self.heads.get(head)
            if packed is None:
                raise DatasetError(
                    f"{where} has no head {head!r} (packed heads: {', '.join(self.heads)}); "
                    "use the categories the shards were packed with, or pack again"
                )
            if tuple(packed) != tuple(categories.tags(head)):
                raise DatasetError(
                    f"{where} was packed with a different tag list for head {head!r} "
                    f"({len(packed)} tags, received categories with {len(categories.tags(head))}); "
                    "use the categories the shards were packed with, or pack again"
                )


def records_dir(data_dir: Path) -> Path:
    """The folder holding the shards: ``data_dir`` itself or its ``shards/`` folder."""
    data_dir = Path(data_dir)
    for folder in (data_dir, data_dir / RECORDS_DIR):
        if (folder / RECORDS_INFO).is_file():
            return folder
    raise DatasetError(
        f"no {RECORDS_INFO} in {data_dir} or {data_dir / RECORDS_DIR}; pack the dataset "
        "first with `furrytag dataset pack --data DATA --size S`"
    )


def read_info(folder: Path) -> RecordsInfo:
    """The ``records.json`` of a shard folder."""
    path = Path(folder) / RECORDS_INFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path} ({exc}); pack the dataset again") from None
    return RecordsInfo.from_dict(data, where=str(path))


def write_info(folder: Path, info: RecordsInfo) -> None:
    path = Path(folder) / RECORDS_INFO
    path.write_text(json.dumps(info.to_dict(), indent=1) + "\n", encoding="utf-8")


def encode_example(
    image: bytes, labels: Mapping[str, Sequence[int]], rating: float, post_id: int
) -> bytes:
    """One serialized ``tf.train.Example`` in this module's format."""
    train = tensorflow().train
    feature = {
        IMAGE_KEY: train.Feature(bytes_list=train.BytesList(value=[image])),
        RATING_KEY: train.Feature(float_list=train.FloatList(value=[rating])),
        POST_ID_KEY: train.Feature(int64_list=train.Int64List(value=[post_id])),
    }
    for head, indices in labels.items():
        feature[LABELS_PREFIX + head] = train.Feature(int64_list=train.Int64List(value=indices))
    return train.Example(features=train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Writes one split's examples into shards of ``shard_size``; names them on close."""

    def __init__(self, folder: Path, split: str, shard_size: int = 1000) -> None:
        self.folder = Path(folder)
        self.split = split
        self.shard_size = shard_size
        self.count = 0
        self._parts: list[Path] = []
        self._writer = None
        self._in_shard = 0

    def write(self, example: bytes) -> None:
        if self._writer is None or self._in_shard == self.shard_size:
            self._next_shard()
        self._writer.write(example)
        self._in_shard += 1
        self.count += 1

    def _next_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        # The final name needs the shard count, known only at the end.
        part = self.folder / f"{self.split}-{len(self._parts):05d}.tfrecord.partial"
        self._parts.append(part)
        self._writer = tensorflow().io.TFRecordWriter(str(part))
        self._in_shard = 0

    def abort(self) -> None:
        """Close and delete the unfinished shards (a run that failed half way)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for part in self._parts:
            part.unlink(missing_ok=True)
        self._parts = []

    def close(self) -> list[str]:
        """Finish the last shard and give every shard its final name; return the names."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        names = [shard_name(self.split, i, len(self._parts)) for i in range(len(self._parts))]
        for part, name in zip(self._parts, names):
            os.replace(part, self.folder / name)
        return names


def parse_example(serialized, head_sizes: Mapping[str, int], *, with_id: bool = False):
    """TF ops: a serialized example → (image, {head: multi-hot}, rating[, post_id]).

    ``image`` is uint8 (H, W, 3); each head's labels are a dense float32 vector of
    ``head_sizes[head]`` zeros and ones; ``rating`` is a float32 scalar; ``post_id`` int64.
    """
    tf = tensorflow()
    spec = {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        RATING_KEY: tf.io.FixedLenFeature([], tf.float32),
        POST_ID_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    for head in head_sizes:
        spec[LABELS_PREFIX + head] = tf.io.VarLenFeature(tf.int64)
    parsed = tf.io.parse_single_example(serialized, spec)
    image = tf.io.decode_jpeg(parsed[IMAGE_KEY], channels=3)
    labels = {
        head: tf.minimum(
            tf.reduce_sum(
                tf.one_hot(parsed[LABELS_PREFIX + head].values, size, dtype=tf.float32), 0
            ),
            1.0,
        )
        for head, size in head_sizes.items()
    }
    if with_id:
        return image, labels, parsed[RATING_KEY], parsed[POST_ID_KEY]
    return image, labels, parsed[RATING_KEY]


def read_split(
    data_dir: Path,
    split: str,
    categories: CategorySet,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    with_id: bool = False,
    shuffle_buffer: int = 4096,
):
    """A ``tf.data.Dataset`` of one split's examples, unbatched.

    Elements are ``(image, labels, rating)`` — or ``(image, labels, rating, post_id)``
    with ``with_id`` — as described in ``parse_example``, with one label vector per head
    of ``categories``. ``data_dir`` is a shard folder or a dataset folder with a
    ``shards/`` folder. Without ``shuffle`` the order is the shards' order; with it,
    shard order and examples are shuffled each pass, reproducibly when ``seed`` is given.
    """
    folder = records_dir(data_dir)
    info = read_info(folder)
    where = str(folder / RECORDS_INFO)
    info.check_heads(categories, where)
    shards = (info.splits.get(split) or {}).get("shards") or []
    if not shards:
        packed = ", ".join(s for s, v in info.splits.items() if v["shards"]) or "none"
        raise DatasetError(
            f"{where} has no examples of split {split!r} (splits with examples: {packed}); "
            "pack that split or pick another"
        )
    files = [str(folder / name) for name in shards]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DatasetError(f"shard file missing: {missing[0]}; pack the dataset again")
    tf = tensorflow()
    sizes = {head: len(categories.tags(head)) for head in categories.head_names}
    if shuffle:
        deterministic = seed is not None
        dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(16, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        ).shuffle(shuffle_buffer, seed=seed)
    else:
        deterministic = True
        dataset = tf.data.TFRecordDataset(files)
    return dataset.map(
        lambda serialized: parse_example(serialized, sizes, with_id=with_id),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
