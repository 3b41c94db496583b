"""Safe unpacking of model archives (zip, tar.gz).

An archive is refused as a whole when any member has ``..``, an absolute path or a NUL
in its name, or is a symlink, hard link, device, FIFO or socket (Python's zipfile would
silently rewrite such names). Bombs are stopped by caps on the member count and on the
bytes written, counted while streaming, so lying headers do not help. Unpacking goes
into a temp folder beside the destination, renamed into place only when complete.
"""

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import ArchiveError

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
MAGIC = (ZIP_MAGIC, GZIP_MAGIC)
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


@dataclass(frozen=True)
class Limits:
    """Caps that stop decompression bombs."""

    max_bytes: int = 16 << 30  # total bytes unpacked
    max_members: int = 50_000
    max_ratio: float = 200.0  # bytes unpacked per compressed byte, past `ratio_floor`
    ratio_floor: int = 4 << 20  # below this many bytes a high ratio is harmless


DEFAULT_LIMITS = Limits()


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar.gz"``, from the file's first bytes; ArchiveError otherwise."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "tar.gz"
    looks = " (it looks like an HTML page)" if b"<" in head[:2] else ""
    what = "it is empty" if not head else f"it starts with {head!r}{looks}"
    raise ArchiveError(
        f"{path} is not a zip or tar.gz archive: {what}. A model "
        f"archive must be a zip (starting with b'PK\\x03\\x04') or a tar.gz"
    )


def extract(archive: Path, dest: Path, *, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Unpack ``archive`` into the new folder ``dest`` (which must not exist yet)."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        budget = _Budget(archive, limits)
        try:
            if kind == "zip":
                _extract_zip(archive, tmp, budget)
            else:
                _extract_tar(archive, tmp, budget)
        except _CORRUPT as exc:
            raise ArchiveError(f"{archive} is not a valid {kind} archive: {exc}") from None
        except OSError as exc:
            raise ArchiveError(
                f"cannot unpack {archive} into {dest.parent}: {exc.strerror or exc}"
            ) from None
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


class _Budget:
    """Counts members and bytes as they are written; refuses the archive past a cap."""

    def __init__(self, archive: Path, limits: Limits) -> None:
        self.archive = archive
        self.limits = limits
        size = archive.stat().st_size
        self.cap = int(min(limits.max_bytes, max(limits.max_ratio * size, limits.ratio_floor)))
        self.written = 0
        self.members = 0
        self.seen: set[Path] = set()

    def member(self, name: str, root: Path) -> Path | None:
        """Count a member and return where it goes (None for the archive's root itself)."""
        self.members += 1
        if self.members > self.limits.max_members:
            self.refuse(f"it holds more than {self.limits.max_members} members")
        target = _member_path(name, root, self)
        if target in self.seen:
            self.refuse(f"member {name!r} appears twice")
        self.seen.add(target)
        return None if target == root else target

    def member_cap(self, compressed: int | None) -> int:
        """The most bytes one member may expand to, when its compressed size is known."""
        if compressed is None:
            return self.cap
        return int(max(self.limits.max_ratio * compressed, self.limits.ratio_floor))

    def add(self, n: int, member_written: int, member_cap: int, name: str) -> None:
        self.written += n
        if member_written > member_cap:
            self.refuse(
                f"member {name!r} expands past {member_cap} bytes, more than "
                f"{self.limits.max_ratio:.0f} times its compressed size (a zip bomb?)"
            )
        if self.written > self.cap:
            self.refuse(
                f"it expands past {self.cap} bytes (at most {self.limits.max_ratio:.0f} times "
                f"the archive's size and {self.limits.max_bytes} bytes in all; a zip bomb?)"
            )

    def refuse(self, why: str):
        raise ArchiveError(f"refusing the archive {self.archive}: {why}; nothing was installed")


def _member_path(name: str, root: Path, budget: _Budget) -> Path:
    if "\x00" in name:
        budget.refuse(f"member name {name!r} holds a NUL byte")
    if name.startswith(("/", "\\")) or _DRIVE_LETTER.match(name):
        budget.refuse(f"member {name!r} has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        budget.refuse(f"member {name!r} points outside the archive's folder ('..')")
    return root.joinpath(*(p for p in parts if p not in ("", ".")))


def _extract_zip(archive: Path, root: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:  # check every member before writing any
            # orig_filename: zipfile cuts names at NUL, hiding the trick from `filename`.
            target = budget.member(info.orig_filename, root)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                budget.refuse(f"member {info.orig_filename!r} is a {_kind_name(kind)}")
            plan.append((info, target))
        declared = sum(info.file_size for info in infos)
        if declared > budget.cap:
            budget.refuse(
                f"its members declare {declared} bytes, past the cap of {budget.cap} (a zip bomb?)"
            )
        free = shutil.disk_usage(root).free
        if declared > free:
            raise ArchiveError(
                f"not enough free space in {root.parent} to unpack {archive}: it needs "
                f"{declared} bytes and {free} are free"
            )
        for info, target in plan:
            if target is None:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                _copy(src, target, budget, budget.member_cap(info.compress_size), info.filename)


def _extract_tar(archive: Path, root: Path, budget: _Budget) -> None:
    # Stream mode: members are read once, in order, and never seeked back to.
    with tarfile.open(archive, mode="r|gz") as tf:
        for member in tf:
            target = budget.member(member.name, root)
            if member.isdir():
                if target is not None:
                    target.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isreg() or member.issparse() or target is None:
                budget.refuse(f"member {member.name!r} is a {_tar_kind(member)}")
            src = tf.extractfile(member)
            _copy(src, target, budget, budget.cap, member.name)


def _copy(src, target: Path, budget: _Budget, member_cap: int, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "xb") as dst:
        while block := src.read(1 << 20):
            written += len(block)
            budget.add(len(block), written, member_cap, name)
            dst.write(block)


def _kind_name(kind: int) -> str:
    names = {
        stat.S_IFLNK: "symlink",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
        stat.S_IFIFO: "FIFO",
        stat.S_IFSOCK: "socket",
    }
    return names.get(kind, f"special file (mode {kind:o})")


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symlink to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    return "file with no name" if member.isreg() else f"special member (type {member.type!r})"
