"""The dataset manifest: split hashing, entries, stats read back or recounted."""

import json

import pytest

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.build import build_dataset
from furrytag_cli.dataset.manifest import (
    STATS,
    ManifestEntry,
    SplitRatios,
    iter_manifest,
    manifest_path,
    read_stats,
)
from tests.datasetfactory import FIXTURE_EXPORT


def test_split_of_is_a_fixed_function_of_seed_and_family():
    # Pinned: a change here would move posts between splits of existing datasets.
    assert [SplitRatios().split_of(i) for i in (1, 2, 15)] == ["val", "train", "test"]
    seeded = SplitRatios(0.4, 0.3, 0.3, seed=9)
    assert "".join(seeded.split_of(i)[0] for i in range(1, 16)) == "tvvtvvvtvttvvtt"


def test_empty_splits_get_nothing_and_rounding_never_leaves_a_gap():
    assert {SplitRatios(1, 0, 0).split_of(i) for i in range(500)} == {"train"}
    assert {SplitRatios(0.7, 0.3, 0).split_of(i) for i in range(500)} == {"train", "val"}
    thirds = SplitRatios(1 / 3, 1 / 3, 1 / 3)
    assert {thirds.split_of(i) for i in range(500)} == {"train", "val", "test"}


@pytest.mark.parametrize(
    "text", ["0.9,0.1", "a,b,c", "0.5,0.5,0.5", "-0.1,0.6,0.5", "nan,0,0", "0,0,0"]
)
def test_bad_ratios_are_rejected_with_what_was_received(text):
    with pytest.raises(ConfigError, match="split ratios must .*received"):
        SplitRatios.parse(text)


def test_entries_round_trip_and_bad_lines_say_where(tmp_path):
    entry = ManifestEntry(7, 5, "0" * 32, "png", "u", "val", "explicit", {"a": ("x",), "b": ()})
    assert ManifestEntry.from_json(entry.to_json()) == entry
    with pytest.raises(DatasetError, match="here: not a manifest entry .*KeyError"):
        ManifestEntry.from_json('{"id": 1}', where="here")
    bad = entry.to_json().replace('"val"', '"holdout"')
    with pytest.raises(DatasetError, match="split must be one of .*received split='holdout'"):
        ManifestEntry.from_json(bad)
    (tmp_path / "manifest.jsonl").write_text(entry.to_json() + "\n\nnot json\n")
    with pytest.raises(DatasetError, match=r"manifest.jsonl:3: not a manifest entry"):
        list(iter_manifest(tmp_path))


def test_no_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(
        DatasetError, match="no manifest.jsonl in .*furrytag dataset build --export"
    ):
        manifest_path(tmp_path)


def test_stats_are_recounted_when_stats_json_is_missing(tmp_path):
    build_dataset([FIXTURE_EXPORT], tmp_path)
    written = read_stats(tmp_path)
    (tmp_path / STATS).unlink()
    recounted = read_stats(tmp_path)
    assert recounted["build"] == {}
    for key in ("posts", "ratings", "tags", "zero_positive"):
        assert recounted[key] == written[key]
    (tmp_path / STATS).write_text(json.dumps({"format": 99}))
    with pytest.raises(DatasetError, match="expected stats format 1; delete it to recount"):
        read_stats(tmp_path)
