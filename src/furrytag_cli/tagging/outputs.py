"""The files one ``tag`` run writes, settled before any work starts.

Every output is resolved (links followed) and checked: none is an input image (by
identity, so hard links and symbolic links count), no two are the same file, and no
caption goes through a symbolic link to a folder outside ``--output-dir``, whatever
``--overwrite`` says. A lock beside each output (``.NAME.lock``) keeps a second live run
from writing it at the same time.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from furrytag_cli.core.console import printable
from furrytag_cli.core.errors import OutputError
from furrytag_cli.tagging.sinks import is_special


def check_targets(
    outputs: Sequence[tuple[str, Path]],
    inputs: Sequence[Path],
    captions: Sequence[tuple[Path, Path]] = (),
    output_dir: Path | None = None,
) -> None:
    """Refuse outputs that coincide with an input or with each other.

    ``outputs`` are (how the user named it, path) pairs, ``captions`` (image, caption).
    """
    images: dict[tuple[int, int], Path] = {}
    for path in inputs:
        identity = _identity(path)
        if identity is not None:
            images.setdefault(identity, path)
    taken: dict[str, str] = {}
    for label, path in outputs:
        image = images.get(_identity(path))
        if image is not None:
            raise OutputError(
                f"{label} is the input image {printable(image)}; an output never replaces an "
                "input, whatever --overwrite says: write it elsewhere"
            )
        if not is_special(path):
            _claim(taken, os.path.realpath(path), label)
    if captions:
        _check_captions(captions, images, taken, output_dir)


def _check_captions(
    captions: Sequence[tuple[Path, Path]],
    images: dict[tuple[int, int], Path],
    taken: dict[str, str],
    output_dir: Path | None,
) -> None:
    folders: dict[Path, str] = {}
    base = os.path.realpath(output_dir) if output_dir is not None else None
    for image, caption in captions:
        folder = folders.get(caption.parent)
        if folder is None:
            folder = folders[caption.parent] = os.path.realpath(caption.parent)
            if base is not None and os.path.commonpath([base, folder]) != base:
                _refuse_link(output_dir, caption.parent)
        shown = f"the caption {printable(caption)} of {printable(image)}"
        other = images.get(_identity(caption))
        if other is not None:
            raise OutputError(
                f"{shown} would replace the input image {printable(other)}; a caption never "
                "replaces an image: rename one of them, or write the captions elsewhere with "
                "--output-dir"
            )
        _claim(taken, os.path.join(folder, caption.name), shown)


def _claim(taken: dict[str, str], resolved: str, label: str) -> None:
    if resolved in taken:
        raise OutputError(
            f"{taken[resolved]} and {label} are one file; give each output a name of its "
            "own (--overwrite does not change this)"
        )
    taken[resolved] = label


def _refuse_link(output_dir: Path, folder: Path) -> None:
    link = output_dir
    for part in folder.relative_to(output_dir).parts:
        link = link / part
        if link.is_symlink():
            break
    raise OutputError(
        f"{printable(link)} is a symbolic link to {printable(os.path.realpath(link))}, outside "
        f"--output-dir {printable(output_dir)}; captions are never written through it: remove "
        "the link, or choose another --output-dir"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return (stat.st_dev, stat.st_ino)


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: ``.NAME.lock`` beside it."""
    return output.with_name(f".{output.name}.lock")


class OutputLock:
    """Holds the locks of ``outputs`` until ``release``; refuses outputs another live
    furrytag run holds."""

    def __init__(self, outputs: Sequence[Path]):
        self.held: list[tuple[FileLock, Path]] = []
        try:
            for output in outputs:
                self._take(output)
        except BaseException:
            self.release()
            raise

    def _take(self, output: Path) -> None:
        path = lock_path(output)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise OutputError(
                f"{printable(output)} is being written by another furrytag run (it holds "
                f"{printable(path)}); wait for that run to end, or write to another file"
            ) from None
        except OSError as exc:
            raise OutputError(f"cannot write in {printable(path.parent)}: {exc.strerror}") from None
        self.held.append((lock, path))

    def release(self) -> None:
        for lock, path in reversed(self.held):
            # Removed while still held: a run opening it now finds a removed file and retries.
            path.unlink(missing_ok=True)
            lock.release()
        self.held = []
