"""The export builder on the hand-written fixture export and on synthetic ones."""

import csv
import gzip
import json
import shutil
from collections import defaultdict

import pytest

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.build import BuildOptions, build_dataset, file_url, sample_url
from furrytag_cli.dataset.export_tables import ExportFiles
from furrytag_cli.dataset.manifest import SplitRatios, iter_manifest
from furrytag_cli.dataset.synth import write_synthetic
from tests.datasetfactory import FIXTURE_EXPORT

# Every post of the fixture the default build keeps, with its non-empty heads.
EXPECTED = {
    101: ("safe", {"body": ["anthro"], "identity": ["female"], "species": ["feline"]}),
    # `kitty` is aliased to domestic_cat by the newest alias file (an older one says fox).
    102: ("questionable", {"identity": ["male"], "species": ["feline"]}),
    # lion → panthera → pantherine → felid → feline; tshirt → shirt → topwear.
    103: (
        "explicit",
        {
            "body": ["clothed"],
            "clothing": ["bottomwear", "topwear"],
            "species": ["feline", "pantherine"],
        },
    ),
    104: ("safe", {"identity": ["female"], "species": ["feline", "pantherine"]}),
    # An implication cycle (cycle_a → b → c → a) that also implies wings.
    112: ("questionable", {"body": ["feral", "wings"]}),
    # Deleted alias old_fox → fox and deleted implication wolf_pup → wolf do nothing.
    113: ("safe", {"identity": ["female"]}),
    114: ("safe", {"identity": ["male"]}),
    116: ("safe", {"clothing": ["footwear"], "species": ["fox"]}),
    117: ("questionable", {"action": ["open_mouth"], "species": ["domestic_dog"]}),
    118: ("safe", {"action": ["standing"], "species": ["wolf"]}),
    119: ("safe", {"action": ["sitting"], "species": ["bear"]}),
    120: ("safe", {"species": ["feline"]}),
    121: ("questionable", {"species": ["feline", "pantherine"]}),
    122: ("safe", {"species": ["fox"]}),
    123: ("safe", {"species": ["wolf"]}),
    124: ("safe", {"species": ["bear"]}),
    # A self-implication and an alias loop are harmless.
    125: ("explicit", {"action": ["looking_at_viewer"]}),
    126: ("explicit", {"action": ["on_top", "sitting_on_another"]}),
    127: ("questionable", {"body": ["horn", "tail", "wings"], "species": ["dragon"]}),
    128: ("safe", {"body": ["feral"], "species": ["wolf"]}),
    131: ("safe", {"species": ["mephitid"]}),
    132: ("questionable", {"identity": ["female", "intersex", "male", "young"]}),
    133: ("safe", {"species": ["fox", "wolf"]}),
    135: ("safe", {"clothing": ["topwear"]}),
}


def build(tmp_path, export=(FIXTURE_EXPORT,), name="data", **options):
    report = build_dataset(list(export), tmp_path / name, options=BuildOptions(**options))
    return report, list(iter_manifest(tmp_path / name))


def labelled(entries):
    return {e.id: (e.rating, {h: list(t) for h, t in e.tags.items() if t}) for e in entries}


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """A 20,000-post synthetic export (CSV only) and its default build."""
    root = tmp_path_factory.mktemp("medium")
    write_synthetic(root, 20_000, seed=7, images=False)
    report = build_dataset([root / "export"], root / "data")
    return root, report


def test_fixture_labels_are_exact(tmp_path):
    report, entries = build(tmp_path)
    assert labelled(entries) == EXPECTED
    assert (report.rows, report.kept, report.duplicates) == (35, 24, 1)
    assert {k: v for k, v in report.dropped.items() if v} == {
        "deleted": 2,
        "pending": 1,
        "flagged": 1,
        "format": 3,
        "md5": 1,
        "untagged": 2,
    }


def test_manifest_fields(tmp_path):
    _, entries = build(tmp_path)
    first = entries[0]
    assert (first.id, first.family, first.ext) == (101, 101, "png")
    assert first.md5 == "ed5163d66c759fcf8dcc03e8d05c3efd"
    assert first.url == "https://static1.e621.net/data/ed/51/ed5163d66c759fcf8dcc03e8d05c3efd.png"
    assert set(first.tags) == {"action", "body", "clothing", "identity", "species"}
    by_id = {e.id: e for e in entries}
    # The family is the top of the parent chain: 122's parent is 120, whose parent is 101.
    assert (by_id[120].family, by_id[121].family, by_id[122].family) == (101, 101, 101)
    assert len({by_id[i].split for i in (101, 120, 121, 122)}) == 1
    assert by_id[131].ext == "webp"


def test_only_the_newest_export_of_each_kind_is_read(tmp_path):
    files = ExportFiles.find([FIXTURE_EXPORT])
    assert files.aliases.name == "tag_aliases-2024-01-15.csv"
    # Given explicitly, the older alias file is the one used: kitty → fox.
    export = [
        FIXTURE_EXPORT / "posts-2024-01-15.csv",
        FIXTURE_EXPORT / "tag_aliases-2023-06-01.csv",
        FIXTURE_EXPORT / "tag_implications-2024-01-15.csv",
    ]
    _, entries = build(tmp_path, export)
    assert labelled(entries)[102] == ("questionable", {"identity": ["male"], "species": ["fox"]})


@pytest.mark.parametrize(
    "options, added, removed",
    [
        ({"keep_deleted": True}, {105}, set()),
        ({"keep_pending": True}, {106}, set()),
        ({"keep_flagged": True}, {107}, set()),
        ({"formats": ("jpg", "png", "webp", "gif")}, {110}, set()),
        ({"formats": ("webm", ".PNG ")}, {108}, {102, 104, 114, 117, 122, 131}),
        ({"keep_untagged": True}, {111, 115}, set()),
        ({"min_score": 0}, set(), {123}),
        ({"since": "2020-01-01"}, set(), {124}),
        ({"since": "2023-09-16 12:26:00"}, set(), set(EXPECTED) - {118, 127}),
    ],
)
def test_filters_can_be_overridden(tmp_path, options, added, removed):
    _, entries = build(tmp_path, **options)
    assert {e.id for e in entries} == (set(EXPECTED) | added) - removed


def test_a_post_both_deleted_and_pending_needs_both_kept(tmp_path):
    _, entries = build(tmp_path, keep_pending=True)
    assert 134 not in {e.id for e in entries}
    _, entries = build(tmp_path, keep_pending=True, keep_deleted=True)
    assert 134 in {e.id for e in entries}


def test_untagged_posts_kept_on_request_have_empty_heads(tmp_path):
    _, entries = build(tmp_path, keep_untagged=True)
    post = {e.id: e for e in entries}[111]
    assert all(tags == () for tags in post.tags.values())


def test_a_build_that_keeps_nothing_is_an_error_and_writes_no_manifest(tmp_path):
    with pytest.raises(
        DatasetError, match=r"no post was kept of the \d+ read .*\(dropped: .*\d+ format"
    ):
        build(tmp_path, formats=("tiff",))
    assert not (tmp_path / "data" / "manifest.jsonl").exists()
    assert not (tmp_path / "data" / "manifest.jsonl.partial").exists()


def test_limit_stops_after_that_many_kept_posts(tmp_path):
    report, entries = build(tmp_path, limit=5)
    assert [e.id for e in entries] == [101, 102, 103, 104, 112]
    assert report.rows == 12


def test_duplicate_md5s_collapse_to_the_first_post(tmp_path):
    report, entries = build(tmp_path)
    ids = [e.id for e in entries]
    assert 128 in ids and 129 not in ids
    assert len({e.md5 for e in entries}) == len(entries)
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert stats["build"]["duplicates"] == 1
    # The collapsed post is taken back out of the counts too.
    wolf = stats["tags"]["species"]["wolf"]
    assert sum(wolf.values()) == sum("wolf" in e.tags["species"] for e in entries)


def test_stats_count_posts_and_flag_tags_without_positives(tmp_path):
    _, entries = build(tmp_path, splits=SplitRatios(0.5, 0.25, 0.25))
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    per_split = defaultdict(int)
    for entry in entries:
        per_split[entry.split] += 1
    assert stats["posts"] == {**{s: per_split[s] for s in ("train", "val", "test")}, "total": 24}
    for split in ("train", "val", "test"):
        feline = sum("feline" in e.tags["species"] for e in entries if e.split == split)
        assert stats["tags"]["species"]["feline"][split] == feline
        assert ("species/feline" in stats["zero_positive"][split]) == (feline == 0)
        safe = sum(e.rating == "safe" for e in entries if e.split == split)
        assert stats["ratings"][split]["safe"] == safe
    assert "action/age_difference" in stats["zero_positive"]["train"]
    assert "species/feline" not in stats["zero_positive"]["train"]
    summary = (tmp_path / "data" / "summary.txt").read_text()
    assert "24 posts" in summary and "Collapsed 1 duplicate" in summary
    assert "have no train positives: action/age_difference" in summary


def test_a_split_without_posts_flags_nothing(tmp_path):
    build(tmp_path, splits=SplitRatios(1.0, 0.0, 0.0))
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert stats["posts"]["train"] == 24 and set(stats["zero_positive"]) == {"train"}


def test_builds_are_deterministic(tmp_path):
    build(tmp_path, name="a")
    build(tmp_path, name="b")
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (
        tmp_path / "b" / "manifest.jsonl"
    ).read_bytes()
    a, b = (json.loads((tmp_path / n / "stats.json").read_text()) for n in "ab")
    for stats in (a, b):
        del stats["build"]["seconds"]
    assert a == b


def test_gzip_and_plain_exports_build_the_same(tmp_path):
    packed = tmp_path / "gz"
    packed.mkdir()
    for path in FIXTURE_EXPORT.iterdir():
        with path.open("rb") as src, gzip.open(packed / (path.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    build(tmp_path, name="plain")
    build(tmp_path, [packed], name="packed")
    assert (tmp_path / "plain" / "manifest.jsonl").read_text() == (
        tmp_path / "packed" / "manifest.jsonl"
    ).read_text()


def test_rows_of_the_wrong_width_are_counted_and_skipped(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(FIXTURE_EXPORT, export)
    posts = export / "posts-2024-01-15.csv"
    posts.write_text(posts.read_text() + "136,1136,2023-01-01 00:00:00,short,row\n")
    report, entries = build(tmp_path, [export])
    assert report.dropped["malformed"] == 1 and len(entries) == 24


@pytest.mark.slow
def test_splits_keep_families_together_and_follow_the_ratios(medium):
    root, report = medium
    entries = list(iter_manifest(root / "data"))
    assert len(entries) == report.kept > 15_000
    splits_of = defaultdict(set)
    for entry in entries:
        splits_of[entry.family].add(entry.split)
    assert sum(1 for e in entries if e.family != e.id) > 2000
    assert all(len(splits) == 1 for splits in splits_of.values())
    # Every child is in its parent's split, along chains of any length.
    with gzip.open(root / "export" / "posts-2024-01-01.csv.gz", "rt", newline="") as f:
        parent_of = {int(r["id"]): int(r["parent_id"]) for r in csv.DictReader(f) if r["parent_id"]}
    split_of = {e.id: e.split for e in entries}
    pairs = [(c, p) for c, p in parent_of.items() if c in split_of and p in split_of]
    grandchildren = [c for c, p in pairs if p in parent_of]
    assert len(pairs) > 2000 and len(grandchildren) > 200
    assert all(split_of[c] == split_of[p] for c, p in pairs)
    share = {s: sum(e.split == s for e in entries) / len(entries) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.9, abs=0.02)
    assert share["val"] == pytest.approx(0.05, abs=0.01) and share["test"] == pytest.approx(
        0.05, abs=0.01
    )


@pytest.mark.slow
def test_a_medium_export_streams_through(medium):
    root, report = medium
    assert report.rows == 20_000
    assert report.duplicates > 0 and report.dropped["deleted"] > 0 and report.dropped["format"] > 0
    assert report.kept + report.duplicates + sum(report.dropped.values()) == report.rows
    stats = json.loads((root / "data" / "stats.json").read_text())
    assert stats["posts"]["total"] == report.kept
    # The synthetic labels are what the export says, through aliases and implications.
    drawn = {}
    for line in (root / "labels.jsonl").read_text().splitlines():
        record = json.loads(line)
        drawn[record["id"]] = (record["rating"], {h: t for h, t in record["tags"].items() if t})
    for entry in iter_manifest(root / "data"):
        assert (entry.rating, {h: list(t) for h, t in entry.tags.items() if t}) == drawn[entry.id]


def test_missing_export_files_are_named(tmp_path):
    only_posts = tmp_path / "export"
    only_posts.mkdir()
    shutil.copy(FIXTURE_EXPORT / "posts-2024-01-15.csv", only_posts)
    with pytest.raises(DatasetError, match=r"no tag_aliases-\*\.csv\[\.gz\], tag_implications-"):
        build(tmp_path, [only_posts])
    with pytest.raises(DatasetError, match="export path not found: .*nowhere"):
        build(tmp_path, [tmp_path / "nowhere"])


def test_wrong_and_broken_files_are_clear_errors(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(FIXTURE_EXPORT, export)
    (export / "tag_implications-2024-01-15.csv").write_text(
        "id,name,category,post_count\n1,a,0,1\n"
    )
    with pytest.raises(DatasetError, match="missing column.*antecedent_name.*right export file"):
        build(tmp_path, [export])
    shutil.copy(FIXTURE_EXPORT / "tag_implications-2024-01-15.csv", export)
    posts = export / "posts-2024-01-15.csv"
    data = gzip.compress(posts.read_bytes())
    posts.unlink()
    (export / "posts-2024-01-15.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="unreadable near line .*download the export again"):
        build(tmp_path, [export])
    assert list((tmp_path / "data").iterdir()) == []
    (export / "posts-2024-01-15.csv.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="cannot read a CSV header"):
        build(tmp_path, [export])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"formats": (" ", "")}, "--formats needs at least one"),
        ({"limit": 0}, "--limit must be a positive number of posts; received 0"),
        (
            {"since": "last tuesday"},
            "--since must be a date like 2024-01-31.*received 'last tuesday'",
        ),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        BuildOptions(**options)


def test_file_urls_follow_e621s_layout():
    md5 = "ed5163d66c759fcf8dcc03e8d05c3efd"
    assert file_url(md5, "png", "http://mirror/e621/") == f"http://mirror/e621/data/ed/51/{md5}.png"
    assert sample_url(md5) == f"https://static1.e621.net/data/sample/ed/51/{md5}.jpg"


def test_the_implication_table_of_the_head_tags_is_written(tmp_path):
    import gzip
    import json

    from furrytag_cli.dataset.implications import read_implications
    from furrytag_cli.model.categories import CategorySet

    build(tmp_path)
    # pantherine → felid → feline: felid is no head tag, the closure still reaches feline.
    table = json.loads((tmp_path / "data" / "implications.json").read_text())
    assert table == {"pantherine": ["feline"]}
    export = FIXTURE_EXPORT / "tag_implications-2024-01-15.csv"
    zipped = tmp_path / "tag_implications-2024-01-15.csv.gz"
    zipped.write_bytes(gzip.compress(export.read_bytes()))
    assert read_implications(export, CategorySet.load()) == table
    assert read_implications(zipped, CategorySet.load()) == table
