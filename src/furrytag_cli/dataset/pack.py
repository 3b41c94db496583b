"""Packing a fetched dataset into TFRecord shards (see ``records`` for the format).

Each image is decoded once, flattened onto white where it has alpha, shrunk so its longer
side is a little above the training size (random crops of the training size still find
pixels) and re-encoded as JPEG. Images that cannot be decoded are reported and left out.
"""

import io
import json
import math
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, DatasetError, ImageError
from furrytag_cli.core.progress import Progress
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.dataset.layout import IMAGES, SAMPLES, SPLITS
from furrytag_cli.dataset.manifest import ManifestEntry, iter_manifest, local_image
from furrytag_cli.dataset.records import (
    RECORDS_DIR,
    RECORDS_INFO,
    RecordsInfo,
    ShardWriter,
    encode_example,
    read_info,
    write_info,
)
from furrytag_cli.model.categories import CategorySet

FAILURES = "pack-failures.jsonl"


def max_side_for(size: int) -> int:
    """The stored longer side for a training size: 1/7 more (224 → 256)."""
    return math.ceil(size * 8 / 7)


def prepare_image(path: Path, max_side: int, quality: int = 90) -> bytes:
    """An image file → JPEG bytes, RGB, longer side at most ``max_side``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # JPEGs decode straight at a reduced scale: much faster for large originals.
            image.draft("RGB", (max_side, max_side))
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image.alpha_composite(rgba)
            image = image.convert("RGB")
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality)
    except (
        OSError,
        UnidentifiedImageError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        raise ImageError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    return buffer.getvalue()


@dataclass
class PackReport:
    """What a pack run wrote and left out."""

    folder: Path
    examples: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[str]] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    missing: int = 0
    seconds: float = 0.0


def pack_dataset(
    data_dir: Path,
    size: int,
    categories: CategorySet | None = None,
    *,
    out: Path | None = None,
    shard_size: int = 1000,
    quality: int = 90,
    splits: Sequence[str] = SPLITS,
    workers: int | None = None,
    progress: bool = False,
) -> PackReport:
    """Write the fetched images of ``splits`` as shards in ``out`` (default ``data_dir/shards``)."""
    checks = [
        (size >= 8, f"--size must be at least 8; received {size}"),
        (1 <= quality <= 100, f"--quality must be from 1 to 100; received {quality}"),
        (shard_size >= 1, f"--shard-size must be at least 1; received {shard_size}"),
        (workers is None or workers >= 1, f"--workers must be at least 1; received {workers}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"unknown split(s) {', '.join(unknown)}; splits are {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    categories = categories or CategorySet.load()
    folder = Path(out) if out is not None else data_dir / RECORDS_DIR
    # Fail before old shards are cleared: no manifest, or nothing fetched yet.
    total, stored_any = 0, False
    for entry in iter_manifest(data_dir, splits):
        total += 1
        stored_any = stored_any or local_image(data_dir, entry) is not None
    if total and not stored_any:
        raise DatasetError(
            f"none of the {total:,} images of {data_dir}'s manifest is stored under "
            f"{data_dir / IMAGES} or {data_dir / SAMPLES}; run `furrytag dataset fetch "
            f"--data {data_dir}` first"
        )
    # TensorFlow takes seconds to import; load it first so images/s measures packing.
    tensorflow()
    started = time.perf_counter()
    info = _start_info(folder, size, quality, categories, splits)
    index = {
        head: {tag: i for i, tag in enumerate(tags)} for head, tags in categories.heads.items()
    }
    report = PackReport(folder=folder)
    writers = {split: ShardWriter(folder, split, shard_size) for split in splits}
    bar = Progress(total, "pack", "img", enabled=progress).start()

    def stored() -> Iterator[tuple[ManifestEntry, Path]]:
        for entry in iter_manifest(data_dir, splits):
            path = local_image(data_dir, entry)
            if path is None:
                report.missing += 1
                bar.advance()
            else:
                yield entry, path

    try:
        for entry, path, jpeg, error in _prepared(stored(), info.max_side, quality, workers):
            if jpeg is None:
                report.failed.append({"id": entry.id, "path": str(path), "error": error})
            else:
                labels = {
                    head: _indices(entry, head, index[head]) for head in categories.head_names
                }
                rating = categories.rating.target(entry.rating)
                writers[entry.split].write(encode_example(jpeg, labels, rating, entry.id))
            bar.advance()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        bar.close()
    splits_info = dict(info.splits)
    for split, writer in writers.items():
        report.shards[split] = writer.close()
        report.examples[split] = writer.count
        splits_info[split] = {"examples": writer.count, "shards": report.shards[split]}
    write_info(folder, RecordsInfo(size, info.max_side, quality, info.heads, splits_info))
    _write_failures(folder, report.failed)
    report.seconds = time.perf_counter() - started
    return report


def _start_info(
    folder: Path, size: int, quality: int, categories: CategorySet, splits: Sequence[str]
) -> RecordsInfo:
    """Clear the shards about to be rewritten; keep other splits packed the same way."""
    info = RecordsInfo(size, max_side_for(size), quality, dict(categories.heads))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the shard folder {folder}: {exc}") from None
    if (folder / RECORDS_INFO).is_file():
        old = read_info(folder)
        if (old.size, old.max_side, old.quality, old.heads) == (
            info.size,
            info.max_side,
            info.quality,
            info.heads,
        ):
            kept = {s: v for s, v in old.splits.items() if s not in splits}
            info = RecordsInfo(info.size, info.max_side, info.quality, info.heads, kept)
        else:
            splits = SPLITS
    for split in splits:
        for stale in folder.glob(f"{split}-*.tfrecord*"):
            stale.unlink()
    return info


def _indices(entry: ManifestEntry, head: str, index: dict[str, int]) -> list[int]:
    try:
        return [index[tag] for tag in entry.tags.get(head, ())]
    except KeyError as exc:
        raise DatasetError(
            f"post {entry.id} of the manifest has {head} tag {exc.args[0]!r}, which the "
            "categories do not list; pack with the categories the manifest was built with"
        ) from None


def _prepared(
    items: Iterable[tuple[ManifestEntry, Path]], max_side: int, quality: int, workers: int | None
) -> Iterator[tuple[ManifestEntry, Path, bytes | None, str | None]]:
    """Prepare images on a thread pool (PIL releases the GIL), yielding in input order."""

    def job(entry: ManifestEntry, path: Path):
        try:
            return entry, path, prepare_image(path, max_side, quality), None
        except ImageError as exc:
            return entry, path, None, str(exc)

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers, thread_name_prefix="pack") as pool:
        window: deque = deque()
        for entry, path in items:
            window.append(pool.submit(job, entry, path))
            if len(window) >= 8 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _write_failures(folder: Path, failures: list[dict]) -> None:
    path = folder / FAILURES
    if failures:
        path.write_text("".join(json.dumps(f) + "\n" for f in failures), encoding="utf-8")
    else:
        path.unlink(missing_ok=True)
