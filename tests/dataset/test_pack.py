"""Packing fetched images into real TFRecord shards: names, sizes, bad and missing images."""

import io
import json
import math
import shutil
from collections import Counter

import pytest
from PIL import Image

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.manifest import iter_manifest, local_image
from furrytag_cli.dataset.pack import FAILURES, max_side_for, pack_dataset, prepare_image
from furrytag_cli.dataset.records import read_info
from furrytag_cli.model.categories import CategorySet
from tests.datasetfactory import packed_dataset, store_images, synth_dataset


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return packed_dataset(tmp_path_factory.mktemp("packed"))


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """(data dir with stored images and no shards, categories)."""
    data, site, categories = synth_dataset(tmp_path_factory.mktemp("fetched"), posts=30)
    store_images(site, data)
    return data, categories


@pytest.fixture
def copy(fetched, tmp_path):
    shutil.copytree(fetched[0], tmp_path / "data")
    return tmp_path / "data", fetched[1]


def shard_examples(folder, name):
    import tensorflow as tf

    return list(tf.data.TFRecordDataset(str(folder / name)).as_numpy_iterator())


def test_shards_hold_about_shard_size_examples_named_by_split(packed):
    data, _, report = packed
    per_split = Counter(e.split for e in iter_manifest(data))
    folder = data / "shards"
    assert report.folder == folder
    info = read_info(folder)
    assert (info.size, info.max_side) == (32, max_side_for(32)) == (32, 37)
    for split in ("train", "val", "test"):
        count = math.ceil(per_split[split] / 8)
        names = [f"{split}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
        assert report.shards[split] == info.splits[split]["shards"] == names
        assert report.examples[split] == info.splits[split]["examples"] == per_split[split]
        sizes = [len(shard_examples(folder, name)) for name in names]
        assert sum(sizes) == per_split[split] and all(s == 8 for s in sizes[:-1])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["records.json", *(n for s in report.shards.values() for n in s)]
    )
    assert report.failed == [] and report.missing == 0 and report.seconds > 0


def test_bad_images_are_reported_and_left_out(copy):
    data, categories = copy
    entries = list(iter_manifest(data))
    local_image(data, entries[0]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    local_image(data, entries[1]).unlink()
    report = pack_dataset(data, 32, categories, workers=2)
    assert sum(report.examples.values()) == len(entries) - 2
    assert report.missing == 1 and [f["id"] for f in report.failed] == [entries[0].id]
    (failure,) = [
        json.loads(line) for line in (data / "shards" / FAILURES).read_text().splitlines()
    ]
    assert failure["id"] == entries[0].id and "cannot decode" in failure["error"]


def test_images_are_stored_within_the_max_side(packed):
    import tensorflow as tf

    data, _, _ = packed
    folder = data / "shards"
    sides = []
    for name in read_info(folder).splits["train"]["shards"]:
        for raw in shard_examples(folder, name):
            example = tf.train.Example.FromString(raw)
            jpeg = example.features.feature["image/encoded"].bytes_list.value[0]
            with Image.open(io.BytesIO(jpeg)) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                sides.append(max(image.size))
    assert max(sides) == 37


def test_prepare_image_shrinks_flattens_alpha_and_keeps_small_images(tmp_path):
    big = Image.new("RGBA", (600, 300), (0, 0, 0, 0))
    big.paste((200, 0, 0, 255), (0, 0, 300, 300))
    big.save(tmp_path / "big.png")
    with Image.open(io.BytesIO(prepare_image(tmp_path / "big.png", 256))) as out:
        assert out.size == (256, 128) and out.mode == "RGB"
        assert min(out.getpixel((250, 64))) > 240  # transparent → white
        red = out.getpixel((10, 64))
        assert red[0] > 170 and red[1] < 40
    Image.new("L", (40, 20), 90).save(tmp_path / "small.jpg")
    with Image.open(io.BytesIO(prepare_image(tmp_path / "small.jpg", 256))) as out:
        assert out.size == (40, 20) and out.mode == "RGB"


def test_nothing_fetched_is_an_error_that_keeps_the_old_shards(copy):
    data, categories = copy
    pack_dataset(data, 32, categories, workers=1)
    before = sorted(p.name for p in (data / "shards").iterdir())
    shutil.rmtree(data / "images")
    with pytest.raises(DatasetError, match="none of the .* images .* run `furrytag dataset fetch"):
        pack_dataset(data, 32, categories)
    assert sorted(p.name for p in (data / "shards").iterdir()) == before


def test_no_manifest_is_an_error_that_creates_nothing(tmp_path):
    with pytest.raises(DatasetError, match="no manifest.jsonl in"):
        pack_dataset(tmp_path / "typo", 32)
    assert not (tmp_path / "typo").exists()


def test_repacking_one_split_keeps_the_others_unless_the_format_changes(copy):
    data, categories = copy
    first = pack_dataset(data, 32, categories, shard_size=4, workers=1)
    again = pack_dataset(data, 32, categories, shard_size=100, splits=("train",), workers=1)
    info = read_info(data / "shards")
    assert (
        info.splits["train"]["shards"] == again.shards["train"] == ["train-00000-of-00001.tfrecord"]
    )
    assert info.splits["val"] == {"examples": first.examples["val"], "shards": first.shards["val"]}
    assert all((data / "shards" / name).is_file() for name in first.shards["val"])
    pack_dataset(data, 48, categories, shard_size=100, splits=("train",), workers=1)
    info = read_info(data / "shards")
    assert set(info.splits) == {"train"} and info.size == 48
    assert sorted(p.name for p in (data / "shards").glob("*.tfrecord")) == [
        "train-00000-of-00001.tfrecord"
    ]


def test_a_manifest_tag_the_categories_lack_stops_without_leftovers(copy):
    data, categories = copy
    fewer = CategorySet({head: tags[:1] for head, tags in categories.heads.items()})
    with pytest.raises(DatasetError, match="which the categories do not list"):
        pack_dataset(data, 32, fewer, workers=1)
    assert [p.name for p in (data / "shards").iterdir()] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 4}, "--size must be at least 8; received 4"),
        ({"quality": 0}, "--quality must be from 1 to 100; received 0"),
        ({"shard_size": 0}, "--shard-size must be at least 1; received 0"),
        ({"workers": 0}, "--workers must be at least 1; received 0"),
        ({"splits": ("dev",)}, "unknown split\\(s\\) dev"),
    ],
)
def test_bad_options_are_rejected(copy, kwargs, message):
    data, categories = copy
    with pytest.raises(ConfigError, match=message):
        pack_dataset(data, **{"size": 32, **kwargs})
