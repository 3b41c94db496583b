"""More decoding threads when the engine waits for images: the switch and what it keeps."""

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from furrytag_cli.lite import cpu_threads
from furrytag_cli.tagger import DecodePace, Tagger
from tests.imagefactory import write_bad_images


def test_the_pace_leaves_out_the_first_batch_and_compares_the_last_three():
    pace = DecodePace()
    pace.add(9.0, 0.1)  # the pipeline starting up
    pace.add(0.2, 0.1)
    pace.add(0.2, 0.1)
    assert not pace.decode_bound()
    pace.add(0.2, 0.1)
    assert pace.decode_bound()
    for _ in range(3):
        pace.add(0.05, 0.1)
    assert not pace.decode_bound()


def slow_to_decode(folder, count: int) -> list:
    """Large PNGs: decoding them takes far longer than the tiny model takes to score them."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = Image.new("RGB", (900, 700), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 600, 2))
            draw.ellipse([x, y, x + 250, y + 200], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        paths.append(folder / f"{i:03d}.png")
        image.save(paths[-1], compress_level=1)
    return paths


@pytest.mark.skipif(cpu_threads() < 2, reason="needs two cores to have more decoding threads")
def test_a_decode_bound_run_switches_to_every_core_and_loses_nothing(native_bundle_dir, tmp_path):
    good = slow_to_decode(tmp_path / "art", 36)
    bad = write_bad_images(tmp_path / "bad")
    # Bad files before the switch (batches 1-4) and after it.
    paths = list(good)
    paths.insert(1, bad["truncated.png"])
    paths.insert(9, bad["huge.png"])
    paths.insert(20, bad["notes.png"])
    paths.insert(30, bad["truncated.jpg"])
    shutil.copy(good[0], tmp_path / "same.png")
    paths.append(tmp_path / "same.png")

    adaptive = Tagger(native_bundle_dir, batch_size=2, engine="keras", notify=None)
    fixed = Tagger(native_bundle_dir, batch_size=2, engine="keras", notify=None, decode_threads=1)
    switched = [item for batch in adaptive.tag_batches(paths) for item in batch]
    steady = [item for batch in fixed.tag_batches(paths) for item in batch]
    assert adaptive.last_decode_threads == cpu_threads() and fixed.last_decode_threads == 1

    assert [item.index for item in switched] == list(range(len(paths)))
    assert [(i.path, i.ok, i.reason) for i in switched] == [(i.path, i.ok, i.reason) for i in steady]
    assert sum(not item.ok for item in switched) == 4
    for a, b in zip(switched, steady):
        if a.ok:
            assert a.tagging.rating_score == pytest.approx(b.tagging.rating_score, abs=1e-6)
            assert a.tagging.tags == b.tagging.tags
    assert switched[-1].tagging.tags == switched[0].tagging.tags


def test_a_run_too_short_to_gain_keeps_its_threads(native_bundle_dir, tmp_path):
    paths = slow_to_decode(tmp_path / "art", 12)
    tagger = Tagger(native_bundle_dir, batch_size=2, engine="keras", notify=None)
    items = [item for batch in tagger.tag_batches(paths) for item in batch]
    assert all(item.ok for item in items) and len(items) == 12
    assert tagger.last_decode_threads == max(1, cpu_threads() // 2)
