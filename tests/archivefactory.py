"""Real model archives for download and cache tests: a top folder holding a SavedModel's
files (placeholder bytes; nothing here loads them) or a native bundle's metadata."""

import io
import os
import tarfile
import zipfile
from pathlib import Path

SAVED_MODEL_FILES = {
    "saved_model.pb": b"\x08\x01" + os.urandom(2000),
    "keras_metadata.pb": b"{}" * 100,
    "variables/variables.index": os.urandom(3000),
    "variables/variables.data-00000-of-00001": os.urandom(200_000),
}


def model_zip(path: Path, top: str = "tiny_model", files: dict[str, bytes] | None = None) -> Path:
    """A zip holding ``files`` (default: a legacy SavedModel) inside the folder ``top``."""
    files = SAVED_MODEL_FILES if files is None else files
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/", b"")
        for name, data in files.items():
            zf.writestr(f"{top}/{name}", data)
    return path


def model_zip_bytes(top: str = "tiny_model", files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    model_zip(buffer, top, files)
    return buffer.getvalue()


def model_tar_gz(
    path: Path, top: str = "tiny_model", files: dict[str, bytes] | None = None
) -> Path:
    """A tar.gz holding ``files`` (default: a legacy SavedModel) inside the folder ``top``."""
    files = SAVED_MODEL_FILES if files is None else files
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def zip_with_member(path: Path, info: zipfile.ZipInfo | str, data: bytes = b"x") -> Path:
    """A model zip plus one extra (usually hostile) member."""
    model_zip(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(info, data)
    return path


def tar_with_member(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A tar.gz of a model plus one extra (usually hostile) member."""
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in SAVED_MODEL_FILES.items():
            ti = tarfile.TarInfo(f"tiny_model/{name}")
            ti.size = len(blob)
            tf.addfile(ti, io.BytesIO(blob))
        info.size = len(data) if info.isreg() else 0
        tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path
