"""Models on the Hugging Face Hub: ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``.

Files come through ``huggingface_hub`` (its cache, so a model is fetched once per
commit). ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HOME`` and
``HF_HUB_CACHE`` are read at each call. The (sub)folder may hold a model's loose files
(``furrytag.yaml`` with ``model.keras`` or ``model.onnx``, or a SavedModel) or a single
archive of one (.zip, .tar.gz), which is unpacked once into furrytag's cache.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import DownloadError

PREFIX = "hf://"
_REF = re.compile(
    r"hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<subfolder>[\w./-]+?))?/?"
)
_MARKERS = ("furrytag.yaml", "saved_model.pb")
_ARCHIVES = (".zip", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class HubRef:
    """A model's place on the Hub."""

    repo: str
    revision: str | None = None
    subfolder: str | None = None

    @property
    def name(self) -> str:
        """A default cache name: the repo's, and the subfolder's last part when there is one."""
        tail = self.subfolder.rstrip("/").rsplit("/", 1)[-1] if self.subfolder else None
        return f"{self.repo.split('/')[1]}-{tail}" if tail else self.repo.split("/")[1]


def is_hub(text: str) -> bool:
    return str(text).startswith(PREFIX)


def parse(text: str) -> HubRef:
    """Parse ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``."""
    match = _REF.fullmatch(text)
    if match is None or ".." in text:
        raise DownloadError(
            f"{text!r} is not a Hugging Face model reference; write "
            "hf://OWNER/REPO, hf://OWNER/REPO@REVISION or hf://OWNER/REPO@REVISION/SUBFOLDER"
        )
    return HubRef(match["repo"], match["revision"], match["subfolder"])


def fetch(text: str, *, offline: bool = False, home: Path | None = None) -> Path:
    """The local folder of the model at ``text`` (fetched, or from the Hub cache)."""
    ref = parse(text)
    folder = _snapshot(ref, text, offline=offline)
    root = folder / ref.subfolder if ref.subfolder else folder
    if not root.is_dir():
        raise DownloadError(f"{text}: the repository has no folder {ref.subfolder!r}")
    if any(next(root.rglob(marker), None) is not None for marker in _MARKERS):
        return root
    archives = sorted(p for p in root.iterdir() if p.name.lower().endswith(_ARCHIVES))
    if len(archives) != 1:
        listing = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        raise DownloadError(
            f"{text} holds no model: no furrytag.yaml (furrytag bundle), saved_model.pb "
            f"(legacy SavedModel) or single .zip/.tar.gz archive; it holds {listing[:10] or 'nothing'}"
        )
    return _unpacked(archives[0], home)


def _snapshot(ref: HubRef, text: str, *, offline: bool) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise DownloadError(
            f"{text} needs the huggingface_hub package: pip install 'furrytag[hub]'"
        ) from None
    offline = offline or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    pattern = [f"{ref.subfolder.rstrip('/')}/*"] if ref.subfolder else None
    try:
        folder = huggingface_hub.snapshot_download(
            ref.repo,
            revision=ref.revision,
            allow_patterns=pattern,
            cache_dir=_hub_cache(),
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            token=os.environ.get("HF_TOKEN") or None,
            local_files_only=offline,
        )
    except errors.RevisionNotFoundError:
        raise DownloadError(f"{text}: no revision {ref.revision!r} in {ref.repo}") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise DownloadError(
            f"{text}: repository {ref.repo} not found, or private or gated: check the name, "
            "and set HF_TOKEN to a token that may read it"
        ) from None
    except errors.LocalEntryNotFoundError as exc:
        why = (
            "offline mode forbids fetching it" if offline else f"the Hub cannot be reached ({exc})"
        )
        raise DownloadError(
            f"{text} is not in the Hugging Face cache and {why}; fetch it once while online"
        ) from None
    except (errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise DownloadError(f"cannot fetch {text}: {exc}") from None
    return Path(folder)


def _hub_cache() -> str | None:
    """The Hub cache folder per the environment now (None: the library's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _unpacked(archive_path: Path, home: Path | None) -> Path:
    """Unpack an archive from the Hub once into furrytag's cache (keyed by its content)."""
    from furrytag_cli.store.archive import extract
    from furrytag_cli.store.layout import unpacked_hub_dir

    target = unpacked_hub_dir(archive_path.resolve(), home)
    if not target.is_dir():
        extract(archive_path.resolve(), target)
    return target
