"""Finding the images to tag: files, folders, stdin and list files → a sorted, unique list.

Folders are walked without following symlinked folders (so walking never loops);
symlinked files are taken. Inside folders a file is an image when its extension is a
known one or, lacking an extension, when its first bytes are an image signature.
Named files are always taken, so a bad one is reported rather than silently ignored.
"""

import fnmatch
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import FurrytagError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


@dataclass
class Discovery:
    """The images found, in order, and the inputs that could not be used."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def display_path(path: os.PathLike | str) -> str:
    """A printable form of a path, also for file names that are not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def discover(
    inputs: Sequence[str],
    *,
    recursive: bool = True,
    globs: Sequence[str] = (),
    excludes: Sequence[str] = (),
    null_separated: bool = False,
    stdin=None,
) -> Discovery:
    """Expand ``inputs`` (paths, folders, ``-`` for stdin, ``@list.txt``) into image files."""
    found: dict[str, Path] = {}
    result = Discovery()
    for item in _expand_lists(inputs, null_separated, stdin or sys.stdin):
        path = Path(item)
        if path.is_dir():
            for file in _walk(path, recursive):
                if _selected(file, path, globs, excludes):
                    found.setdefault(os.path.abspath(file), file)
        elif path.is_symlink() and not path.exists():
            result.problems.append((display_path(path), "broken symbolic link"))
        elif path.exists():
            if _selected(path, path.parent, globs, excludes):
                found.setdefault(os.path.abspath(path), path)
        else:
            result.problems.append((display_path(path), "no such file or folder"))
    result.files = [found[key] for key in sorted(found)]
    return result


def _expand_lists(inputs: Sequence[str], null_separated: bool, stdin) -> Iterable[str]:
    for item in inputs:
        if item == "-":
            yield from _split(stdin.read(), null_separated)
        elif item.startswith("@") and len(item) > 1:
            list_file = Path(item[1:])
            try:
                text = list_file.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError as exc:
                raise FurrytagError(
                    f"cannot read the list file {list_file}: {exc.strerror}; "
                    "give @FILE with one image path per line"
                ) from None
            yield from _split(text, null_separated)
        else:
            yield item


def _split(text: str, null_separated: bool) -> list[str]:
    parts = text.split("\0") if null_separated else text.splitlines()
    return [p for p in (part.strip("\r") if not null_separated else part for part in parts) if p]


def _walk(folder: Path, recursive: bool) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        if not recursive:
            dirs.clear()
        for name in files:
            file = Path(root) / name
            if _looks_like_image(file):
                yield file


def _looks_like_image(file: Path) -> bool:
    suffix = file.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return True
    if suffix:
        return False
    try:
        with file.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _selected(file: Path, base: Path, globs: Sequence[str], excludes: Sequence[str]) -> bool:
    try:
        relative = file.relative_to(base).as_posix()
    except ValueError:
        relative = file.as_posix()
    names = (file.name, relative, file.as_posix())
    if globs and not any(fnmatch.fnmatch(n, g) for g in globs for n in names):
        return False
    return not any(fnmatch.fnmatch(n, x) for x in excludes for n in names)
