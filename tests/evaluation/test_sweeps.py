"""Sort-based sweeps against direct computation at every candidate threshold."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from furrytag_cli.evaluation.sweeps import (
    average_precision,
    best_f1_cuts,
    break_even_cut,
    counts_at,
)


def _random(seed, images=300, tags=6):
    rng = np.random.default_rng(seed)
    y = rng.random((images, tags)) < 0.3
    s = np.round(np.clip(0.3 * y + rng.random((images, tags)) * 0.7, 0, 1), 2)
    return y, s


@pytest.mark.parametrize("seed", range(3))
def test_average_precision_matches_sklearn_with_ties(seed):
    y, s = _random(seed)
    expected = [average_precision_score(y[:, j], s[:, j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(average_precision(y, s), expected, atol=1e-12)


def test_average_precision_of_perfect_and_empty_columns():
    y = np.array([[1, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.9], [0.8, 0.1], [0.1, 0.5]])
    assert average_precision(y, s).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("seed", range(3))
def test_best_f1_cuts_reach_the_maximum_over_all_thresholds(seed):
    y, s = _random(seed)
    thresholds, f1 = best_f1_cuts(y, s)
    for j in range(y.shape[1]):
        candidates = np.concatenate([np.unique(s[:, j]), [-1.0]])
        predicted = s[:, j, None] > candidates
        tp = (predicted & y[:, j, None]).sum(axis=0)
        brute = np.max(2 * tp / (predicted.sum(axis=0) + y[:, j].sum()))
        assert f1[j] == pytest.approx(brute)
        assert f1_score(y[:, j], s[:, j] > thresholds[j]) == pytest.approx(brute)


def test_best_f1_cut_is_a_midpoint_and_prefers_the_higher_threshold():
    y = np.array([[1], [1], [0], [0]])
    s = np.array([[0.9], [0.7], [0.4], [0.2]])
    thresholds, f1 = best_f1_cuts(y, s)
    assert f1[0] == 1.0 and thresholds[0] == pytest.approx(0.55)
    # Keeping the top image or all four both give F1 = 2/3: the higher threshold wins.
    y = np.array([[1], [0], [0], [1]])
    s = np.array([[0.9], [0.5], [0.4], [0.1]])
    thresholds, f1 = best_f1_cuts(y, s)
    assert f1[0] == pytest.approx(2 / 3) and thresholds[0] == pytest.approx(0.7)


def test_best_f1_cut_without_positives_predicts_nothing():
    s = np.array([[0.3], [0.8]])
    thresholds, f1 = best_f1_cuts(np.zeros((2, 1)), s)
    assert f1[0] == 0 and not (s > thresholds[0]).any()


def test_best_f1_cut_keeping_every_image_sits_below_the_lowest_score():
    s = np.array([[0.3], [0.8]])
    thresholds, f1 = best_f1_cuts(np.ones((2, 1)), s)
    assert f1[0] == 1.0 and (s > thresholds[0]).all()


def test_break_even_cut_equalises_precision_and_recall():
    rng = np.random.default_rng(5)
    y = rng.random(1000) < 0.2
    s = 0.3 * y + rng.random(1000)
    t = break_even_cut(y, s)
    predicted = s > t
    assert predicted.sum() == y.sum()
    tp = (predicted & y).sum()
    assert tp / predicted.sum() == pytest.approx(tp / y.sum())


def test_counts_at_thresholds():
    y = np.array([1, 0, 1, 1, 0])
    s = np.array([0.9, 0.8, 0.5, 0.5, 0.1])
    tp, predicted = counts_at(y, s, np.array([0.0, 0.5, 0.85, 1.0]))
    assert tp.tolist() == [3, 1, 1, 0]
    assert predicted.tolist() == [5, 2, 1, 0]
