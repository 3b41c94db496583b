"""Thumbnails: WebP at 256 px, made in parallel, reused while the image is unchanged."""

import os

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.core.errors import OutputError
from furrytag_cli.gallery.thumbs import SIZE, make_thumbnails, thumbnail_name


def write_image(path, size=(600, 300), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_thumbnails_are_small_webp_and_report_missing_and_unreadable(tmp_path):
    files = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    files.append(tmp_path / "gone.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    files.append(tmp_path / "bad.jpg")
    done = []
    thumbs = make_thumbnails(files, tmp_path / "thumbs", workers=2, on_done=done.append)
    assert sum(done) == len(files)
    assert [t.status for t in thumbs] == ["ok"] * 5 + ["missing", "unreadable"]
    assert "cannot be read as an image" in thumbs[-1].reason
    with Image.open(tmp_path / "thumbs" / thumbs[0].name) as image:
        assert image.format == "WEBP" and image.size == (SIZE, SIZE // 2)
    assert len({t.name for t in thumbs[:5]}) == 5


def test_unchanged_images_keep_their_thumbnails_and_changed_ones_get_new(tmp_path):
    files = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    folder = tmp_path / "thumbs"
    first = make_thumbnails(files, folder)
    made = {t.name: os.stat(folder / t.name).st_mtime_ns for t in first}
    os.utime(folder / first[0].name, ns=(1, 1))
    write_image(files[1], size=(100, 400), seed=9)
    os.utime(files[1], ns=(10**18, 10**18))
    second = make_thumbnails(files, folder)
    assert second[0].name == first[0].name and os.stat(folder / first[0].name).st_mtime_ns == 1
    assert second[2].name == first[2].name
    assert os.stat(folder / second[2].name).st_mtime_ns == made[first[2].name]
    assert second[1].name != first[1].name
    assert not (folder / first[1].name).exists()
    with Image.open(folder / second[1].name) as image:
        assert image.size == (SIZE // 4, SIZE)


def test_one_image_named_twice_gets_one_thumbnail(tmp_path):
    image = write_image(tmp_path / "a.png")
    thumbs = make_thumbnails([image, tmp_path / "a.png", image], tmp_path / "thumbs", workers=2)
    assert len({t.name for t in thumbs}) == 1 and [t.status for t in thumbs] == ["ok"] * 3
    assert len(list((tmp_path / "thumbs").iterdir())) == 1


def test_a_thumbnail_that_cannot_be_written_is_an_output_error(tmp_path):
    image = write_image(tmp_path / "a.png")
    folder = tmp_path / "thumbs"
    (folder / thumbnail_name(image)).mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(OutputError, match="cannot write the thumbnail"):
        make_thumbnails([image], folder)
    assert [p.name for p in folder.iterdir()] == [thumbnail_name(image)]


def test_every_kind_of_image_tag_reads_gets_a_faithful_thumbnail(tmp_path):
    from tests.imagefactory import write_good_images

    files = write_good_images(tmp_path / "imgs")
    thumbs = make_thumbnails(list(files.values()), tmp_path / "thumbs")
    assert [t.status for t in thumbs] == ["ok"] * len(files)
    for name, thumb in zip(files, thumbs):
        with Image.open(tmp_path / "thumbs" / thumb.name) as image:
            assert image.mode == "RGB"
            mean = np.asarray(image).mean()
        assert 60 < mean < 200, (name, mean)  # random pixels: never clipped to white or black
