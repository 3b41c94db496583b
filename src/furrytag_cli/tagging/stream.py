"""Batches of model input decoded without TensorFlow, for models on the CPU.

paths → header check, read, decode, resize, normalise (``decode.model_input``, on a
pool with one thread per core: libjpeg, Pillow and numpy release the GIL) → batches in
input order. A batch is decoded only when it is asked for, so decoding and the model
take turns on the cores instead of competing for them (both keep every core busy).
At most one batch of decoded images exists at a time: memory stays flat in the number
of files.
"""

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import ImageError
from furrytag_cli.core.machine import cpu_threads
from furrytag_cli.model.preprocess import PreprocessSpec
from furrytag_cli.tagging.decode import MAX_PIXELS, model_input


@dataclass
class Batch:
    """Model input for ``indices`` (into the paths) and the files that failed before them."""

    indices: list[int]
    images: np.ndarray | None  # float32 (len(indices), S, S, 3); None when indices is empty
    failed: list[tuple[int, str]] = field(default_factory=list)  # (index, reason), in order


def image_batches(
    paths: Sequence[Path],
    spec: PreprocessSpec,
    *,
    batch_size: int,
    max_pixels: int = MAX_PIXELS,
    threads: int | None = None,
) -> Iterator[Batch]:
    """Full batches of ``batch_size`` images in input order (the last may be short); each
    carries the failures among the files read for it. A last batch may hold only failures."""

    def load(index: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return index, model_input(Path(paths[index]), spec, max_pixels), None
        except ImageError as exc:
            return index, None, str(exc)

    with ThreadPoolExecutor(max_workers=threads or cpu_threads()) as pool:
        following = 0
        while following < len(paths):
            indices: list[int] = []
            images: list[np.ndarray] = []
            failed: list[tuple[int, str]] = []
            while len(indices) < batch_size and following < len(paths):
                wanted = range(following, min(following + batch_size - len(indices), len(paths)))
                following = wanted.stop
                for index, image, reason in pool.map(load, wanted):
                    if image is None:
                        failed.append((index, reason))
                    else:
                        indices.append(index)
                        images.append(image)
            yield Batch(indices, np.stack(images) if images else None, failed)
