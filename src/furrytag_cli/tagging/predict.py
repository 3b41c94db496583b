"""Scores → tags: thresholds (global, per head, tuned per tag, from a file), top-k, rating bins, exclusions."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.schema import did_you_mean
from furrytag_cli.engines.base import Scores
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import RatingSpec
from furrytag_cli.model.thresholds import Thresholds


@dataclass(frozen=True)
class TagOptions:
    """How scores become tags. None means: use the bundle's default."""

    threshold: float | None = None
    head_thresholds: Mapping[str, float] = field(default_factory=dict)
    tuned: bool = True
    thresholds: Thresholds | None = None
    top_k: int | None = None
    heads: Sequence[str] | None = None
    rating_cuts: tuple[float, float] | None = None
    exclude_tags: frozenset[str] = frozenset()
    all_scores: bool = False


@dataclass
class Tagging:
    """The tags of one image: per head (tag, score) pairs, best first, and the rating."""

    tags: dict[str, list[tuple[str, float]]]
    rating: str
    rating_score: float
    scores: dict[str, dict[str, float]] | None = None
    embedding: np.ndarray | None = None

    def flat(self) -> list[tuple[str, str, float]]:
        """(head, tag, score) for every kept tag, best score first."""
        rows = [(h, t, s) for h, pairs in self.tags.items() for t, s in pairs]
        return sorted(rows, key=lambda r: -r[2])


class Predictor:
    """Turns a batch's scores into ``Tagging`` results for one bundle and options."""

    def __init__(self, bundle: Bundle, options: TagOptions = TagOptions()):
        self.options = options
        head_names = bundle.categories.head_names
        heads = list(options.heads) if options.heads else list(head_names)
        for head in heads:
            if head == "rating":
                raise ConfigError(
                    f"the rating is always given; --heads picks among the tag heads: "
                    f"{', '.join(head_names)}"
                )
            if head not in head_names:
                raise ConfigError(
                    f"unknown head {head!r}{did_you_mean(head, head_names)}; "
                    f"heads are {', '.join(head_names)}"
                )
        for head in options.head_thresholds:
            if head not in head_names:
                raise ConfigError(
                    f"--head-threshold names unknown head {head!r}{did_you_mean(head, head_names)}"
                )
        for value in (options.threshold, *options.head_thresholds.values()):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"thresholds must be between 0 and 1; received {value}")
        known = {tag for head in head_names for tag in bundle.categories.tags(head)}
        unknown = sorted(options.exclude_tags - known)
        if unknown:
            raise ConfigError(
                f"--exclude-tags names unknown tag {unknown[0]!r}{did_you_mean(unknown[0], known)}"
            )
        if options.top_k is not None and options.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1; received {options.top_k}")
        self.heads = heads
        self.tags = {h: bundle.categories.tags(h) for h in heads}
        self.rating = RatingSpec(cuts=options.rating_cuts) if options.rating_cuts else bundle.rating
        # Tuned thresholds, from a file or shipped in the bundle, must fit the model's heads and tags.
        tuned = options.thresholds
        if tuned is None and options.tuned and bundle.thresholds:
            tuned = Thresholds.from_dict(bundle.thresholds, where="bundle thresholds")
        self._tuned = tuned.vectors(bundle.categories.heads) if tuned is not None else None
        self.thresholds = {h: self._vector(bundle, h) for h in heads}
        self.keep = {
            h: np.array([t not in options.exclude_tags for t in self.tags[h]]) for h in heads
        }

    def _vector(self, bundle: Bundle, head: str) -> np.ndarray:
        tags = self.tags[head]
        options = self.options
        if head in options.head_thresholds:
            return np.full(len(tags), options.head_thresholds[head])
        if options.threshold is not None:
            return np.full(len(tags), options.threshold)
        if self._tuned is not None:
            return self._tuned[head]
        return np.full(len(tags), bundle.threshold)

    def predict(self, scores: Scores, row: int) -> Tagging:
        """The tags of row ``row`` of a batch's scores."""
        tags = {}
        for head in self.heads:
            values = scores.heads[head][row]
            chosen = np.flatnonzero((values > self.thresholds[head]) & self.keep[head])
            chosen = chosen[np.argsort(-values[chosen], kind="stable")]
            if self.options.top_k is not None:
                chosen = chosen[: self.options.top_k]
            tags[head] = [(self.tags[head][i], round(float(values[i]), 4)) for i in chosen]
        rating_score = float(scores.rating[row])
        all_scores = None
        if self.options.all_scores:
            all_scores = {
                h: {t: round(float(s), 4) for t, s in zip(self.tags[h], scores.heads[h][row])}
                for h in self.heads
            }
        embedding = scores.embedding[row] if scores.embedding is not None else None
        return Tagging(
            tags=tags,
            rating=self.rating.label(rating_score),
            rating_score=round(rating_score, 4),
            scores=all_scores,
            embedding=embedding,
        )


def parse_head_thresholds(items: Sequence[str]) -> dict[str, float]:
    """Parse repeated ``head=value`` options."""
    result = {}
    for item in items:
        head, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            result[head.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--head-threshold takes HEAD=VALUE like species=0.4; received {item!r}"
            ) from None
    return result
