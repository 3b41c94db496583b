"""Sort-based sweeps over score thresholds: average precision and best cuts.

Sorting each tag's scores once gives the confusion counts at every distinct threshold,
so a sweep costs one sort per column instead of one pass per candidate threshold. All
functions take ``y`` (N, T) 0/1 and ``s`` (N, T) scores, column per tag; a tag is
predicted positive when its score is strictly greater than the threshold.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Ranked:
    """Each column sorted by descending score, with counts at each tie group's end."""

    scores: np.ndarray  # (N, T) descending per column
    labels: np.ndarray  # (N, T) labels in the same order
    tp: np.ndarray  # (N, T) positives among the first k+1 rows
    group_end: np.ndarray  # (N, T) True where the next row has a lower score
    positives: np.ndarray  # (T,)

    @property
    def predicted(self) -> np.ndarray:
        """(N, 1) rows predicted positive when cutting after each row."""
        return np.arange(1, self.scores.shape[0] + 1)[:, None]


def _rank(y: np.ndarray, s: np.ndarray) -> _Ranked:
    # Rows with tied scores may come in any order: only tie groups' ends are read.
    order = np.argsort(-s, axis=0)
    scores = np.take_along_axis(s, order, axis=0)
    labels = np.take_along_axis(np.asarray(y, dtype=bool), order, axis=0)
    tp = np.cumsum(labels, axis=0, dtype=np.int64)
    group_end = np.ones_like(scores, dtype=bool)
    group_end[:-1] = scores[:-1] != scores[1:]
    return _Ranked(scores, labels, tp, group_end, tp[-1])


def _cut_between(ranked: _Ranked, rows: np.ndarray) -> np.ndarray:
    """A threshold that keeps exactly rows 0..k of each column, for k in ``rows``.

    The midpoint between the last kept score and the next lower one, so a threshold
    tuned on one split does not sit right on a score of that split.
    """
    cols = np.arange(ranked.scores.shape[1])
    n = ranked.scores.shape[0]
    kept = ranked.scores[rows, cols].astype(np.float64)
    below = ranked.scores[np.minimum(rows + 1, n - 1), cols].astype(np.float64)
    below = np.where(rows + 1 < n, below, np.nextafter(kept, -np.inf))
    mid = kept / 2 + below / 2
    # Adjacent floats have no midpoint strictly between them: fall back to the lower one.
    return np.where((mid >= below) & (mid < kept), mid, below)


def average_precision(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(T,) AP per column: sum over thresholds of (R_n - R_{n-1}) * P_n; 0 without positives.

    Matches scikit-learn's ``average_precision_score``: tied scores form one threshold.
    """
    r = _rank(y, s)
    n = r.scores.shape[0]
    rows = np.arange(n)[:, None]
    # Each positive contributes the precision at the end of its tie group.
    end_row = np.where(r.group_end, rows, n)
    group_last = np.minimum.accumulate(end_row[::-1], axis=0)[::-1]
    precision = r.tp / r.predicted
    at_group_end = np.take_along_axis(precision, group_last, axis=0)
    total = (r.labels * at_group_end).sum(axis=0)
    return np.divide(total, r.positives, out=np.zeros(total.shape), where=r.positives > 0)


def best_f1_cuts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, F1) per column at the threshold that maximises F1.

    F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + positives). Ties go to the higher
    threshold. A column whose best F1 is 0 gets its maximum score (nothing predicted).
    """
    r = _rank(y, s)
    f1 = np.where(r.group_end, 2 * r.tp / (r.predicted + r.positives), -1.0)
    rows = np.argmax(f1, axis=0)
    best = f1[rows, np.arange(f1.shape[1])]
    thresholds = np.where(best > 0, _cut_between(r, rows), r.scores[0])
    return thresholds, np.maximum(best, 0.0)


def break_even_cut(y: np.ndarray, s: np.ndarray) -> float:
    """The threshold of 1-D ``y``, ``s`` where precision equals recall (or comes closest).

    P = R exactly when as many labels are predicted positive as are positive, so this is
    the cut whose predicted count is nearest the positive count; ties go higher.
    """
    r = _rank(y.reshape(-1, 1), s.reshape(-1, 1))
    if r.positives[0] == 0:
        return float(r.scores[0, 0])
    gap = np.where(r.group_end, np.abs(r.predicted - r.positives), np.iinfo(np.int64).max)
    rows = np.argmin(gap, axis=0)
    return float(_cut_between(r, rows)[0])


def counts_at(
    y: np.ndarray, s: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(TP, predicted positives) of 1-D ``y``, ``s`` at each of ``thresholds``."""
    order = np.argsort(s)
    ascending = s[order]
    positives_below = np.concatenate([[0], np.cumsum(y[order], dtype=np.int64)])
    at_or_below = np.searchsorted(ascending, thresholds, side="right")
    return positives_below[-1] - positives_below[at_or_below], len(s) - at_or_below
