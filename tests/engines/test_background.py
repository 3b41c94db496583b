"""The first run on a CPU: keras at once, lite once a detached conversion has finished."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import pytest
from filelock import FileLock

from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.engines.background import (
    EAGER_IMAGES,
    InterimEngine,
    enabled,
    failure_path,
    main,
    start_conversion,
)
from furrytag_cli.engines.choose import load_engine
from furrytag_cli.engines.keras import KerasEngine
from furrytag_cli.engines.lite import LOCK, LiteEngine, cache_path, open_runner
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.tagging.tagger import Tagger
from tests.engines.test_lite import CumulativeProduct, assert_same_scores, custom_bundle, images
from tests.imagefactory import write_good_images

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def background_conversion(monkeypatch):
    monkeypatch.setenv("FURRYTAG_BACKGROUND_CONVERSION", "1")


@pytest.fixture
def native_copy(native_bundle_dir, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(native_bundle_dir, target)
    return target


def wait_for(condition, what: str, limit: float = 600):
    """Poll an observable state (a generous limit only stops a hung test)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_keras_tags_at_once_and_lite_takes_over_at_a_batch_boundary(native_copy):
    bundle = load_bundle(native_copy)
    notes = []
    engine = load_engine(bundle, engine="auto", device="cpu", embeddings=True, notify=notes.append)
    assert isinstance(engine, InterimEngine) and notes == []
    first = engine(images(3))
    assert len(notes) == 1 and "in the background" in notes[0] and "keras engine tags" in notes[0]
    assert engine.name == "keras" and engine.conversion is not None
    assert engine.conversion.wait(timeout=600) == 0
    assert engine.model_path.is_file()
    second = engine(images(3))
    assert engine.name == "keras, then lite"
    assert_same_scores(first, second)
    assert_same_scores(KerasEngine(bundle, embeddings=True)(images(3)), second)


def test_a_run_that_ends_first_leaves_the_conversion_to_finish(native_copy, tmp_path):
    write_good_images(tmp_path / "img")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    command = [sys.executable, "-m", "furrytag_cli", "tag", tmp_path / "img", "-m", native_copy]
    first = subprocess.run(
        [*command, "-o", tmp_path / "a.jsonl"], capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr
    notes = [line for line in first.stderr.splitlines() if "lite engine" in line]
    assert (
        len(notes) == 1
        and "converted for the lite engine in the background when it ends" in notes[0]
    )
    assert "(keras" in first.stderr
    target = cache_path(load_bundle(native_copy))
    wait_for(target.is_file, "the detached conversion")
    second = subprocess.run(
        [*command, "-o", tmp_path / "b.jsonl"], capture_output=True, text=True, env=env
    )
    assert second.returncode == 0 and "converting" not in second.stderr
    assert "(lite engine)" in second.stderr
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 10


def test_a_short_run_converts_after_its_last_batch(native_copy, tmp_path):
    paths = sorted(write_good_images(tmp_path / "img").values())
    tagger = Tagger(native_copy, engine="auto", device="cpu", batch_size=4, notify=None)
    assert isinstance(tagger.engine, InterimEngine)
    batches = tagger.score_batches(paths)
    for _ in range(3):  # 10 images: every batch is tagged before the conversion starts
        next(batches)
        assert tagger.engine.conversion is None
    assert next(batches, None) is None
    assert tagger.engine.conversion is not None
    assert tagger.engine.conversion.wait(timeout=600) == 0
    assert tagger.engine.model_path.is_file()


def test_a_long_run_on_many_cores_converts_alongside_from_its_first_batch(native_copy):
    bundle = load_bundle(native_copy)
    engine = InterimEngine(bundle, cores=8, lite_outruns_keras=True)
    engine.expect(EAGER_IMAGES)
    assert engine.conversion is not None
    first = engine(images(3))
    assert engine.conversion.wait(timeout=600) == 0
    assert_same_scores(first, engine(images(3)), embeddings=False)
    assert engine.name == "keras, then lite"


def test_a_long_run_on_few_cores_converts_before_its_first_batch(native_copy, tmp_path):
    notes = []
    bundle = load_bundle(native_copy)
    engine = InterimEngine(bundle, cores=2, lite_outruns_keras=True, notify=notes.append)
    engine.expect(EAGER_IMAGES)
    assert engine.conversion is None and engine.model_path.is_file()
    assert len(notes) == 1 and notes[0].startswith(f"converting {bundle.name!r} for the lite")
    assert_same_scores(KerasEngine(bundle)(images(3)), engine(images(3)), embeddings=False)
    assert engine.name == "lite"
    engine.finish()
    assert engine.conversion is None


@pytest.mark.parametrize("cores", [2, 8])
def test_where_keras_runs_as_fast_a_long_run_converts_after_it(native_copy, cores):
    notes = []
    engine = InterimEngine(
        load_bundle(native_copy), cores=cores, lite_outruns_keras=False, notify=notes.append
    )
    engine.expect(EAGER_IMAGES)
    assert engine.conversion is None and not engine.model_path.exists()
    assert len(notes) == 1 and "when it ends" in notes[0]
    engine(images(3))
    engine.finish()
    assert engine.name == "keras" and engine.conversion.wait(timeout=600) == 0


def test_a_cpu_with_avx512_is_one_where_keras_runs_as_fast(native_copy, tmp_path):
    from furrytag_cli.core.machine import cpu_flags

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\n")
    assert {"avx2", "avx512f"} <= cpu_flags(cpuinfo)
    assert cpu_flags(tmp_path / "missing") == frozenset()
    engine = InterimEngine(load_bundle(native_copy))
    assert engine.lite_outruns_keras == ("avx512f" not in cpu_flags())


def options(eager: bool = True) -> str:
    return json.dumps({"normalized": False, "quantize": "none", "home": None, "eager": eager})


def test_a_conversion_under_way_is_never_started_twice(native_copy):
    bundle = load_bundle(native_copy)
    target = cache_path(bundle)
    target.parent.mkdir(parents=True)
    with FileLock(target.parent / LOCK):
        # Another process holds the lock: this one leaves at once, writing nothing.
        process = start_conversion(bundle, "none", None, eager=True)
        assert process.wait(timeout=600) == 0
        assert not target.exists()
    assert start_conversion(bundle, "none", None, eager=True).wait(timeout=600) == 0
    assert open_runner(target, bundle, 1) is not None


def test_a_killed_conversion_leaves_nothing_half_written(native_copy):
    bundle = load_bundle(native_copy)
    target = cache_path(bundle)
    process = start_conversion(bundle, "none", None, eager=True)
    folder = target.parent
    wait_for(lambda: process.poll() is not None or any(folder.glob(".*.work")), "the conversion")
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Whatever the moment of the kill: no model file, or a whole one.
    assert not target.exists() or open_runner(target, bundle, 1) is not None
    engine = LiteEngine(bundle)
    assert open_runner(engine.model_path, bundle, 1) is not None
    leftovers = [p.name for p in folder.iterdir() if p.name not in (target.name, LOCK)]
    assert leftovers == []


def test_a_failed_conversion_is_remembered_and_keras_tags(tmp_path):
    folder = custom_bundle(tmp_path / "cumprod", keras.layers.Conv2D(4, 3), CumulativeProduct())
    bundle = load_bundle(folder)
    assert main([str(folder), options()]) == 1
    assert "Cumprod" in failure_path(cache_path(bundle)).read_text()
    notes = []
    engine = load_engine(bundle, engine="auto", device="cpu", notify=notes.append)
    assert isinstance(engine, KerasEngine)
    assert len(notes) == 1 and notes[0].endswith("using the keras engine instead")


def test_runs_of_one_tagger_announce_the_conversion_once(native_copy):
    notes = []
    engine = InterimEngine(load_bundle(native_copy), cores=8, notify=notes.append)
    for _ in range(3):
        engine.expect(10)
    assert len(notes) == 1 and "when it ends" in notes[0] and engine.conversion is None


def test_a_conversion_that_fails_in_a_long_run_is_not_tried_again_after_it(tmp_path):
    folder = custom_bundle(tmp_path / "cumprod", keras.layers.Conv2D(4, 3), CumulativeProduct())
    notes = []
    engine = InterimEngine(
        load_bundle(folder), cores=2, lite_outruns_keras=True, notify=notes.append
    )
    engine.expect(EAGER_IMAGES)
    assert failure_path(engine.model_path).is_file()
    assert notes[-1].endswith("using the keras engine instead")
    engine(images(3))
    engine.finish()
    assert engine.name == "keras" and engine.conversion is None
    said = len(notes)
    engine.expect(EAGER_IMAGES)  # a second long run of this tagger
    assert len(notes) == said and engine.conversion is None


@keras.saving.register_keras_serializable(package="furrytag_tests")
class FailsOnThisCpu(keras.layers.Layer):
    """Fails as TensorFlow's CPU kernels fail on grouped convolutions, once ``failing``."""

    failing = False

    def call(self, x):
        if FailsOnThisCpu.failing:
            raise ValueError("this kernel does not support grouped convolutions")
        return x


def test_a_model_keras_cannot_run_on_a_cpu_waits_for_its_conversion(tmp_path):
    folder = custom_bundle(tmp_path / "grouped", keras.layers.Conv2D(4, 3), FailsOnThisCpu())
    bundle = load_bundle(folder)
    engine = load_engine(bundle, engine="auto", device="cpu", notify=None)
    assert isinstance(engine, InterimEngine)
    FailsOnThisCpu.failing = True
    try:
        # The conversion (which cannot load this test-only layer) is waited for, then
        # the keras engine's own error stands.
        with pytest.raises(FurrytagError, match="grouped convolutions"):
            engine(images(3))
    finally:
        FailsOnThisCpu.failing = False
    assert engine.conversion.returncode == 1
    assert failure_path(engine.model_path).is_file()


def test_background_conversion_can_be_turned_off(native_copy, monkeypatch):
    monkeypatch.setenv("FURRYTAG_BACKGROUND_CONVERSION", "0")
    engine = load_engine(load_bundle(native_copy), engine="auto", device="cpu", notify=None)
    assert engine.name == "lite" and engine.model_path.is_file()
    monkeypatch.setenv("FURRYTAG_BACKGROUND_CONVERSION", "sometimes")
    with pytest.raises(FurrytagError, match="FURRYTAG_BACKGROUND_CONVERSION must be 1"):
        enabled()
