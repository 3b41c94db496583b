"""Shared fixtures: an isolated cache per test, tiny real models, random score sets."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def furrytag_home(tmp_path, monkeypatch):
    """Point furrytag's cache at a fresh folder so tests never touch the user's cache."""
    home = tmp_path / "furrytag-home"
    monkeypatch.setenv("FURRYTAG_HOME", str(home))
    # A first conversion runs in the test's own process: no detached converter outlives
    # a test (tests/engines/test_background.py turns it back on).
    monkeypatch.setenv("FURRYTAG_BACKGROUND_CONVERSION", "0")
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


@pytest.fixture(scope="session")
def legacy_dir(legacy_zip, tmp_path_factory):
    """The legacy zip unpacked: the SavedModel folder, named as the registry model."""
    import zipfile

    from tests.modelfactory import LEGACY_NAME

    target = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(legacy_zip) as zf:
        zf.extractall(target)
    return target / LEGACY_NAME


@pytest.fixture
def make_scoreset():
    """Build a ScoreSet of random labels and scores correlated with them.

    Head ``a`` holds the edge cases: tag ``a0`` never true, ``a1`` never predicted at
    0.5 (scores below 0.5), ``a2`` true on every image; scores are rounded so ties occur.
    """

    from furrytag_cli.evaluation.scoreset import ScoreSet

    def build(images: int = 400, seed: int = 0, rating: bool = True) -> ScoreSet:
        rng = np.random.default_rng(seed)
        sizes = {"a": 5, "b": 7, "c": 3}
        y_true, scores = {}, {}
        for head, size in sizes.items():
            y = rng.random((images, size)) < rng.uniform(0.02, 0.4, size)
            s = np.clip(0.35 * y + rng.normal(0.3, 0.2, (images, size)), 0, 1)
            y_true[head], scores[head] = y, np.round(s, 2).astype(np.float32)
        y_true["a"][:, 0] = False
        scores["a"][:, 1] *= 0.49
        y_true["a"][:, 2] = True
        tags = {h: tuple(f"{h}{i}" for i in range(n)) for h, n in sizes.items()}
        r_true = r_score = None
        if rating:
            r_true = rng.integers(0, 3, images) / 2
            r_score = np.clip(r_true + rng.normal(0, 0.2, images), 0, 1)
        return ScoreSet(tags, y_true, scores, r_true, r_score, meta={"model": "test"})

    return build
