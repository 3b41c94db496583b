"""The images of a run: local files and folders (as ``furrytag tag`` finds them) and
object-store URIs (``s3://``, ``gs://``, any file system pyarrow reads), listed once by
the driver.

Each image is a row: ``path`` (as written in the results: the path as given, or the
URI), ``location`` (what a worker opens: the file's bytes path, or the URI), ``size``
and ``mtime`` (which, with the model, say whether an earlier run already tagged it).
"""

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.tagging.discovery import IMAGE_EXTENSIONS, discover, display_path


@dataclass
class Listing:
    """The images found (columns of equal length) and the inputs that could not be used."""

    path: list[str] = field(default_factory=list)
    location: list[bytes] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    mtime: list[float] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.path)

    def add(self, path: str, location: bytes, size: int, mtime: float) -> None:
        self.path.append(path)
        self.location.append(location)
        self.size.append(size)
        self.mtime.append(mtime)

    def keep(self, rows: Sequence[int]) -> "Listing":
        """The listing of the rows ``rows`` only."""
        kept = Listing(problems=self.problems)
        for i in rows:
            kept.add(self.path[i], self.location[i], self.size[i], self.mtime[i])
        return kept


def is_uri(text: str) -> bool:
    """Whether an input names an object-store (or other pyarrow file system) location."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum()


def list_images(
    inputs: Sequence[str],
    *,
    recursive: bool = True,
    globs: Sequence[str] = (),
    excludes: Sequence[str] = (),
    null_separated: bool = False,
) -> Listing:
    """Every image of ``inputs``: local ones sorted as ``furrytag tag`` sorts them, then
    those under each URI in name order."""
    listing = Listing()
    local = [i for i in inputs if not is_uri(i)]
    if local:
        found = discover(
            local,
            recursive=recursive,
            globs=globs,
            excludes=excludes,
            null_separated=null_separated,
        )
        listing.problems.extend(found.problems)
        for file in found.files:
            try:
                stat = file.stat()
            except OSError as exc:
                listing.problems.append((display_path(file), f"cannot read: {exc.strerror}"))
                continue
            # Workers do not share this process's current folder: they open absolute paths.
            location = os.fsencode(os.path.abspath(file))
            listing.add(display_path(file), location, stat.st_size, stat.st_mtime)
    for uri in (i for i in inputs if is_uri(i)):
        _list_uri(uri, listing, recursive, globs, excludes)
    return listing


def _list_uri(
    uri: str, listing: Listing, recursive: bool, globs: Sequence[str], excludes: Sequence[str]
) -> None:
    from pyarrow import fs as pafs

    scheme = uri.partition("://")[0]
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except (OSError, ValueError) as exc:
        raise FurrytagError(
            f"cannot open {uri}: {exc}; give a URI pyarrow reads (s3://bucket/folder, "
            "gs://bucket/folder) with credentials in the environment, or a local path"
        ) from None
    if info.type == pafs.FileType.NotFound:
        listing.problems.append((uri, "no such file or folder"))
        return
    if info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(root, recursive=recursive)
        files = [
            f
            for f in filesystem.get_file_info(selector)
            if f.type == pafs.FileType.File
            and PurePosixPath(f.path).suffix.lower() in IMAGE_EXTENSIONS
            and not PurePosixPath(f.path).name.startswith(".")
        ]
    else:
        files = [info]
    base = root.rstrip("/")
    for file in sorted(files, key=lambda f: f.path):
        relative = file.path[len(base) :].lstrip("/") if file.path != base else file.base_name
        names = (file.base_name, relative)
        if globs and not any(fnmatch.fnmatch(n, g) for g in globs for n in names):
            continue
        if any(fnmatch.fnmatch(n, x) for x in excludes for n in names):
            continue
        # file:///a/b.jpg: the path is /a/b.jpg; s3://bucket/b.jpg: bucket/b.jpg.
        full = f"{scheme}://{file.path}"
        listing.add(full, full.encode(), file.size, file.mtime.timestamp() if file.mtime else 0.0)
