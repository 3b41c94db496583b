"""ScoreSet validation and the .npz scores cache."""

import numpy as np
import pytest

from furrytag_cli.core.errors import FurrytagError, OutputError
from furrytag_cli.evaluation.scoreset import ScoreSet


def test_cache_round_trip(make_scoreset, tmp_path):
    data = make_scoreset()
    path = data.save(tmp_path / "sub" / "scores.npz")
    assert path == tmp_path / "sub" / "scores.npz"
    assert [p.name for p in path.parent.iterdir()] == ["scores.npz"]  # no temporary file left
    loaded = ScoreSet.load(path)
    assert loaded.tags == data.tags and loaded.meta == {"model": "test"}
    for head in data.heads:
        np.testing.assert_array_equal(loaded.y_true[head], data.y_true[head])
        np.testing.assert_array_equal(loaded.scores[head], data.scores[head])
        assert loaded.scores[head].dtype == np.float32
    np.testing.assert_array_equal(loaded.rating_true, data.rating_true)
    np.testing.assert_array_equal(loaded.rating_score, data.rating_score)


def test_cache_without_rating(make_scoreset, tmp_path):
    loaded = ScoreSet.load(make_scoreset(rating=False).save(tmp_path / "s.npz"))
    assert loaded.rating_true is None and loaded.rating_score is None


def test_unreadable_caches_say_what_to_do(make_scoreset, tmp_path):
    with pytest.raises(FurrytagError, match="does not exist"):
        ScoreSet.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FurrytagError, match="unreadable or incomplete.*score the model again"):
        ScoreSet.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "old.npz", format_version=np.array(99))
    with pytest.raises(FurrytagError, match="format version 99"):
        ScoreSet.load(tmp_path / "old.npz")


def test_unwritable_cache_path(make_scoreset, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write scores cache"):
        make_scoreset().save(tmp_path / "file" / "scores.npz")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f["scores"].pop("b"), "scores are given for heads \\['a', 'c'\\]"),
        (
            lambda f: f["scores"].update(a=np.zeros((3, 2))),
            "'a': scores have shape \\(3, 2\\); expected \\(3, 1\\)",
        ),
        (lambda f: f["y_true"].update(a=np.full((3, 1), 2)), "labels must be 0 or 1"),
        (lambda f: f["scores"].update(a=np.full((3, 1), np.nan)), "NaN or infinity"),
        (lambda f: f.update(rating_true=np.zeros(3)), "both rating targets and rating scores"),
        (
            lambda f: f.update(rating_true=np.zeros(2), rating_score=np.zeros(2)),
            "must hold 3 finite numbers",
        ),
        (lambda f: f.update(tags={}, y_true={}, scores={}), "at least one multi-label head"),
        (lambda f: f.update(y_true={h: np.zeros((0, 1)) for h in "abc"}), "at least one image"),
    ],
)
def test_invalid_sets_are_rejected(change, message):
    fields = {
        "tags": {"a": ("x",), "b": ("y",), "c": ("z",)},
        "y_true": {h: np.zeros((3, 1)) for h in "abc"},
        "scores": {h: np.zeros((3, 1)) for h in "abc"},
    }
    change(fields)
    with pytest.raises(FurrytagError, match=message):
        ScoreSet(**fields)


def test_labels_become_bool_and_integer_scores_float():
    data = ScoreSet(tags={"a": ("x",)}, y_true={"a": [[1], [0]]}, scores={"a": [[1], [0]]})
    assert data.y_true["a"].dtype == bool and data.scores["a"].dtype == np.float64
    assert data.images == 2
