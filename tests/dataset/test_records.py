"""Reading packed TFRecord shards back: labels, ratings and ids equal the manifest's."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.dataset.manifest import iter_manifest
from furrytag_cli.dataset.records import (
    RECORDS_INFO,
    RecordsInfo,
    ShardWriter,
    encode_example,
    parse_example,
    read_split,
    records_dir,
)
from furrytag_cli.model.categories import CategorySet
from tests.datasetfactory import packed_dataset


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    data, categories, _ = packed_dataset(tmp_path_factory.mktemp("records"))
    return data, categories


def dense(tags, head_tags):
    return np.array([float(tag in tags) for tag in head_tags], dtype=np.float32)


def test_read_split_gives_back_the_manifest(packed):
    data, categories = packed
    manifest = {e.id: e for e in iter_manifest(data)}
    targets = {"safe": 0.0, "questionable": 0.5, "explicit": 1.0}
    seen = []
    for split in ("train", "val", "test"):
        if not any(e.split == split for e in manifest.values()):
            continue
        for image, labels, rating, post_id in read_split(
            data, split, categories, with_id=True
        ).as_numpy_iterator():
            entry = manifest[int(post_id)]
            assert entry.split == split
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert max(image.shape[:2]) <= 37
            assert set(labels) == set(categories.head_names)
            for head, vector in labels.items():
                assert vector.dtype == np.float32
                np.testing.assert_array_equal(
                    vector, dense(entry.tags[head], categories.tags(head))
                )
            assert rating == targets[entry.rating]
            seen.append(entry.id)
    # In manifest order, every post once.
    assert sorted(seen) == sorted(manifest) and len(seen) == len(manifest)
    train = [e.id for e in manifest.values() if e.split == "train"]
    assert [i for i in seen if manifest[i].split == "train"] == train


def test_without_ids_elements_are_image_labels_rating(packed):
    data, categories = packed
    element = next(iter(read_split(data, "train", categories)))
    assert len(element) == 3


def test_a_seeded_shuffle_is_a_reproducible_permutation(packed):
    data, categories = packed

    def ids(**kwargs):
        dataset = read_split(data / "shards", "train", categories, with_id=True, **kwargs)
        return [int(x[3]) for x in dataset.as_numpy_iterator()]

    plain = ids()
    shuffled = ids(shuffle=True, seed=3)
    assert shuffled == ids(shuffle=True, seed=3)
    assert shuffled != plain and sorted(shuffled) == sorted(plain)


def test_examples_round_trip_including_empty_and_repeated_labels():
    example = encode_example(_jpeg(), {"a": [2, 0, 2], "b": []}, 0.5, 77)
    image, labels, rating, post_id = parse_example(example, {"a": 4, "b": 3}, with_id=True)
    assert image.shape == (12, 20, 3)
    np.testing.assert_array_equal(labels["a"].numpy(), [1, 0, 1, 0])
    np.testing.assert_array_equal(labels["b"].numpy(), [0, 0, 0])
    assert float(rating) == 0.5 and int(post_id) == 77


def test_shard_writer_names_shards_on_close_and_abort_removes_them(tmp_path):
    writer = ShardWriter(tmp_path, "val", shard_size=10)
    for i in range(25):
        writer.write(encode_example(_jpeg(), {}, 0.0, i))
    names = writer.close()
    assert names == [f"val-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names and writer.count == 25
    broken = ShardWriter(tmp_path / "x", "train", shard_size=2)
    (tmp_path / "x").mkdir()
    for i in range(3):
        broken.write(encode_example(_jpeg(), {}, 0.0, i))
    broken.abort()
    assert list((tmp_path / "x").iterdir()) == []


def test_reading_with_other_categories_is_refused(packed):
    data, categories = packed
    other = CategorySet({**categories.heads, "species": ("fox", "wolf")})
    with pytest.raises(DatasetError, match="different tag list for head 'species'"):
        read_split(data, "train", other)
    fewer_heads = CategorySet({h: t for h, t in categories.heads.items() if h != "body"})
    read_split(data, "train", fewer_heads)
    more = CategorySet({**categories.heads, "mood": ("happy",)})
    with pytest.raises(DatasetError, match="has no head 'mood'"):
        read_split(data, "train", more)


def test_missing_split_shards_and_info_are_clear_errors(packed, tmp_path):
    data, categories = packed
    with pytest.raises(
        DatasetError, match="has no examples of split 'dev' \\(splits with examples: train"
    ):
        read_split(data, "dev", categories)
    with pytest.raises(DatasetError, match=f"no {RECORDS_INFO} in .*pack the dataset first"):
        records_dir(tmp_path)
    folder = tmp_path / "shards"
    folder.mkdir()
    info = json.loads((data / "shards" / RECORDS_INFO).read_text())
    (folder / RECORDS_INFO).write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="shard file missing: .*train-00000"):
        read_split(tmp_path, "train", categories)
    (folder / RECORDS_INFO).write_text(json.dumps({**info, "format": 9}))
    with pytest.raises(DatasetError, match="not a valid records file .*format 9"):
        read_split(tmp_path, "train", categories)


def test_records_info_round_trips():
    info = RecordsInfo(32, 37, 90, {"a": ("x", "y")}, {"train": {"examples": 3, "shards": ["t"]}})
    assert RecordsInfo.from_dict(json.loads(json.dumps(info.to_dict())), "here") == info


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()
