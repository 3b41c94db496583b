"""Thumbnails: WebP, long side ``SIZE`` px, made in parallel, reused while the image is unchanged.

A thumbnail's name is a hash of the image's absolute path, size and modification time,
so an unchanged image finds its thumbnail from the last build and a changed one gets a
new one; thumbnails no image refers to any more are removed.
"""

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from furrytag_cli.core.atomic import AtomicFile
from furrytag_cli.core.errors import OutputError
from furrytag_cli.tagging.decode import to_rgb

SIZE = 256
FOLDER = "thumbs"
_NAME_LENGTH = 24


@dataclass(frozen=True)
class Thumb:
    """What became of one image: ``ok`` (``name`` is its thumbnail), missing or unreadable."""

    status: str
    name: str | None = None
    reason: str | None = None


def thumbnail_name(file: Path) -> str | None:
    """The thumbnail file name of ``file`` as it is now; None when it does not exist."""
    try:
        st = file.stat()
    except OSError:
        return None
    key = f"{os.path.abspath(file)}\0{st.st_size}\0{st.st_mtime_ns}".encode(
        "utf-8", "surrogateescape"
    )
    return hashlib.sha256(key).hexdigest()[:_NAME_LENGTH] + ".webp"


def make_thumbnails(
    files: Sequence[Path],
    folder: Path,
    *,
    workers: int = 1,
    on_done: Callable[[int], None] = lambda n: None,
) -> list[Thumb]:
    """A ``Thumb`` per file, in order; thumbnails are written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    thumbs: list[Thumb | None] = [None] * len(files)
    todo: dict[str, tuple[str, list[int]]] = {}  # thumbnail name -> (image, its positions)
    for i, file in enumerate(files):
        name = thumbnail_name(file)
        if name is None:
            thumbs[i] = Thumb("missing", reason="not found (moved or deleted since tagging?)")
        elif (folder / name).is_file():
            thumbs[i] = Thumb("ok", name)
        else:
            todo.setdefault(name, (str(file), []))[1].append(i)
    on_done(sum(t is not None for t in thumbs))
    jobs = [(file, str(folder / name)) for name, (file, _) in todo.items()]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            chunksize = max(1, min(32, len(jobs) // (4 * workers)))
            _collect(todo, pool.map(_make_one, jobs, chunksize=chunksize), thumbs, on_done)
    else:
        _collect(todo, map(_make_one, jobs), thumbs, on_done)
    keep = {t.name for t in thumbs if t is not None and t.name}
    for old in folder.glob("*.webp"):
        if old.name not in keep and len(old.stem) == _NAME_LENGTH:
            old.unlink(missing_ok=True)
    return [t for t in thumbs if t is not None]


def _collect(todo, outcomes, thumbs, on_done) -> None:
    for (name, (_, positions)), reason in zip(todo.items(), outcomes):
        thumb = Thumb("ok", name) if reason is None else Thumb("unreadable", reason=reason)
        for i in positions:
            thumbs[i] = thumb
        on_done(len(positions))


def _make_one(job: tuple[str, str]) -> str | None:
    """Write one thumbnail; the reason the image could not be read, or None."""
    source, target = job
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.draft("RGB", (SIZE * 2, SIZE * 2))
                image = ImageOps.exif_transpose(image)
                image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
                # As tag sees it: 16-bit samples scaled, transparency on white.
                image = Image.fromarray(to_rgb(image, alpha="white"))
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        return f"cannot be read as an image ({exc})"
    try:
        # A thumbnail is made again from its image: no need to wait for the disk.
        with AtomicFile(target, sync=False) as handle:
            image.save(handle, "WEBP", quality=80, method=4)
    except OSError as exc:
        raise OutputError(f"cannot write the thumbnail {target}: {exc.strerror or exc}") from None
    return None
