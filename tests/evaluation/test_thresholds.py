"""Threshold tuning recovers known optima; Thresholds resolve, serialise and validate."""

import numpy as np
import pytest
import yaml

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.tuning import best_f1_threshold, break_even_threshold, tune_thresholds
from furrytag_cli.model.thresholds import Thresholds


def _separable(images=200, seed=0):
    """Head ``low`` separates at 0.3, head ``high`` at 0.7; tag ``high1`` is rare (4 positives)."""
    rng = np.random.default_rng(seed)
    y_low = rng.random((images, 3)) < 0.3
    s_low = np.where(
        y_low, rng.uniform(0.35, 1.0, y_low.shape), rng.uniform(0.0, 0.25, y_low.shape)
    )
    y_high = rng.random((images, 2)) < 0.3
    y_high[:, 1] = False
    y_high[:4, 1] = True
    s_high = np.where(
        y_high, rng.uniform(0.75, 1.0, y_high.shape), rng.uniform(0.0, 0.65, y_high.shape)
    )
    return ScoreSet(
        tags={"low": ("low0", "low1", "low2"), "high": ("high0", "high1")},
        y_true={"low": y_low, "high": y_high},
        scores={"low": s_low, "high": s_high},
    )


def _cut(scores, y):
    """Midpoint between the lowest positive and highest negative score (a perfect split)."""
    return (scores[y].min() + scores[~y].max()) / 2


def test_tuning_recovers_separating_thresholds():
    data = _separable()
    tuned = tune_thresholds(data, min_support=10, shrinkage=0)
    for head in data.heads:
        y, s = data.y_true[head], data.scores[head]
        assert tuned.per_head[head] == pytest.approx(_cut(s, y))
        for i, tag in enumerate(data.tags[head]):
            if y[:, i].sum() >= 10:
                assert tuned.per_tag[head][tag] == pytest.approx(_cut(s[:, i], y[:, i]))
    assert "high1" not in tuned.per_tag["high"]
    vectors = tuned.vectors(data.tags)
    for head in data.heads:
        predicted = data.scores[head] > vectors[head]
        assert (predicted == data.y_true[head]).all()


def test_shrinkage_pulls_rare_tags_toward_their_head():
    data = _separable()
    raw = tune_thresholds(data, min_support=1, shrinkage=0)
    shrunk = tune_thresholds(data, min_support=1, shrinkage=4)
    head = raw.per_head["high"]
    own = raw.per_tag["high"]["high1"]
    assert shrunk.per_tag["high"]["high1"] == pytest.approx(0.5 * own + 0.5 * head)
    support = int(data.y_true["high"][:, 0].sum())
    w = support / (support + 4)
    expected = w * raw.per_tag["high"]["high0"] + (1 - w) * head
    assert shrunk.per_tag["high"]["high0"] == pytest.approx(expected)


def test_global_thresholds_on_constructed_scores():
    # 4 positives scored 0.9, 0.8, 0.6, 0.3; 6 negatives 0.7, 0.5, 0.4, 0.2, 0.1, 0.05.
    # Best F1 keeps the top 4 of 10 (TP 3, F1 0.75); break-even keeps 4 predictions.
    y = np.array([[1, 1, 0, 1, 0, 0, 1, 0, 0, 0]]).T.astype(bool)
    s = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]]).T
    data = ScoreSet(tags={"h": ("t",)}, y_true={"h": y}, scores={"h": s})
    assert best_f1_threshold(data) == pytest.approx(0.55)
    assert break_even_threshold(data) == pytest.approx(0.55)
    assert tune_thresholds(data).default == pytest.approx(0.55)


def test_head_without_positives_keeps_the_global_threshold():
    data = ScoreSet(
        tags={"a": ("x",), "b": ("y",)},
        y_true={"a": np.array([[1], [0]]), "b": np.array([[0], [0]])},
        scores={"a": np.array([[0.9], [0.1]]), "b": np.array([[0.4], [0.6]])},
    )
    tuned = tune_thresholds(data, min_support=1)
    assert "b" not in tuned.per_head and "b" not in tuned.per_tag
    assert tuned.vector("b", ("y",))[0] == tuned.default


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"min_support": 0}, "min_support must be an integer >= 1; received 0"),
        ({"shrinkage": -1}, "shrinkage must be a number >= 0; received -1"),
    ],
)
def test_tuning_rejects_bad_parameters(arguments, message):
    with pytest.raises(ConfigError, match=message):
        tune_thresholds(_separable(), **arguments)


def test_resolution_order_tag_then_head_then_global():
    thresholds = Thresholds(default=0.5, per_head={"a": 0.4}, per_tag={"a": {"x": 0.3}})
    np.testing.assert_array_equal(thresholds.vector("a", ("x", "y")), [0.3, 0.4])
    vectors = thresholds.vectors({"a": ("x", "y"), "b": ("z",)})
    np.testing.assert_array_equal(vectors["b"], [0.5])


def test_round_trip_through_yaml():
    tuned = tune_thresholds(_separable(), min_support=5)
    text = yaml.safe_dump(tuned.to_dict())
    assert Thresholds.from_dict(yaml.safe_load(text)) == tuned
    assert Thresholds.from_dict({"global": 0.4}) == Thresholds(default=0.4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"globl": 0.4}, "unknown key 'globl' \\(did you mean 'global'\\?\\)"),
        ({"per_head": {}}, "missing required key 'global'"),
        ({"global": "0.4"}, "thresholds.global must be a number from 0 to 1; received '0.4'"),
        ({"global": 5}, "thresholds.global must be a number from 0 to 1; received 5"),
        (
            {"global": 0.4, "per_head": {"a": 1.7}},
            "per_head.a must be a number from 0 to 1; received 1.7",
        ),
        ({"global": True}, "received True"),
        (
            {"global": 0.4, "per_head": {"a": float("nan")}},
            "per_head.a must be a number from 0 to 1",
        ),
        ({"global": 0.4, "per_tag": {"a": [0.3]}}, "per_tag.a: expected a mapping, received list"),
        (
            {"global": 0.4, "per_tag": {"a": {"x": None}}},
            "per_tag.a.x must be a number from 0 to 1",
        ),
    ],
)
def test_from_dict_rejects_malformed_data(data, message):
    with pytest.raises(ConfigError, match=message):
        Thresholds.from_dict(data)


def test_vectors_reject_heads_and_tags_the_model_lacks():
    with pytest.raises(ConfigError, match="head 'specis'.*did you mean 'species'"):
        Thresholds(per_head={"specis": 0.4}).vectors({"species": ("canine",)})
    with pytest.raises(ConfigError, match="tag 'canin' of head 'species'.*did you mean 'canine'"):
        Thresholds(per_tag={"species": {"canin": 0.4}}).vectors({"species": ("canine",)})
