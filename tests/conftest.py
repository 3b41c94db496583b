"""Shared fixtures: an isolated cache per test, tiny real models, real image files."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def furrytag_home(tmp_path, monkeypatch):
    """Point furrytag's cache at a fresh folder so tests never touch the user's cache."""
    home = tmp_path / "furrytag-home"
    monkeypatch.setenv("FURRYTAG_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def native_bundle_dir(tmp_path_factory):
    """A native bundle folder: tiny backbone, 32 px input, seeded random weights."""
    from tests.modelfactory import make_native_bundle

    return make_native_bundle(tmp_path_factory.mktemp("native") / "tiny-bundle")


@pytest.fixture(scope="session")
def legacy_zip(tmp_path_factory):
    """A zip in the original project's release format (SavedModel in a top folder)."""
    from tests.modelfactory import make_legacy_zip

    return make_legacy_zip(tmp_path_factory.mktemp("legacy"))
