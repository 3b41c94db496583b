"""The model cache: where downloaded models live, and what is cached.

Layout under ``<home>``:

- ``models/<name>/manifest.json`` — source URL, sha256 and size of the archive, date,
  digest of the unpacked files, and where the bundle sits inside them;
- ``models/<name>/unpacked/`` — the archive's contents, exactly as unpacked;
- ``downloads/<name>-<url hash>.part`` — a partial download, resumed by the next fetch;
- ``locks/<name>.lock`` — held while a process fetches or installs ``<name>``.

``<home>`` is ``$FURRYTAG_HOME`` when set, else the platform's user cache folder
(``~/.cache/furrytag`` on Linux).
"""

import hashlib
import json
import os
import re
from pathlib import Path

import platformdirs

from furrytag_cli.core.errors import DownloadError

MANIFEST = "manifest.json"
UNPACKED = "unpacked"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def cache_home(override: Path | None = None) -> Path:
    """The cache root: ``override``, else ``$FURRYTAG_HOME``, else the user cache dir."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("FURRYTAG_HOME")
    if env:
        return Path(env).expanduser()
    return platformdirs.user_cache_path("furrytag")


def check_model_name(name: str) -> str:
    """Return ``name`` when it is usable as a cache folder name, else raise DownloadError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise DownloadError(
            f"model name must be 1-100 letters, digits, '.', '_' or '-' and start with a "
            f"letter or digit; received {name!r}"
        )
    return name


def model_dir(name: str, home: Path | None = None) -> Path:
    """The folder a model called ``name`` is (or would be) cached in."""
    return cache_home(home) / "models" / name


def partial_path(name: str, url: str, home: Path | None = None) -> Path:
    """Where a download of ``url`` for model ``name`` accumulates until complete.

    Keyed by the URL so that bytes from one source are never resumed from another.
    """
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_home(home) / "downloads" / f"{name}-{key}.part"


def lock_path(name: str, home: Path | None = None) -> Path:
    """The lock file held while model ``name`` is fetched or installed."""
    return cache_home(home) / "locks" / f"{name}.lock"


def read_manifest(name: str, home: Path | None = None) -> dict | None:
    """The manifest of a cached model, or None when the model is not cached."""
    path = model_dir(name, home) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest.json`` into ``folder`` (temp file + rename, never half-written)."""
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def cached_models(home: Path | None = None) -> list[str]:
    """Names of the models with a manifest in the cache, sorted."""
    root = cache_home(home) / "models"
    try:
        names = [p.name for p in root.iterdir() if (p / MANIFEST).is_file()]
    except OSError:
        return []
    return sorted(names)


def tree_digest(root: Path) -> str:
    """A sha256 over every path, type, size and content under ``root``.

    Any added, removed, renamed or edited file changes it; symlinks count as links,
    never followed, so a link swapped in for a file is noticed.
    """
    outer = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entry = f"link\0{rel}\0{os.readlink(path)}"
            else:
                entry = f"file\0{rel}\0{path.stat().st_size}\0{file_sha256(path)}"
            outer.update(entry.encode("utf-8", "surrogateescape") + b"\n")
        for name in dirnames:
            if not (base / name).is_symlink():
                rel = (base / name).relative_to(root).as_posix()
                outer.update(f"dir\0{rel}\n".encode("utf-8", "surrogateescape"))
    return outer.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
