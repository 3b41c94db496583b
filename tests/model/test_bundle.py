"""Bundles: native round trip, inconsistent bundles refused, legacy parity with the original."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from furrytag_cli.core.errors import BundleError
from furrytag_cli.engines.choose import load_engine
from furrytag_cli.model.bundle import METADATA, write_metadata
from furrytag_cli.model.categories import HEADS
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.tagging.tagger import Tagger
from tests.imagefactory import write_good_images
from tests.modelfactory import LEGACY_NAME


def test_native_bundle_round_trips(native_bundle_dir):
    bundle = load_bundle(native_bundle_dir)
    assert bundle.kind == "native" and bundle.name == "tiny-test" and bundle.input_size == 32
    assert bundle.categories.head_names == HEADS
    assert bundle.provenance["furrytag_version"]
    engine = load_engine(bundle, embeddings=True)
    batch = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    first, second = engine(batch), load_engine(load_bundle(native_bundle_dir))(batch)
    for head in HEADS:
        assert first.heads[head].shape == (3, len(bundle.categories.tags(head)))
        np.testing.assert_array_equal(first.heads[head], second.heads[head])
    assert first.embedding.shape == (3, 64)


def test_native_bundle_loads_from_a_zip(native_bundle_dir, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in native_bundle_dir.iterdir():
            zf.write(file, f"top/{file.name}")
    bundle = load_bundle(archive)
    assert bundle.name == "tiny-test" and (bundle.path / "model.keras").is_file()
    home = tmp_path / "home"
    assert load_bundle(archive, home=home).path.is_relative_to(home / "unpacked")


def _copy(native_bundle_dir, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(native_bundle_dir, target)
    return target


def test_metadata_that_disagrees_with_the_weights_is_refused(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    meta = yaml.safe_load((copy / METADATA).read_text())
    meta["heads"][4]["tags"] = meta["heads"][4]["tags"][:-1]
    (copy / METADATA).write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match="head 'species' lists 49 tags .* outputs 50"):
        load_engine(load_bundle(copy))


def test_metadata_with_another_input_size_is_refused(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    meta = yaml.safe_load((copy / METADATA).read_text())
    meta["preprocess"]["size"] = 64
    (copy / METADATA).write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match="resized to 64 px but the model takes 32x32"):
        load_engine(load_bundle(copy))


def test_missing_head_and_unknown_keys_are_refused(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    meta = yaml.safe_load((copy / METADATA).read_text())
    del meta["heads"][0]
    (copy / METADATA).write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match="differ from the heads"):
        load_engine(load_bundle(copy))
    meta["treshold"] = 0.4
    (copy / METADATA).write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match="did you mean 'threshold'"):
        load_bundle(copy)


def test_unparsable_metadata_is_refused_with_its_line(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    (copy / METADATA).write_text("format: furrytag\nheads: [\n")
    with pytest.raises(
        BundleError, match=r"bundle metadata .*furrytag\.yaml is not valid YAML at line 3"
    ):
        load_bundle(copy)


def test_corrupt_weights_are_refused(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    (copy / "model.keras").write_bytes(b"PK\x03\x04 not really a keras file")
    with pytest.raises(BundleError, match="cannot load"):
        load_engine(load_bundle(copy))


def test_keras_file_with_a_lambda_layer_is_refused_in_safe_mode(tmp_path):
    import keras

    from furrytag_cli.model.bundle import Bundle
    from furrytag_cli.model.categories import CategorySet
    from furrytag_cli.model.preprocess import PreprocessSpec

    categories = CategorySet.load()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = {
        h: keras.layers.Dense(len(t), activation="sigmoid", name=f"{h}_output")(x)
        for h, t in categories.heads.items()
    }
    outputs["rating"] = keras.layers.Dense(1, activation="sigmoid", name="rating_output")(x)
    model = keras.Model(inputs, outputs)
    folder = tmp_path / "evil"
    folder.mkdir()
    model.save(folder / "model.keras")
    write_metadata(
        Bundle(
            path=folder,
            kind="native",
            name="evil",
            backbone="x",
            categories=categories,
            preprocess=PreprocessSpec(size=32),
        )
    )
    with pytest.raises(BundleError, match="safe mode refused it"):
        load_engine(load_bundle(folder))


def test_nothing_there_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="model not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no model found"):
        load_bundle(tmp_path / "empty")


# --- the original project's released format ------------------------------------------


def original_scores(model_dir: Path, image_paths, size: int, normalized: bool):
    """A straight re-statement of the original project's preprocessing and predict."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(str(model_dir))
    images = []
    for path in image_paths:
        image = tf.io.read_file(str(path))
        image = tf.image.decode_jpeg(image, channels=3)
        image = tf.image.resize(image, [size, size])
        image = image / 255.0
        if normalized:
            image = (image - 0.5) / 0.225
        images.append(image)
    outputs = model.predict(tf.stack(images), verbose=0)
    return dict(zip(model.output_names, outputs))


def test_legacy_model_scores_match_the_original_exactly(legacy_dir, tmp_path):
    images = write_good_images(tmp_path / "img")
    paths = [images["photo.jpg"], images["alpha.png"], images["gray.png"]]
    bundle = load_bundle(legacy_dir)
    assert bundle.kind == "legacy" and bundle.name == LEGACY_NAME and bundle.input_size == 32
    reference = original_scores(legacy_dir, paths, 32, normalized=True)
    tagger = Tagger(bundle, batch_size=2)
    items = [item for batch in tagger.tag_batches(paths) for item in batch]
    assert all(item.ok for item in items)
    from furrytag_cli.tagging.pipeline import inference_dataset

    rejected = {}
    batches = list(inference_dataset(paths, bundle.preprocess, batch_size=8, rejected=rejected))
    scores = tagger.engine(batches[0][1])
    for head in HEADS:
        np.testing.assert_allclose(
            scores.heads[head], reference[f"{head}_output"], atol=1e-5, rtol=0
        )
    np.testing.assert_allclose(scores.rating, reference["rating_output"][:, 0], atol=1e-5, rtol=0)
    # The tagger's own path on a CPU (decoding and resizing without TensorFlow) too.
    scored = [s for batch in tagger.score_batches(paths) for s in batch]
    for row, outcome in enumerate(scored):
        for head in HEADS:
            np.testing.assert_allclose(
                outcome.scores.heads[head][outcome.row],
                reference[f"{head}_output"][row],
                atol=1e-5,
                rtol=0,
            )
    # Tags come out alphabetically indexed and kept when strictly above 0.5.
    species = bundle.categories.tags("species")
    assert list(species) == sorted(species)
    kept = {tag for tag, _ in items[0].tagging.tags["species"]}
    expected = {species[i] for i in np.flatnonzero(reference["species_output"][0] > 0.5)}
    assert kept == expected


def test_legacy_embeddings_come_from_the_feature_layer(legacy_dir):
    bundle = load_bundle(legacy_dir)
    scores = load_engine(bundle, embeddings=True)(np.zeros((2, 32, 32, 3), "float32"))
    assert scores.embedding.shape == (2, 16)


def test_unidentified_legacy_model_needs_the_normalized_option(legacy_dir, tmp_path):
    renamed = tmp_path / "mystery"
    shutil.copytree(legacy_dir, renamed)
    with pytest.raises(BundleError, match="pass --normalized .* or --not-normalized"):
        load_bundle(renamed)
    assert load_bundle(renamed, normalized=False).preprocess.mean == (0.0, 0.0, 0.0)


def test_the_fingerprint_is_read_once_per_bundle_and_follows_the_files(native_bundle_dir, tmp_path):
    copy = _copy(native_bundle_dir, tmp_path)
    bundle = load_bundle(copy)
    first = bundle.fingerprint()
    assert bundle.model_id == f"tiny-test@{first}"
    (copy / "notes.txt").write_text("a file added after loading")
    assert bundle.fingerprint() == first  # hashed once: the files can be hundreds of MB
    assert load_bundle(copy).fingerprint() != first
