"""Writing a file whole or not at all.

The content goes to a temporary file beside the target (``.<name>.<random>.tmp``, in the
same folder so the rename never crosses file systems), is flushed to disk, and is then
renamed over the target: readers see the old file or the new one, never half of one. On
an error the temporary file is removed and the target keeps its earlier content. The new
file gets the permissions a plain ``open`` would give it (the umask applies).
"""

import os
import re
import secrets
from pathlib import Path
from typing import IO


class AtomicFile:
    """An open temporary file that ``commit`` renames over ``target`` and ``discard``
    removes; as a context manager it commits on success and discards on an error.

    ``sync`` flushes the content to disk before the rename, so a crash or power cut
    leaves the old file or the new one; files that are cheap to make again (thumbnails,
    one caption per image) may skip it.
    """

    def __init__(
        self,
        target: Path,
        mode: str = "wb",
        *,
        encoding: str | None = None,
        newline: str | None = None,
        sync: bool = True,
    ):
        self.target = Path(target)
        self.sync = sync
        self.path, fd = _create_beside(self.target)
        try:
            self.file: IO = open(fd, mode, encoding=encoding, newline=newline)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise

    def commit(self) -> Path:
        """Close the file and rename it over the target; return the target."""
        try:
            self.file.flush()
            if self.sync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.path, self.target)
        except BaseException:
            self.discard()
            raise
        return self.target

    def discard(self) -> None:
        """Close and remove the temporary file; the target is left as it was."""
        try:
            self.file.close()
        except OSError:
            pass  # a full disk fails the close too; the file goes either way
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> IO:
        return self.file

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_bytes(target: Path, data: bytes, *, sync: bool = True) -> Path:
    """Replace ``target`` with ``data`` atomically."""
    with AtomicFile(target, "wb", sync=sync) as handle:
        handle.write(data)
    return Path(target)


def write_text(target: Path, text: str, *, encoding: str = "utf-8", sync: bool = True) -> Path:
    """Replace ``target`` with ``text`` atomically."""
    with AtomicFile(target, "w", encoding=encoding, sync=sync) as handle:
        handle.write(text)
    return Path(target)


def remove_stale(folder: Path, suffix: str, before: float) -> int:
    """Remove the temporary files that writes of ``*<suffix>`` files in ``folder`` left
    when killed (last changed before ``before``, a time; a live write's file is newer).
    Return how many were removed."""
    pattern = re.compile(rf"\..+{re.escape(suffix)}\.[0-9a-f]{{8}}\.tmp")
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _create_beside(target: Path) -> tuple[Path, int]:
    """Create a new, empty temporary file next to ``target``; return its path and fd."""
    while True:
        path = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
