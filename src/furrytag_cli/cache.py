"""The model cache: where downloaded models live, and what is cached.

Layout: ``<home>/models/<name>/`` holds the unpacked model and ``manifest.json``
(source URL, sha256 of the archive, size, date, digest of the unpacked files).
``<home>`` is ``$FURRYTAG_HOME`` when set, else the platform's user cache folder
(``~/.cache/furrytag`` on Linux).
"""

import json
import os
from pathlib import Path

import platformdirs

MANIFEST = "manifest.json"


def cache_home(override: Path | None = None) -> Path:
    """The cache root: ``override``, else ``$FURRYTAG_HOME``, else the user cache dir."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("FURRYTAG_HOME")
    if env:
        return Path(env).expanduser()
    return platformdirs.user_cache_path("furrytag")


def model_dir(name: str, home: Path | None = None) -> Path:
    """The folder a model called ``name`` is (or would be) cached in."""
    return cache_home(home) / "models" / name


def read_manifest(name: str, home: Path | None = None) -> dict | None:
    """The manifest of a cached model, or None when the model is not cached."""
    path = model_dir(name, home) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
