"""Tagging on a CPU without TensorFlow: the same pixels, the same model input, no import."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.core.errors import BundleError
from furrytag_cli.engines.lite import LiteEngine
from furrytag_cli.model.legacy import saved_model_input_size
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_array, preprocess_image
from furrytag_cli.model.resize import resize
from furrytag_cli.tagging.decode import decode_jpeg, model_input
from furrytag_cli.tagging.pipeline import inference_dataset
from furrytag_cli.tagging.stream import image_batches
from tests.imagefactory import write_bad_images, write_good_images


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colours with noise: what JPEG meets in practice, not pure noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * rng.random(3)
    noise = rng.normal(0, 25, (height, width, 3))
    return (ramp + noise + rng.integers(0, 60, 3)).clip(0, 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


JPEGS = {
    "420": dict(quality=90),
    "444": dict(quality=95, subsampling=0),
    "422": dict(quality=80, subsampling=1),
    "progressive": dict(quality=85, progressive=True),
}


@pytest.mark.parametrize("kind", [*JPEGS, "gray"])
@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
def test_jpeg_pixels_are_the_ones_tensorflow_decodes(kind, ratio):
    import tensorflow as tf

    pixels = photo(203, 331, seed=ratio)
    if kind == "gray":
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0], "L").save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
    else:
        data = jpeg_bytes(pixels, **JPEGS[kind])
    expected = tf.io.decode_jpeg(data, channels=3, ratio=ratio).numpy()
    np.testing.assert_array_equal(decode_jpeg(data, ratio), expected)


@pytest.mark.parametrize("shape", [(40, 56), (300, 300), (17, 9), (701, 530), (2, 3)])
@pytest.mark.parametrize("size", [32, 96])
def test_resize_is_tensorflows(shape, size):
    import tensorflow as tf

    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    bilinear = tf.image.resize(image, [size, size]).numpy()
    np.testing.assert_array_equal(resize(image, size, antialias=False), bilinear)
    antialiased = tf.image.resize(image, [size, size], antialias=True).numpy()
    # Pillow weighs in double precision where TensorFlow uses float32.
    np.testing.assert_allclose(resize(image, size, antialias=True), antialiased, atol=3e-3)


SPECS = {
    "legacy": PreprocessSpec.legacy(32, normalized=True),
    "native": PreprocessSpec(size=32),
    "native-bilinear-drop": PreprocessSpec(size=48, antialias=False, alpha="drop", exif=False),
}


@pytest.mark.parametrize("name", SPECS)
def test_model_input_is_the_tf_data_pipelines(name, tmp_path):
    spec = SPECS[name]
    paths = sorted(write_good_images(tmp_path / "img").values())
    for i, shape in enumerate([(900, 1300), (1600, 700), (333, 2000)]):
        paths.append(tmp_path / f"big{i}.jpg")
        paths[-1].write_bytes(jpeg_bytes(photo(*shape, seed=i)))
    reference = {}
    for indices, images in inference_dataset(paths, spec, batch_size=4, rejected={}):
        reference.update(zip(indices.numpy().tolist(), images.numpy()))
    assert len(reference) == len(paths)
    for index, path in enumerate(paths):
        got = model_input(path, spec)
        # Legacy models get the very same numbers; antialiased resizing rounds differently.
        tolerance = 0 if not spec.antialias else 2e-4
        np.testing.assert_allclose(got, reference[index], atol=tolerance, err_msg=path.name)


def test_preprocessing_an_array_is_the_tensorflow_preprocessing():
    image = photo(77, 120)
    for spec in SPECS.values():
        expected = preprocess_image(image, spec).numpy()
        tolerance = 0 if not spec.antialias else 2e-4
        np.testing.assert_allclose(preprocess_array(image, spec), expected, atol=tolerance)


def test_batches_keep_input_order_and_name_each_failure(tmp_path):
    good = sorted(write_good_images(tmp_path / "good").values())
    bad = sorted(write_bad_images(tmp_path / "bad").values())
    paths = [p for pair in zip(good, bad) for p in pair] + good[len(bad) :]
    spec = PreprocessSpec(size=32)
    batches = list(image_batches(paths, spec, batch_size=3, threads=2))
    indices = [i for b in batches for i in b.indices]
    failed = [i for b in batches for i, _ in b.failed]
    assert indices == sorted(indices) and failed == sorted(failed)
    assert sorted(indices + failed) == list(range(len(paths)))
    assert {paths[i] for i in failed} == set(bad)
    assert all(len(b.indices) == 3 for b in batches[:-1])
    for batch in batches:
        for row, index in enumerate(batch.indices):
            np.testing.assert_array_equal(batch.images[row], model_input(paths[index], spec))
    reasons = dict(r for b in batches for r in b.failed)
    assert "empty file" in reasons[paths.index(tmp_path / "bad" / "empty.jpg")]


def test_a_legacy_models_input_size_is_read_without_tensorflow(legacy_dir, tmp_path):
    assert saved_model_input_size(legacy_dir) == 32
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(BundleError, match="not a readable SavedModel"):
        saved_model_input_size(broken)


NO_TENSORFLOW = """
import runpy, sys
sys.argv = ["furrytag", "tag", *sys.argv[1:]]
try:
    runpy.run_module("furrytag_cli", run_name="__main__")
except SystemExit as exc:
    print("EXIT", exc.code)
print("HEAVY", [m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules])
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["native", "legacy"])
def test_tagging_a_converted_model_on_a_cpu_never_imports_tensorflow(
    kind, native_bundle_dir, legacy_dir, tmp_path, furrytag_home
):
    import shutil

    source = native_bundle_dir if kind == "native" else legacy_dir
    model = tmp_path / source.name
    shutil.copytree(source, model)
    LiteEngine(load_bundle(model))  # the conversion, done once
    images = write_good_images(tmp_path / "img")
    out = tmp_path / "tags.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TENSORFLOW,
            str(tmp_path / "img"),
            "-m",
            str(model),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": "-1"},
    )
    assert "EXIT 0" in result.stdout, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert len(out.read_text().splitlines()) == len(images)
