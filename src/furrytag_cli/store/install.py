"""The model store: fetch, check and install models into the cache; find them there.

Installing takes a per-model lock, downloads into a partial file, checks the archive's
sha256 against a pinned one (or records it: trust on first use), unpacks into a staging
folder, locates the bundle, runs the caller's ``verify``, writes ``manifest.json`` and
renames the folder into place. Nothing sits at ``models/<name>`` unless it passed all of
that. Every later use re-checks the digest of the unpacked files against the manifest.
"""

import dataclasses
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

from filelock import FileLock, Timeout

from furrytag_cli.core.errors import ArchiveError, DownloadError, IntegrityError, UsageError
from furrytag_cli.core.schema import did_you_mean
from furrytag_cli.store import archive, gdrive, hub
from furrytag_cli.store import http as fetch
from furrytag_cli.store import layout as cache
from furrytag_cli.store.registry import ModelEntry, load_registry

BUNDLE_MARKERS = ("furrytag.yaml", "saved_model.pb")  # native bundle, legacy SavedModel
Verify = Callable[[Path], object]
_ARCHIVE_SUFFIX = re.compile(r"\.(zip|tar\.gz|tgz)$", re.IGNORECASE)


@dataclass(frozen=True)
class Installed:
    """A model in the cache: its ``name``, its ``bundle`` folder, the model's ``folder``
    and its ``manifest`` (source, sha256, whether pinned)."""

    name: str
    bundle: Path
    folder: Path
    manifest: dict


@dataclass(frozen=True)
class InstallSettings:
    """How a model is installed: ``sha256`` pins the archive's hash (without it the hash
    is recorded on first use); ``home`` is the cache home; ``force`` installs again over a
    cached copy; ``progress`` says what happens on stderr; ``verify`` is the check the
    model passes before it is installed; ``normalized`` (how a legacy SavedModel was
    trained) is recorded in its manifest."""

    sha256: str | None = None
    home: Path | None = None
    force: bool = False
    progress: bool = True
    verify: Verify | None = None
    normalized: bool | None = None


def install_model(
    name: str | None = None,
    *,
    url: str | None = None,
    from_file: Path | None = None,
    sha256: str | None = None,
    normalized: bool | None = None,
    force: bool = False,
    offline: bool = False,
    home: Path | None = None,
    progress: bool = True,
    verify_for: Callable[[bool | None], Verify] | None = None,
) -> Installed:
    """Get a model into the cache as ``furrytag download`` does; return it.

    - ``from_file``: install that archive (or model folder) as ``name``;
    - ``url``: fetch the archive there, or ``hf://OWNER/REPO``, and install it as
      ``name`` (default: the URL's file name or the repository's name);
    - a known model: the verified cached copy, else installed from its sources;
    - another name: the verified cached copy.

    ``force`` fetches again even when cached (another name: from where it came from).
    ``sha256`` pins the archive's hash (a known model has its own pin); ``normalized``
    says how a legacy SavedModel was trained (default: as the registry or the earlier
    install recorded). ``offline`` only checks the cached copy (or the Hugging Face
    cache). ``verify_for(normalized)`` gives the check a model passes before it is
    installed. Conflicting arguments are a UsageError.
    """
    if url and from_file:
        raise UsageError("give either --url or --from-file, not both")
    if offline and (from_file or force or (url and not hub.is_hub(url))):
        raise UsageError(
            "--offline only checks a cached model (or the Hugging Face cache); drop --url, "
            "--from-file and --force, or drop --offline"
        )
    known = load_registry().models.get(name) if name else None
    pin = sha256 or (known.sha256 if known else None)
    if normalized is None and known is not None and known.format == "legacy":
        normalized = known.normalized
    if normalized is None and name and known is None and force and not (url or from_file):
        normalized = (cache.read_manifest(name, home) or {}).get("normalized")
    verify = verify_for(normalized) if verify_for is not None else None
    common = {"home": home, "progress": progress, "verify": verify}
    settings = InstallSettings(sha256=pin, force=force, normalized=normalized, **common)
    if from_file is not None:
        if not name:
            raise UsageError("--from-file needs the NAME to install the model under")
        bundle = install_from_file(name, from_file, settings)
    elif url and hub.is_hub(url):
        name = name or hub.parse(url).name
        bundle = install_from_hub(name, url, settings, offline=offline)
    elif url:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise UsageError(
                f"--url takes an http:// or https:// address, or hf://OWNER/REPO; received {url!r}"
            )
        name = name or _name_from_url(url)
        bundle = install_from_url(name, url, settings)
    elif not name:
        raise UsageError("give a model NAME (see `furrytag models`), or --url URL")
    elif known is None and force:
        source = (cache.read_manifest(name, home) or {}).get("source", "")
        if hub.is_hub(source):
            bundle = install_from_hub(name, source, settings)
        elif source.startswith(("https:", "http:")):
            bundle = install_from_url(name, source, settings)
        else:
            raise UsageError(
                f"{name!r} is not a known model; to replace it, "
                f"pass --url URL or --from-file ARCHIVE"
            )
    elif known is None:
        bundle = ensure_model(name, offline=offline, **common)
    elif force:
        bundle = install_entry(dataclasses.replace(known, sha256=pin), force=True, **common)
    else:
        bundle = ensure_model(dataclasses.replace(known, sha256=pin), offline=offline, **common)
    return Installed(
        name, bundle, cache.model_dir(name, home), cache.read_manifest(name, home) or {}
    )


def _name_from_url(url: str) -> str:
    stem = _ARCHIVE_SUFFIX.sub("", unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    if not stem or stem in ("uc", "download", "view") or not re.fullmatch(r"[\w.-]+", stem):
        raise UsageError(f"cannot tell a model name from {url}; pass --name NAME")
    return stem


def install_from_url(
    name: str,
    url: str,
    settings: InstallSettings = InstallSettings(),
    *,
    policy: fetch.FetchPolicy = fetch.DEFAULT_POLICY,
) -> Path:
    """Fetch the archive at ``url``, check it, install it as ``name``; return the bundle.

    A cached copy is verified and returned instead unless ``settings.force``.
    """
    cache.check_model_name(name)
    sha256, home, progress = _pin(settings.sha256), settings.home, settings.progress
    url = gdrive.normalize_url(url)
    with _locked(name, home, progress):
        if not settings.force and (cached := _cached_bundle(name, home, sha256)) is not None:
            _say(
                progress,
                f"{name} is already cached in {cache.model_dir(name, home)}; "
                f"pass --force to fetch it again",
            )
            return cached
        part = cache.partial_path(name, url, home)
        _say(progress, f"Downloading {name} from {url} into {cache.model_dir(name, home)}")
        while True:
            got = fetch.download(
                url, part, progress=progress, label=name, magic=archive.MAGIC, policy=policy
            )
            try:
                bundle = _install(name, part, url, got.filename, settings)
            except (IntegrityError, ArchiveError):
                part.unlink(missing_ok=True)  # a failed file is never trusted again
                if not got.resumed_from:
                    raise
                # The bytes kept from an earlier run may be what is wrong: fetch once afresh.
                _say(
                    progress,
                    "The resumed download failed its checks; fetching it again from the start",
                )
                continue
            part.unlink(missing_ok=True)
            return bundle


def install_from_file(
    name: str, archive_path: Path, settings: InstallSettings = InstallSettings()
) -> Path:
    """Install an archive, or a model's folder, already on disk as ``name``; return the
    bundle's folder."""
    cache.check_model_name(name)
    sha256, home, progress = _pin(settings.sha256), settings.home, settings.progress
    path = Path(archive_path).expanduser()
    if path.is_dir():
        return install_from_folder(name, path, settings, source=path.resolve().as_uri())
    if not path.is_file():
        raise DownloadError(
            f"no archive or folder at {path}; give a .zip or .tar.gz file, or a model's folder"
        )
    with _locked(name, home, progress):
        if not settings.force and (cached := _cached_bundle(name, home, sha256)) is not None:
            _say(
                progress,
                f"{name} is already cached in {cache.model_dir(name, home)}; "
                f"pass --force to replace it with {path}",
            )
            return cached
        _say(progress, f"Installing {name} from {path} into {cache.model_dir(name, home)}")
        return _install(name, path, path.resolve().as_uri(), path.name, settings)


def install_from_folder(
    name: str,
    folder: Path,
    settings: InstallSettings = InstallSettings(),
    *,
    source: str,
    top: str | None = None,
) -> Path:
    """Install a model's loose files (a folder holding one) as ``name`` by copying them
    into ``unpacked/<top>/`` (default: the folder's own name, which names a legacy model);
    the digest of the folder's files stands for an archive's sha256."""
    cache.check_model_name(name)
    sha256, home, progress = _pin(settings.sha256), settings.home, settings.progress
    folder = Path(folder)
    with _locked(name, home, progress):
        if not settings.force and (cached := _cached_bundle(name, home, sha256)) is not None:
            _say(
                progress,
                f"{name} is already cached in {cache.model_dir(name, home)}; "
                f"pass --force to replace it with {source}",
            )
            return cached
        digest = cache.tree_digest(folder)
        if sha256 and digest != sha256:
            raise IntegrityError(
                f"the files from {source} have digest {digest}, but {sha256} is pinned; "
                "nothing was installed"
            )
        _say(progress, f"Installing {name} from {source} into {cache.model_dir(name, home)}")
        return _install_tree(
            name,
            lambda target: _copy(folder, target, top or folder.name),
            source=source,
            record={
                "filename": folder.name,
                "sha256": digest,
                "size": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
                "pinned": bool(sha256),
            },
            settings=settings,
        )


def install_from_hub(
    name: str, ref: str, settings: InstallSettings = InstallSettings(), *, offline: bool = False
) -> Path:
    """Fetch ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]`` and install it as ``name``."""
    cache.check_model_name(name)
    home, progress = settings.home, settings.progress
    cached = None if settings.force else _cached_bundle(name, home, _pin(settings.sha256))
    if cached is not None:
        _say(progress, f"{name} is already cached in {cache.model_dir(name, home)}")
        return cached
    _say(progress, f"Fetching {name} from {ref} (Hugging Face cache)")
    return install_from_folder(
        name,
        hub.fetch(ref, offline=offline, home=home),
        dataclasses.replace(settings, force=True),
        source=ref,
        top=name,
    )


def _copy(folder: Path, target: Path, top: str) -> Path:
    """Copy ``folder``'s files (links followed) to ``target/top``; return ``target``."""
    shutil.copytree(folder, target / top, symlinks=False)
    return target


def install_entry(
    entry: ModelEntry,
    *,
    home: Path | None = None,
    force: bool = False,
    progress: bool = True,
    verify: Verify | None = None,
    policy: fetch.FetchPolicy = fetch.DEFAULT_POLICY,
) -> Path:
    """Install a registry model from its sources, tried in order until one works."""
    settings = InstallSettings(
        sha256=entry.sha256, home=home, force=force, progress=progress, verify=verify
    )
    failures = []
    for source in entry.sources:
        try:
            if hub.is_hub(source):
                return install_from_hub(entry.name, source, settings)
            return install_from_url(entry.name, source, settings, policy=policy)
        except DownloadError as exc:
            failures.append(f"{source}: {exc}")
            if len(failures) < len(entry.sources):
                _say(
                    progress,
                    f"Could not install {entry.name} from {source}; trying the next source",
                )
    if len(failures) == 1:
        raise DownloadError(failures[0].split(": ", 1)[1])
    raise DownloadError(
        f"model {entry.name!r} could not be installed from any of its {len(failures)} sources: "
        + "; ".join(failures)
    )


def ensure_model(
    entry_or_name: ModelEntry | str,
    *,
    home: Path | None = None,
    offline: bool = False,
    progress: bool = True,
    verify: Verify | None = None,
    policy: fetch.FetchPolicy = fetch.DEFAULT_POLICY,
) -> Path:
    """The bundle folder of a model: verified from the cache, else fetched and installed.

    A name that is not in the registry works when a model of that name is cached.
    With ``offline`` nothing is fetched: a missing model is a DownloadError saying what
    is cached and how to get this one.
    """
    if isinstance(entry_or_name, ModelEntry):
        entry, name = entry_or_name, entry_or_name.name
    else:
        name = cache.check_model_name(entry_or_name)
        entry = load_registry().models.get(name)
    cached = _cached_bundle(name, home, entry.sha256 if entry else None)
    if cached is not None:
        return cached
    if offline:
        raise DownloadError(_offline_message(name, entry, home))
    if entry is None:
        known = load_registry().models
        raise DownloadError(
            f"model {name!r} is neither a known model{did_you_mean(name, known)} nor cached in "
            f"{cache.cache_home(home) / 'models'}; known models: {', '.join(known)}. Install "
            f"another one with `furrytag download {name} --url URL`"
        )
    return install_entry(entry, home=home, progress=progress, verify=verify, policy=policy)


def verify_cached(name: str, home: Path | None = None) -> None:
    """Check that the cached files of ``name`` are exactly those installed.

    Raises DownloadError when the model is not cached, IntegrityError when its files
    changed since they were installed.
    """
    folder = cache.model_dir(name, home)
    manifest = cache.read_manifest(name, home)
    if manifest is None:
        raise DownloadError(
            f"model {name!r} is not cached in {folder}; fetch it with `furrytag download {name}`"
        )
    root = folder / cache.UNPACKED
    try:
        digest = cache.tree_digest(root) if root.is_dir() else "missing"
    except OSError as exc:
        digest = f"unreadable ({exc})"
    if digest != manifest.get("tree_sha256"):
        raise IntegrityError(
            f"the cached files of model {name!r} in {folder} changed since they were "
            f"installed (digest {digest}, recorded {manifest.get('tree_sha256')}); they may "
            f"be corrupt or tampered with, so furrytag will not use them. Fetch a fresh copy "
            f"with `furrytag download {name} --force`"
        )


def _cached_bundle(name: str, home: Path | None, sha256: str | None) -> Path | None:
    """The verified bundle folder of a cached model, or None when it is not cached."""
    manifest = cache.read_manifest(name, home)
    if manifest is None:
        return None
    verify_cached(name, home)
    if sha256 and manifest.get("sha256") != sha256:
        raise IntegrityError(
            f"cached model {name!r} was installed from an archive with sha256 "
            f"{manifest.get('sha256')}, but {sha256} is pinned; fetch the pinned one with "
            f"`furrytag download {name} --force`"
        )
    root = (cache.model_dir(name, home) / cache.UNPACKED).resolve()
    bundle = (root / str(manifest.get("bundle", ""))).resolve()
    if not bundle.is_relative_to(root) or not bundle.is_dir():
        raise IntegrityError(
            f"the manifest of cached model {name!r} points at {bundle}, which is not a folder "
            f"of the model; fetch a fresh copy with `furrytag download {name} --force`"
        )
    return bundle


def _install(
    name: str, archive_path: Path, source: str, filename: str, settings: InstallSettings
) -> Path:
    sha256 = _pin(settings.sha256)
    digest = cache.file_sha256(archive_path)
    if sha256 and digest != sha256:
        raise IntegrityError(
            f"the archive from {source} has sha256 {digest}, but {sha256} is pinned; nothing "
            f"was installed. The file is corrupt or not the one pinned: try again, or fetch "
            f"it from another mirror with `--url`"
        )
    return _install_tree(
        name,
        lambda target: archive.extract(archive_path, target),
        source=source,
        record={
            "filename": filename,
            "sha256": digest,
            "size": archive_path.stat().st_size,
            "pinned": bool(sha256),
        },
        settings=settings,
    )


def _install_tree(name, fill, *, source, record, settings: InstallSettings) -> Path:
    """Fill a staging folder with ``fill(target)``, check it and move it into place."""
    home, verify, progress = settings.home, settings.verify, settings.progress
    final = cache.model_dir(name, home)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{name}~stage-", dir=final.parent))
    try:
        unpacked = fill(stage / cache.UNPACKED)
        bundle = _locate(unpacked, source)
        if verify is not None:
            verify(bundle)
        manifest = {
            "name": name,
            "source": source,
            **record,
            "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "bundle": bundle.relative_to(unpacked).as_posix(),
            "tree_sha256": cache.tree_digest(unpacked),
        }
        if settings.normalized is not None:
            manifest["normalized"] = settings.normalized
        cache.write_manifest(stage, manifest)
        _swap(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    digest = record["sha256"]
    pin = (
        "matches the pinned hash"
        if record["pinned"]
        else (f"recorded on first use; pin it with `--sha256 {digest}`")
    )
    _say(progress, f"Installed {name} in {final} (sha256 {digest}, {pin})")
    return final / cache.UNPACKED / manifest["bundle"]


def _locate(root: Path, source: str) -> Path:
    """The shallowest folder holding a bundle marker; several at that depth is an error."""
    found = sorted(
        {p.parent for marker in BUNDLE_MARKERS for p in root.rglob(marker) if p.is_file()},
        key=lambda p: (len(p.parts), str(p)),
    )
    if not found:
        listing = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))[:10]
        raise ArchiveError(
            f"the archive from {source} holds no model: no furrytag.yaml (furrytag bundle) or "
            f"saved_model.pb (legacy SavedModel) in it; it holds {listing or 'nothing'}"
        )
    top = [p for p in found if len(p.parts) == len(found[0].parts)]
    if len(top) > 1:
        raise ArchiveError(
            f"the archive from {source} holds several models "
            f"({', '.join(p.relative_to(root).as_posix() for p in top)}); install each from "
            f"an archive of its own"
        )
    return found[0]


def _swap(stage: Path, final: Path) -> None:
    """Put ``stage`` at ``final``; an older copy is moved aside first, then deleted."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}~old-{os.getpid()}")
        os.rename(final, old)
    os.rename(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _locked(name: str, home: Path | None, progress: bool) -> Iterator[None]:
    """Hold the model's lock, so two processes never fetch or install it at once."""
    path = cache.lock_path(name, home)
    cache.cache_folder(path.parent, home)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(
            progress, f"Waiting for another furrytag process that is fetching {name} (lock {path})"
        )
        lock.acquire()
    try:
        # Staging and moved-aside folders of a crashed run are ours to clear under the lock.
        for leftover in cache.model_dir(name, home).parent.glob(f".{name}~*"):
            shutil.rmtree(leftover, ignore_errors=True)
        yield
    finally:
        lock.release()


def _offline_message(name: str, entry: ModelEntry | None, home: Path | None) -> str:
    cached = cache.cached_models(home)
    where = cache.cache_home(home) / "models"
    have = f"cached there: {', '.join(cached)}" if cached else "nothing is cached there"
    fetch_it = (
        f"`furrytag download {name}` (from {entry.sources[0]})"
        if entry
        else f"`furrytag download {name} --url URL`"
    )
    return (
        f"model {name!r} is not cached in {where} ({have}), and offline mode forbids "
        f"downloading it. Fetch it with {fetch_it} while online, or "
        f"download the archive yourself and install it with "
        f"`furrytag download --from-file ZIP {name}`"
    )


def _pin(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    pin = sha256.strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise DownloadError(f"a sha256 is 64 hex digits; received {sha256!r}")
    return pin


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)
