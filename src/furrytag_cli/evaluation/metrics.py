"""Tagging and rating metrics from scores and true labels (definitions: docs/metrics.md).

Multi-label heads: precision, recall, F1 and MCC, micro (pooled counts) and macro (mean
over tags with positives), over all tags, per head and per frequency slice; per tag the
same plus average precision. Rating: 3-class accuracy at the cut points, the confusion
matrix, and the cut points that would have been best on the data.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from furrytag_cli.core.errors import ConfigError, FurrytagError
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.sweeps import average_precision
from furrytag_cli.model.categories import DEFAULT_RATING_CUTS, RATING_LABELS, RatingSpec
from furrytag_cli.model.thresholds import Thresholds

SLICES: tuple[str, ...] = ("frequent", "rare")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, and 0 where den is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


@dataclass(frozen=True)
class Counts:
    """Confusion counts per tag, (T,) int64 arrays."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.tp, self.fp, self.fn, self.tn

    def select(self, mask: np.ndarray) -> "Counts":
        return Counts(*(c[mask] for c in self._arrays()))

    def pooled(self) -> "Counts":
        """The counts of all tags summed into one (micro averaging)."""
        return Counts(*(np.array([c.sum()], dtype=np.int64) for c in self._arrays()))

    @staticmethod
    def concatenate(parts: list["Counts"]) -> "Counts":
        """The tags of ``parts`` one after another."""
        return Counts(*(np.concatenate(c) for c in zip(*(p._arrays() for p in parts))))

    def rates(self) -> dict[str, np.ndarray]:
        """Per tag: precision, recall, F1 and MCC, with 0 wherever a denominator is 0."""
        tp, fp, fn, tn = (c.astype(np.float64) for c in self._arrays())
        mcc_den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "mcc": _ratio(tp * tn - fp * fn, mcc_den),
        }


def confusion_counts(y: np.ndarray, s: np.ndarray, thresholds: float | np.ndarray) -> Counts:
    """Counts of (N, T) labels ``y`` against scores ``s`` predicted as ``s > thresholds``.

    ``thresholds`` is one number or a (T,) vector.
    """
    y = np.asarray(y, dtype=bool)
    predicted = np.asarray(s) > np.asarray(thresholds)
    tp = (predicted & y).sum(axis=0, dtype=np.int64)
    fp = predicted.sum(axis=0, dtype=np.int64) - tp
    fn = y.sum(axis=0, dtype=np.int64) - tp
    return Counts(tp, fp, fn, len(y) - tp - fp - fn)


@dataclass(frozen=True)
class Averages:
    precision: float
    recall: float
    f1: float
    mcc: float


@dataclass(frozen=True)
class GroupMetrics:
    """Metrics of a group of tags (all, a head, a frequency slice).

    ``macro`` and ``mean_ap`` average over the ``scored_tags`` tags that have positives.
    """

    tags: int
    scored_tags: int
    support: int
    micro: Averages
    macro: Averages
    mean_ap: float


@dataclass(frozen=True)
class TagRow:
    head: str
    tag: str
    support: int
    threshold: float
    precision: float
    recall: float
    f1: float
    mcc: float
    ap: float


@dataclass(frozen=True)
class TagMetrics:
    """Multi-label metrics at one setting of thresholds."""

    thresholds: Thresholds
    overall: GroupMetrics
    heads: Mapping[str, GroupMetrics]
    slices: Mapping[str, GroupMetrics]
    rows: tuple[TagRow, ...]

    def to_dict(self) -> dict:
        """Everything but the per-tag rows, as plain data."""
        return {
            "thresholds": self.thresholds.to_dict(),
            "overall": asdict(self.overall),
            "heads": {h: asdict(g) for h, g in self.heads.items()},
            "slices": {name: asdict(g) for name, g in self.slices.items()},
        }


@dataclass(frozen=True)
class RatingMetrics:
    """3-class rating metrics; ``confusion[i][j]`` counts true class i predicted as j."""

    cuts: tuple[float, float]
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    best_cuts: tuple[float, float]
    best_accuracy: float
    labels: tuple[str, ...] = RATING_LABELS

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """All metrics of one model on one split: tags per threshold setting, and the rating."""

    images: int
    settings: Mapping[str, TagMetrics]
    rating: RatingMetrics | None

    def to_dict(self) -> dict:
        """Plain data for ``metrics.json``."""
        return {
            "images": self.images,
            "settings": {name: m.to_dict() for name, m in self.settings.items()},
            "rating": self.rating.to_dict() if self.rating else None,
        }


def _group(counts: Counts, ap: np.ndarray) -> GroupMetrics:
    scored = counts.support > 0
    micro = {k: float(v[0]) for k, v in counts.pooled().rates().items()}
    per_tag = counts.select(scored).rates()
    macro = {k: float(v.mean()) if scored.any() else 0.0 for k, v in per_tag.items()}
    return GroupMetrics(
        tags=len(scored),
        scored_tags=int(scored.sum()),
        support=int(counts.support.sum()),
        micro=Averages(**micro),
        macro=Averages(**macro),
        mean_ap=float(ap[scored].mean()) if scored.any() else 0.0,
    )


def frequency_slices(support: np.ndarray, frequent_fraction: float) -> dict[str, np.ndarray]:
    """Masks over tags: ``frequent``, the top fraction of tags with positives by support,
    and ``rare``, every other tag (those without positives too)."""
    if not 0 < frequent_fraction <= 1:
        raise ConfigError(f"frequent_fraction must be in (0, 1]; received {frequent_fraction!r}")
    order = np.argsort(-support, kind="stable")
    frequent = np.zeros(len(support), dtype=bool)
    frequent[order[: math.ceil(frequent_fraction * int((support > 0).sum()))]] = True
    return {"frequent": frequent, "rare": ~frequent}


def _tag_metrics(
    data: ScoreSet, thresholds: Thresholds, ap: Mapping[str, np.ndarray], frequent_fraction: float
) -> TagMetrics:
    vectors = thresholds.vectors(data.tags)
    counts = {h: confusion_counts(data.y_true[h], data.scores[h], vectors[h]) for h in data.heads}
    rows = []
    for head in data.heads:
        rates = counts[head].rates()
        for i, tag in enumerate(data.tags[head]):
            rows.append(
                TagRow(
                    head=head,
                    tag=tag,
                    support=int(counts[head].support[i]),
                    threshold=float(vectors[head][i]),
                    ap=float(ap[head][i]),
                    **{name: float(values[i]) for name, values in rates.items()},
                )
            )
    every = Counts.concatenate([counts[h] for h in data.heads])
    every_ap = np.concatenate([ap[h] for h in data.heads])
    slices = frequency_slices(every.support, frequent_fraction)
    return TagMetrics(
        thresholds=thresholds,
        overall=_group(every, every_ap),
        heads={h: _group(counts[h], ap[h]) for h in data.heads},
        slices={name: _group(every.select(mask), every_ap[mask]) for name, mask in slices.items()},
        rows=tuple(rows),
    )


def evaluate_scores(
    data: ScoreSet,
    settings: Mapping[str, float | Thresholds],
    *,
    rating_cuts: tuple[float, float] = DEFAULT_RATING_CUTS,
    frequent_fraction: float = 0.2,
) -> Evaluation:
    """Metrics of ``data`` at each named threshold setting (a number or ``Thresholds``).

    For example ``{"0.5": 0.5, "tuned": tune_thresholds(validation)}``.
    """
    if not settings:
        raise ConfigError("give at least one threshold setting to evaluate at; received none")
    resolved = {}
    for name, value in settings.items():
        if isinstance(value, Thresholds):
            resolved[name] = value
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            resolved[name] = Thresholds(default=float(value))
        else:
            raise ConfigError(
                f"threshold setting {name!r} must be a number or Thresholds; received {value!r}"
            )
    ap = {h: average_precision(data.y_true[h], data.scores[h]) for h in data.heads}
    rating = None
    if data.rating_true is not None:
        rating = rating_metrics(data.rating_true, data.rating_score, rating_cuts)
    return Evaluation(
        images=data.images,
        settings={
            name: _tag_metrics(data, t, ap, frequent_fraction) for name, t in resolved.items()
        },
        rating=rating,
    )


def rating_classes(score: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    """Class per score, 0 safe, 1 questionable, 2 explicit, as ``RatingSpec.label`` bins."""
    score = np.asarray(score)
    return (score >= cuts[0]).astype(np.int64) + (score >= cuts[1])


def target_classes(r_true: np.ndarray) -> np.ndarray:
    """Class per rating target (safe 0, questionable 0.5, explicit 1)."""
    doubled = 2 * np.asarray(r_true, dtype=np.float64)
    classes = np.rint(doubled).astype(np.int64)
    bad = (np.abs(doubled - classes) > 1e-6) | (classes < 0) | (classes > 2)
    if bad.any():
        raise FurrytagError(f"rating targets must be 0, 0.5 or 1; received {doubled[bad][0] / 2:g}")
    return classes


def best_rating_cuts(classes: np.ndarray, score: np.ndarray) -> tuple[tuple[float, float], float]:
    """The cut points in [0, 1] with the highest 3-class accuracy, and that accuracy.

    Candidates are midpoints between consecutive distinct scores (and 0 and 1); ties go
    to the lowest cuts. Linear in the number of candidates after one sort.
    """
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score)
    ascending, classes = score[order], np.asarray(classes)[order]
    distinct = np.unique(ascending)
    candidates = np.unique(
        np.clip(np.concatenate([[0.0, 1.0], distinct[:-1] / 2 + distinct[1:] / 2]), 0.0, 1.0)
    )
    below = np.searchsorted(ascending, candidates, side="left")
    # cum[c, i]: images of class c among the i lowest scores.
    cum = np.zeros((3, len(ascending) + 1), dtype=np.int64)
    cum[:, 1:] = np.cumsum(classes[None, :] == np.arange(3)[:, None], axis=1)
    safe, questionable, explicit = cum[:, below]
    # Correct with cuts (a <= b): safe below a + questionable in [a, b) + explicit from b.
    low_gain = safe - questionable
    high_gain = questionable - explicit
    best_low = np.maximum.accumulate(low_gain)
    b = int(np.argmax(best_low + high_gain))
    a = int(np.argmax(low_gain[: b + 1]))
    correct = low_gain[a] + high_gain[b] + cum[2, -1]
    return (float(candidates[a]), float(candidates[b])), float(correct / len(score))


def rating_metrics(
    r_true: np.ndarray, r_score: np.ndarray, cuts: tuple[float, float] = DEFAULT_RATING_CUTS
) -> RatingMetrics:
    """Accuracy and confusion matrix at ``cuts``, and the best cuts on this data."""
    cuts = RatingSpec(cuts=tuple(float(c) for c in cuts)).cuts
    truth = target_classes(r_true)
    predicted = rating_classes(r_score, cuts)
    if truth.shape != predicted.shape or truth.ndim != 1 or not len(truth):
        raise FurrytagError(
            f"rating targets and scores must be two equal-length 1-D arrays; received shapes "
            f"{np.shape(r_true)} and {np.shape(r_score)}"
        )
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    best_cuts, best_accuracy = best_rating_cuts(truth, r_score)
    return RatingMetrics(
        cuts=cuts,
        accuracy=float(np.trace(confusion) / len(truth)),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        best_cuts=best_cuts,
        best_accuracy=best_accuracy,
    )
