"""Metrics against scikit-learn on random and edge-case data, and the rating metrics."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from furrytag_cli.core.errors import ConfigError, FurrytagError
from furrytag_cli.evaluation.metrics import (
    best_rating_cuts,
    confusion_counts,
    evaluate_scores,
    frequency_slices,
    rating_classes,
    rating_metrics,
)
from furrytag_cli.model.thresholds import Thresholds


def _stack(data, heads=None):
    heads = heads or data.heads
    return (np.hstack([data.y_true[h] for h in heads]), np.hstack([data.scores[h] for h in heads]))


def _sklearn_group(y, predicted, s):
    """(micro P, R, F1, MCC), (macro P, R, F1, MCC) over tags with positives, and mAP."""
    scored = np.flatnonzero(y.sum(axis=0) > 0)
    micro = precision_recall_fscore_support(y, predicted, average="micro", zero_division=0)[:3]
    macro = precision_recall_fscore_support(
        y, predicted, labels=scored, average="macro", zero_division=0
    )[:3]
    micro_mcc = matthews_corrcoef(y.ravel(), predicted.ravel())
    macro_mcc = np.mean([matthews_corrcoef(y[:, j], predicted[:, j]) for j in scored])
    mean_ap = average_precision_score(y[:, scored], s[:, scored], average="macro")
    return (*micro, micro_mcc), (*macro, macro_mcc), mean_ap


def _check_group(group, expected):
    (micro, macro, mean_ap) = expected
    got_micro = (group.micro.precision, group.micro.recall, group.micro.f1, group.micro.mcc)
    got_macro = (group.macro.precision, group.macro.recall, group.macro.f1, group.macro.mcc)
    np.testing.assert_allclose(got_micro, micro, atol=1e-12)
    np.testing.assert_allclose(got_macro, macro, atol=1e-12)
    assert group.mean_ap == pytest.approx(mean_ap, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_match_sklearn_at_a_global_threshold(make_scoreset, seed):
    data = make_scoreset(seed=seed)
    metrics = evaluate_scores(data, {"0.5": 0.5}).settings["0.5"]
    y, s = _stack(data)
    _check_group(metrics.overall, _sklearn_group(y, s > 0.5, s))
    for head in data.heads:
        y, s = _stack(data, (head,))
        _check_group(metrics.heads[head], _sklearn_group(y, s > 0.5, s))


def test_per_tag_rows_match_sklearn_with_per_tag_thresholds(make_scoreset):
    data = make_scoreset(seed=3)
    thresholds = Thresholds(default=0.45, per_head={"b": 0.6}, per_tag={"c": {"c1": 0.3}})
    metrics = evaluate_scores(data, {"tuned": thresholds}).settings["tuned"]
    y, s = _stack(data)
    t = np.concatenate([thresholds.vector(h, data.tags[h]) for h in data.heads])
    predicted = s > t
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, average=None, zero_division=0
    )
    rows = metrics.rows
    assert [r.tag for r in rows] == [tag for h in data.heads for tag in data.tags[h]]
    assert [r.threshold for r in rows] == pytest.approx(t)
    assert [r.support for r in rows] == list(support)
    np.testing.assert_allclose([r.precision for r in rows], precision, atol=1e-12)
    np.testing.assert_allclose([r.recall for r in rows], recall, atol=1e-12)
    np.testing.assert_allclose([r.f1 for r in rows], f1, atol=1e-12)
    mcc = [matthews_corrcoef(y[:, j], predicted[:, j]) for j in range(y.shape[1])]
    np.testing.assert_allclose([r.mcc for r in rows], mcc, atol=1e-12)
    ap = [
        average_precision_score(y[:, j], s[:, j]) if support[j] else 0.0 for j in range(y.shape[1])
    ]
    np.testing.assert_allclose([r.ap for r in rows], ap, atol=1e-12)
    _check_group(metrics.overall, _sklearn_group(y, predicted, s))


def test_edge_case_tags(make_scoreset):
    rows = {r.tag: r for r in evaluate_scores(make_scoreset(), {"x": 0.5}).settings["x"].rows}
    never_true, never_predicted, always_true = rows["a0"], rows["a1"], rows["a2"]
    assert never_true.support == 0 and never_true.recall == 0 and never_true.ap == 0
    assert never_true.mcc == 0 and never_true.precision == 0 and never_true.f1 == 0
    assert never_predicted.precision == 0 and never_predicted.recall == 0
    assert never_predicted.f1 == 0 and never_predicted.mcc == 0
    assert always_true.ap == 1 and always_true.mcc == 0


def test_single_class_and_empty_group():
    y = np.zeros((6, 2), dtype=bool)
    s = np.linspace(0, 1, 12).reshape(6, 2)
    counts = confusion_counts(y, s, 0.5)
    assert counts.tp.tolist() == [0, 0] and counts.support.tolist() == [0, 0]
    rates = counts.pooled().rates()
    assert rates["precision"][0] == 0 and rates["mcc"][0] == 0
    assert precision_recall_fscore_support(y, s > 0.5, average="micro", zero_division=0)[0] == 0


def test_strictly_greater_than_threshold():
    y = np.array([[1], [1], [0]])
    s = np.array([[0.5], [0.7], [0.5]])
    counts = confusion_counts(y, s, 0.5)
    assert (counts.tp[0], counts.fp[0], counts.fn[0], counts.tn[0]) == (1, 0, 1, 1)


def test_frequency_slices_partition_the_tags(make_scoreset):
    data = make_scoreset(seed=4)
    metrics = evaluate_scores(data, {"x": 0.5}, frequent_fraction=0.25).settings["x"]
    support = np.array([r.support for r in metrics.rows])
    masks = frequency_slices(support, 0.25)
    scored = int((support > 0).sum())
    assert masks["frequent"].sum() == int(np.ceil(0.25 * scored))
    assert (
        not (masks["frequent"] & masks["rare"]).any() and (masks["frequent"] | masks["rare"]).all()
    )
    assert support[masks["frequent"]].min() >= support[masks["rare"]].max()
    frequent, rare = metrics.slices["frequent"], metrics.slices["rare"]
    assert frequent.tags + rare.tags == metrics.overall.tags
    assert frequent.support + rare.support == metrics.overall.support
    y, s = _stack(data)
    _check_group(
        frequent,
        _sklearn_group(
            y[:, masks["frequent"]], s[:, masks["frequent"]] > 0.5, s[:, masks["frequent"]]
        ),
    )
    with pytest.raises(ConfigError, match="received 0"):
        frequency_slices(support, 0)


def test_bad_settings_are_rejected(make_scoreset):
    data = make_scoreset()
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_scores(data, {})
    with pytest.raises(ConfigError, match="received 'high'"):
        evaluate_scores(data, {"x": "high"})


def test_rating_confusion_matrix_on_constructed_data():
    r_true = np.array([0, 0, 0, 0.5, 0.5, 1, 1, 1])
    r_score = np.array([0.1, 0.2, 0.5, 0.4, 0.9, 0.7, 0.66, 1 / 3])
    rating = rating_metrics(r_true, r_score)
    # 0.5 → questionable, 0.66 < 2/3 → questionable, 1/3 is exactly the lower cut → questionable.
    assert rating.confusion == ((2, 1, 0), (0, 1, 1), (0, 2, 1))
    assert rating.accuracy == pytest.approx(4 / 8)
    expected = confusion_matrix((2 * r_true).astype(int), rating_classes(r_score, rating.cuts))
    assert np.array_equal(rating.confusion, expected)
    assert rating.to_dict()["labels"] == ("safe", "questionable", "explicit")


def test_best_rating_cuts_on_separable_data():
    r_true = np.array([0, 0, 0, 0.5, 0.5, 1, 1])
    r_score = np.array([0.05, 0.1, 0.2, 0.5, 0.55, 0.8, 0.95])
    rating = rating_metrics(r_true, r_score, cuts=(0.6, 0.9))
    assert rating.accuracy == pytest.approx(4 / 7)
    assert rating.best_accuracy == 1.0
    assert rating.best_cuts == pytest.approx((0.35, 0.675))
    assert rating_metrics(r_true, r_score, cuts=rating.best_cuts).accuracy == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_best_rating_cuts_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, 60)
    score = np.round(np.clip(classes / 2 + rng.normal(0, 0.3, 60), 0, 1), 1)
    cuts, accuracy = best_rating_cuts(classes, score)
    assert np.mean(rating_classes(score, cuts) == classes) == pytest.approx(accuracy)
    grid = np.linspace(0, 1, 201)
    brute = max(
        np.mean(rating_classes(score, (lo, hi)) == classes)
        for lo, hi in itertools.combinations_with_replacement(grid, 2)
    )
    assert accuracy == pytest.approx(brute)


def test_rating_rejects_bad_targets_and_cuts():
    with pytest.raises(FurrytagError, match="0, 0.5 or 1; received 0.3"):
        rating_metrics(np.array([0, 0.3]), np.array([0.1, 0.2]))
    with pytest.raises(ConfigError, match="cuts=0.8,0.2"):
        rating_metrics(np.array([0, 1]), np.array([0.1, 0.2]), cuts=(0.8, 0.2))
    with pytest.raises(FurrytagError, match="equal-length"):
        rating_metrics(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))


def test_evaluation_without_rating(make_scoreset):
    evaluation = evaluate_scores(make_scoreset(rating=False), {"x": 0.5})
    assert evaluation.rating is None and evaluation.to_dict()["rating"] is None
