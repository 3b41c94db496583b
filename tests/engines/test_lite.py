"""The LiteRT engine: same scores as Keras, one cached conversion per bundle, fallback."""

import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from furrytag_cli.engines.choose import load_engine
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.engines.lite import LOCK, LiteEngine, cache_path
from furrytag_cli.model.bundle import Bundle, save_bundle, write_metadata
from furrytag_cli.model.categories import HEADS, CategorySet
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.model.preprocess import PreprocessSpec
from tests.modelfactory import LEGACY_NAME, make_native_bundle

TOLERANCE = 1e-4


@keras.saving.register_keras_serializable(package="furrytag_tests")
class CumulativeProduct(keras.layers.Layer):
    """A layer whose op (Cumprod) LiteRT has no kernel for."""

    def call(self, x):
        return keras.ops.cumprod(keras.ops.sigmoid(x), axis=-1)


def custom_bundle(path: Path, *layers) -> Path:
    """A native bundle whose backbone is ``layers`` (32 px input)."""
    keras.utils.set_random_seed(3)
    categories = CategorySet.load()
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for layer in layers:
        x = layer(x)
    features = keras.layers.Identity(name="embedding")(keras.layers.GlobalAveragePooling2D()(x))
    outputs = {
        h: keras.layers.Dense(len(t), activation="sigmoid", name=f"{h}_output")(features)
        for h, t in categories.heads.items()
    }
    outputs["rating"] = keras.layers.Dense(1, activation="sigmoid", name="rating_output")(features)
    save_bundle(
        keras.Model(inputs, outputs),
        path,
        Bundle(
            path=path,
            kind="native",
            name=path.name,
            backbone="custom",
            categories=categories,
            preprocess=PreprocessSpec(size=32),
        ),
    )
    return path


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 32, 3)).astype("float32")


def assert_same_scores(expected, received, embeddings: bool = True):
    for head in HEADS:
        np.testing.assert_allclose(
            received.heads[head], expected.heads[head], atol=TOLERANCE, rtol=0
        )
    np.testing.assert_allclose(received.rating, expected.rating, atol=TOLERANCE, rtol=0)
    if embeddings:
        np.testing.assert_allclose(received.embedding, expected.embedding, atol=TOLERANCE, rtol=0)


@pytest.fixture
def native_copy(native_bundle_dir, tmp_path):
    """A private copy of the tiny native bundle (its conversion cache starts empty)."""
    target = tmp_path / "bundle"
    shutil.copytree(native_bundle_dir, target)
    return target


def test_lite_scores_match_keras_on_a_native_bundle(native_bundle_dir):
    bundle = load_bundle(native_bundle_dir)
    keras_engine, lite_engine = (
        KerasEngine(bundle, embeddings=True),
        LiteEngine(bundle, embeddings=True),
    )
    assert lite_engine.name == "lite" and lite_engine.threads >= 1
    for batch in (images(5), images(2, seed=1), images(5, seed=2)):
        assert_same_scores(keras_engine(batch), lite_engine(batch))
    assert lite_engine(images(3)).embedding.shape == (3, 64)
    assert LiteEngine(bundle)(images(1)).embedding is None


def test_lite_scores_match_keras_on_a_legacy_bundle(legacy_dir):
    bundle = load_bundle(legacy_dir)
    batch = images(4) / 255.0
    lite_engine = LiteEngine(bundle, embeddings=True)
    assert_same_scores(KerasEngine(bundle, embeddings=True)(batch), lite_engine(batch))
    assert lite_engine(batch).embedding.shape == (4, 16)
    # The cache sits beside the SavedModel folder, never inside it.
    assert lite_engine.model_path.parent == legacy_dir.parent / f"{LEGACY_NAME}.lite"


def test_conversion_is_cached_beside_the_bundle_and_reused(native_copy):
    bundle = load_bundle(native_copy)
    first = LiteEngine(bundle)
    assert first.converted and first.model_path.parent == native_copy.parent / "bundle.lite"
    stamp = first.model_path.stat().st_mtime_ns
    second = LiteEngine(load_bundle(native_copy))
    assert not second.converted and second.model_path == first.model_path
    assert first.model_path.stat().st_mtime_ns == stamp
    kept = [p.name for p in first.model_path.parent.iterdir() if p.name != LOCK]
    assert kept == [first.model_path.name]


def test_cache_key_follows_the_weights_not_the_metadata(native_copy, tmp_path):
    bundle = load_bundle(native_copy)
    path = cache_path(bundle)
    bundle.thresholds = {"global": 0.3}
    write_metadata(bundle)
    assert cache_path(load_bundle(native_copy)) == path
    assert cache_path(bundle, "float16") != path
    make_native_bundle(native_copy, seed=8)
    changed = cache_path(load_bundle(native_copy))
    assert changed != path and changed.parent == path.parent


def test_bundles_in_the_model_cache_convert_into_the_cache_folder(native_bundle_dir, furrytag_home):
    inside = furrytag_home / "models" / "tiny" / "unpacked" / "tiny-bundle"
    shutil.copytree(native_bundle_dir, inside)
    path = cache_path(load_bundle(inside))
    assert path.is_relative_to(furrytag_home / "lite")
    assert not path.is_relative_to(furrytag_home / "models")


def test_models_installed_under_another_home_convert_into_the_given_home(
    native_bundle_dir, tmp_path
):
    installed = tmp_path / "elsewhere" / "models" / "tiny"
    shutil.copytree(native_bundle_dir, installed / "unpacked" / "tiny-bundle")
    (installed / "manifest.json").write_text("{}")
    path = cache_path(load_bundle(installed / "unpacked" / "tiny-bundle"), home=tmp_path / "mine")
    assert path.is_relative_to(tmp_path / "mine" / "lite")


@pytest.mark.parametrize("damage", ["garbage", pytest.param("truncated", marks=pytest.mark.slow)])
def test_a_damaged_cached_file_is_rebuilt(native_bundle_dir, native_copy, damage):
    reference = LiteEngine(load_bundle(native_bundle_dir))
    bundle = load_bundle(native_copy)
    target = cache_path(bundle)
    target.parent.mkdir(parents=True)
    good = reference.model_path.read_bytes()
    target.write_bytes(b"not a flatbuffer" * 10 if damage == "garbage" else good[: len(good) // 2])
    engine = LiteEngine(bundle)
    assert engine.converted and engine.model_path.read_bytes()[4:8] == b"TFL3"
    assert_same_scores(reference(images(2)), engine(images(2)), embeddings=False)


def test_an_op_lite_lacks_falls_back_to_keras_with_one_notice(tmp_path):
    folder = custom_bundle(tmp_path / "cumprod", keras.layers.Conv2D(4, 3), CumulativeProduct())
    notices = []
    engine = load_engine(load_bundle(folder), engine="lite", notify=notices.append)
    assert engine.name == "keras"
    assert len(notices) == 2 and "\n" not in notices[1]
    assert "converting 'cumprod'" in notices[0]
    assert "cannot convert 'cumprod' for the lite engine" in notices[1] and "Cumprod" in notices[1]
    assert notices[1].endswith("using the keras engine instead")
    assert engine(images(2)).heads["species"].shape == (2, 50)
    assert not list((tmp_path / "cumprod.lite").glob("*.tflite"))


def test_grouped_convolutions_run_through_lite(tmp_path):
    folder = custom_bundle(
        tmp_path / "grouped",
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.Conv2D(16, 7, groups=16, padding="same", activation="gelu"),
        keras.layers.Conv2D(32, 3, groups=4, padding="same"),
    )
    bundle = load_bundle(folder)
    batch = images(3)
    expected = keras.saving.load_model(folder / "model.keras")(batch)
    received = load_engine(bundle, engine="lite", notify=None)(batch)
    assert received.heads["species"].shape == (3, 50)
    for head in HEADS:
        np.testing.assert_allclose(
            received.heads[head], np.asarray(expected[head]), atol=TOLERANCE, rtol=0
        )


def test_a_legacy_model_with_grouped_convolutions_runs_through_lite(tmp_path):
    from tests.modelfactory import make_legacy_saved_model

    bundle = load_bundle(make_legacy_saved_model(tmp_path / LEGACY_NAME, grouped=True))
    batch = images(3) / 255.0
    lite_engine = load_engine(bundle, engine="lite", device="cpu", notify=None)
    assert lite_engine.name == "lite"
    assert_same_scores(KerasEngine(bundle)(batch), lite_engine(batch), embeddings=False)


def test_engine_choice(native_copy, monkeypatch):
    from furrytag_cli.core.errors import ConfigError

    monkeypatch.setenv("FURRYTAG_BACKGROUND_CONVERSION", "1")
    bundle = load_bundle(native_copy)
    # Before the first conversion the keras engine tags (while it converts in the background).
    assert load_engine(bundle, engine="auto", device="cpu", notify=None).name == "keras"
    LiteEngine(bundle)
    assert load_engine(bundle, engine="auto", device="cpu", notify=None).name == "lite"
    assert load_engine(bundle, engine="auto", device="gpu").name == "keras"
    assert load_engine(bundle).name == "keras"
    with pytest.raises(
        ConfigError, match="--engine must be one of auto, keras, lite, onnx; received 'fast'"
    ):
        load_engine(bundle, engine="fast")
    with pytest.raises(
        ConfigError, match="--quantize must be one of none, dynamic, float16; received 'int4'"
    ):
        load_engine(bundle, engine="lite", quantize="int4")
    with pytest.raises(ConfigError, match="--quantize applies to the lite engine"):
        load_engine(bundle, engine="keras", quantize="dynamic")
    notes = []
    assert (
        load_engine(
            bundle, engine="auto", device="gpu", quantize="dynamic", notify=notes.append
        ).name
        == "keras"
    )
    assert notes == [
        "--quantize applies to the lite engine; on a GPU the keras engine runs the model unquantized"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("quantize, tolerance", [("float16", 2e-3), ("dynamic", 5e-2)])
def test_quantized_variants_stay_close(native_copy, quantize, tolerance):
    bundle = load_bundle(native_copy)
    expected = LiteEngine(bundle)(images(4))
    engine = LiteEngine(bundle, quantize=quantize)
    assert engine.model_path.name.startswith(f"{quantize}-")
    received = engine(images(4))
    assert engine.model_path.stat().st_size < LiteEngine(bundle).model_path.stat().st_size
    for head in HEADS:
        np.testing.assert_allclose(
            received.heads[head], expected.heads[head], atol=tolerance, rtol=0
        )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_bundle_folder_converts_into_the_cache(native_copy, furrytag_home):
    os.chmod(native_copy.parent, 0o555)
    try:
        path = cache_path(load_bundle(native_copy))
    finally:
        os.chmod(native_copy.parent, 0o755)
    assert path.is_relative_to(furrytag_home / "lite")


def test_a_cache_that_cannot_be_written_still_tags_and_says_so(native_copy):
    (native_copy.parent / "bundle.lite").write_text("a file where the cache folder would go")
    bundle = load_bundle(native_copy)
    notes = []
    engine = LiteEngine(bundle, embeddings=True, notify=notes.append)
    assert engine.converted and not engine.model_path.exists()
    assert "cannot cache the converted model in" in notes[-1] and "convert it again" in notes[-1]
    batch = images(3)
    assert_same_scores(KerasEngine(bundle, embeddings=True)(batch), engine(batch))
