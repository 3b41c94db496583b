"""Tuning decision thresholds on labelled scores: global best-F1 and P=R, per head, and
per tag shrunk toward its head. Thresholds are chosen on validation data and applied
unchanged to the test split."""

import math

import numpy as np

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.sweeps import best_f1_cuts, break_even_cut
from furrytag_cli.model.thresholds import Thresholds


def best_f1_threshold(data: ScoreSet, heads: tuple[str, ...] | None = None) -> float:
    """The threshold maximising micro F1 over all tags of ``heads`` (default: all)."""
    y, s = data.pooled(heads)
    return float(best_f1_cuts(y[:, None], s[:, None])[0][0])


def break_even_threshold(data: ScoreSet, heads: tuple[str, ...] | None = None) -> float:
    """The threshold where micro precision equals micro recall over ``heads`` (default: all)."""
    return break_even_cut(*data.pooled(heads))


def tune_thresholds(
    data: ScoreSet, *, min_support: int = 10, shrinkage: float = 10.0
) -> Thresholds:
    """Best-F1 thresholds on ``data``: global, per head, and per tag for frequent tags.

    A tag with at least ``min_support`` positives gets its own threshold, shrunk toward
    its head's: ``w * own + (1 - w) * head`` with ``w = n / (n + shrinkage)``, so a tag
    seen a few times moves only part of the way to its noisy optimum. A head without
    positives keeps the global threshold.
    """
    if isinstance(min_support, bool) or not isinstance(min_support, int) or min_support < 1:
        raise ConfigError(f"min_support must be an integer >= 1; received {min_support!r}")
    if not (isinstance(shrinkage, (int, float)) and 0 <= shrinkage < math.inf):
        raise ConfigError(f"shrinkage must be a number >= 0; received {shrinkage!r}")
    default = best_f1_threshold(data)
    per_head, per_tag = {}, {}
    for head in data.heads:
        y, s = data.y_true[head], data.scores[head]
        if not y.any():
            continue
        per_head[head] = best_f1_threshold(data, (head,))
        own, _ = best_f1_cuts(y, s)
        support = y.sum(axis=0)
        weight = np.divide(
            support, support + shrinkage, out=np.ones(len(support)), where=support > 0
        )
        shrunk = weight * own + (1 - weight) * per_head[head]
        tags = {
            tag: float(shrunk[i])
            for i, tag in enumerate(data.tags[head])
            if support[i] >= min_support
        }
        if tags:
            per_tag[head] = tags
    return Thresholds(default=default, per_head=per_head, per_tag=per_tag)
