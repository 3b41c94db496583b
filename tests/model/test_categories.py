from pathlib import Path

import pytest

from furrytag_cli.core.errors import CategoryError, ConfigError
from furrytag_cli.model.categories import HEADS, CategorySet, RatingSpec

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "original_categories"


def test_shipped_categories_have_the_228_original_tags_sorted():
    categories = CategorySet.load()
    assert categories.head_names == HEADS
    assert {h: len(t) for h, t in categories.heads.items()} == {
        "action": 71,
        "body": 66,
        "clothing": 35,
        "identity": 6,
        "species": 50,
    }
    assert categories.num_tags == 228
    for head in HEADS:
        assert list(categories.tags(head)) == sorted(categories.tags(head))


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference categories not beside the checkout")
def test_shipped_categories_equal_the_original_lists():
    categories = CategorySet.load()
    for head in HEADS:
        original = (REFERENCE / f"{head}.txt").read_text().split()
        assert list(categories.tags(head)) == sorted(original)


@pytest.mark.parametrize(
    "content, message",
    [
        ("canine\n\nfeline\n", "blank line"),
        ("canine\ncanine\n", "duplicate tag 'canine'"),
        ("Big Cat\n", "not a valid e621 tag"),
        ("-canine\n", "not a valid e621 tag"),
    ],
)
def test_bad_category_files_are_rejected(tmp_path, content, message):
    (tmp_path / "species.txt").write_text(content)
    with pytest.raises(CategoryError, match=message):
        CategorySet.load(tmp_path, heads=["species"])


def test_missing_category_file_names_the_path(tmp_path):
    with pytest.raises(CategoryError, match="species.txt"):
        CategorySet.load(tmp_path, heads=["species"])


def test_rating_bins_include_their_lower_boundary():
    spec = RatingSpec()
    assert spec.label(0.0) == "safe"
    assert spec.label(1 / 3 - 1e-9) == "safe"
    assert spec.label(1 / 3) == "questionable"
    assert spec.label(2 / 3) == "explicit"
    assert spec.label(1.0) == "explicit"
    assert [spec.target(x) for x in ("safe", "questionable", "explicit")] == [0.0, 0.5, 1.0]


def test_rating_cuts_are_adjustable_and_validated():
    spec = RatingSpec.parse_cuts("0.2,0.9")
    assert spec.label(0.5) == "questionable" and spec.label(0.95) == "explicit"
    with pytest.raises(ConfigError, match="0.9,0.2"):
        RatingSpec.parse_cuts("0.9,0.2")
    with pytest.raises(ConfigError, match="two numbers"):
        RatingSpec.parse_cuts("low,high")
