"""The cache layout: the one place that decides every path under the cache home.

Layout under ``<home>``:

- ``models/<name>/manifest.json`` — source URL, sha256 and size of the archive, date,
  digest of the unpacked files, and where the bundle sits inside them;
- ``models/<name>/unpacked/`` — the archive's contents, exactly as unpacked; verified
  against the manifest on every use, so nothing is ever written in there;
- ``downloads/<name>-<url hash>.part`` — a partial download, resumed by the next fetch;
- ``locks/<name>.lock`` — held while a process fetches or installs ``<name>``;
- ``unpacked/<zip stem>-<hash>/`` — a zipped bundle opened by its path, unpacked once;
- ``unpacked/hf-<content hash>/`` — an archive from the Hugging Face Hub, unpacked once;
- ``lite/<bundle folder>-<hash>/`` — LiteRT conversions of bundles inside the cache or
  in folders furrytag cannot write to (others sit beside the bundle, in
  ``<bundle folder>.lite/``).

``<home>`` is the ``--cache-dir`` value (``home`` here) when given, else
``$FURRYTAG_HOME`` when set, else the platform's user cache folder (``~/.cache/furrytag``
on Linux). Every function takes ``home`` so that the value reaches each path.
"""

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import platformdirs

from furrytag_cli.core.atomic import write_text
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


def cache_folder(folder: Path, home: Path | None = None) -> Path:
    """Create ``folder`` (inside the cache) for writing; when the cache is not a folder one
    can write in, say which setting chose it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    except OSError as exc:
        root = cache_home(home)
        if home is not None:
            source = setting = "--cache-dir"
        elif os.environ.get("FURRYTAG_HOME"):
            source = setting = "FURRYTAG_HOME"
        else:
            source, setting = "the user cache folder", "FURRYTAG_HOME or --cache-dir"
        what = (
            "is a file, not a folder" if root.is_file() else f"cannot be written ({exc.strerror})"
        )
        raise DownloadError(
            f"the model cache {root} ({source}) {what}; point {setting} at a folder you can "
            "write in"
        ) from None
    return folder


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


def unpacked_zip_dir(archive: Path, home: Path | None = None) -> Path:
    """Where a zipped bundle opened by its path is unpacked, keyed by the zip's path, size
    and modification time (an edited zip unpacks afresh)."""
    archive = Path(archive)
    stat = archive.stat()
    key = hashlib.sha256(
        f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return cache_home(home) / "unpacked" / f"{archive.stem}-{key[:16]}"


def unpacked_hub_dir(archive: Path, home: Path | None = None) -> Path:
    """Where an archive fetched from the Hugging Face Hub is unpacked, keyed by its content."""
    return cache_home(home) / "unpacked" / f"hf-{file_sha256(Path(archive))[:16]}"


def conversion_dir(bundle_root: Path, suffix: str, home: Path | None = None) -> Path:
    """The folder converted copies of the bundle at ``bundle_root`` are cached in.

    Beside the bundle, in ``<folder><suffix>/``, when the bundle is the user's own and its
    parent folder is writable; else ``<home>/lite/<folder>-<hash of its path>/``. A bundle
    inside the cache home, or inside any installed model's folder, never gets files written
    next to it: installed files are checked against their recorded digest.
    """
    root = Path(bundle_root).resolve()
    beside = root.parent / f"{root.name}{suffix}"
    home_root = cache_home(home).resolve()
    if (
        not root.is_relative_to(home_root)
        and not in_installed_model(root, home)
        and os.access(beside if beside.is_dir() else root.parent, os.W_OK)
    ):
        return beside
    place = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return home_root / "lite" / f"{root.name}-{place}"


def in_installed_model(path: Path, home: Path | None = None) -> bool:
    """Whether ``path`` lies in the models folder of the cache home ``home``, or in the
    folder of a model installed under any cache home (one with a manifest)."""
    path = Path(path).resolve()
    if path.is_relative_to((cache_home(home) / "models").resolve()):
        return True
    return any(
        folder.name == UNPACKED and (folder.parent / MANIFEST).is_file() for folder in path.parents
    )


def read_manifest(name: str, home: Path | None = None) -> dict | None:
    """The manifest of a cached model, or None when the model is not cached."""
    path = model_dir(name, home) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest.json`` into ``folder`` (atomically: never half-written)."""
    write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


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
