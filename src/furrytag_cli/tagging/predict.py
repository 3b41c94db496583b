"""Scores → tags: thresholds (global, per head, tuned per tag, from a file), top-k, a cap on
the tags of an image, rating bins, exclusions.

Scores are rounded to 4 decimals before anything is decided, as outputs write them, so
that tags chosen again from saved scores (``furrytag retag``) are exactly the same.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from furrytag_cli.captions.names import TagNames
from furrytag_cli.core.errors import ConfigError, UsageError
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
    max_tags: int | None = None
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
                raise UsageError(
                    f"the rating is always given; --heads picks among the tag heads: "
                    f"{', '.join(head_names)}"
                )
            if head not in head_names:
                raise UsageError(
                    f"unknown head {head!r}{did_you_mean(head, head_names)}; "
                    f"heads are {', '.join(head_names)}"
                )
        for head in options.head_thresholds:
            if head not in head_names:
                raise UsageError(
                    f"--head-threshold names unknown head {head!r}{did_you_mean(head, head_names)}"
                )
        for value in (options.threshold, *options.head_thresholds.values()):
            if value is not None and not 0.0 <= value <= 1.0:
                raise UsageError(f"thresholds must be between 0 and 1; received {value}")
        names = TagNames(t for head in head_names for t in bundle.categories.tags(head))
        excluded = set(names.resolve(sorted(options.exclude_tags), "--exclude-tags"))
        for option, value in (("--top-k", options.top_k), ("--max-tags", options.max_tags)):
            if value is not None and value < 1:
                raise UsageError(f"{option} must be at least 1; received {value}")
        self.heads = heads
        self.tags = {h: bundle.categories.tags(h) for h in heads}
        self.rating = RatingSpec(cuts=options.rating_cuts) if options.rating_cuts else bundle.rating
        # Tuned thresholds, from a file or shipped in the bundle, must fit the model's heads and tags.
        tuned = options.thresholds
        if tuned is None and options.tuned and bundle.thresholds:
            tuned = Thresholds.from_dict(bundle.thresholds, where="bundle thresholds")
        if tuned is not None and tuned.model is not None and tuned.model != bundle.model_id:
            raise ConfigError(
                f"{tuned.source or 'the thresholds'} were tuned for model {tuned.model}, and this "
                f"is {bundle.model_id}; tune them again for this model (furrytag evaluate "
                "--save-thresholds) or use the matching model"
            )
        self._tuned = tuned.vectors(bundle.categories.heads) if tuned is not None else None
        self.thresholds = {h: self._vector(bundle, h) for h in heads}
        self.keep = {h: np.array([t not in excluded for t in self.tags[h]]) for h in heads}
        # The chosen heads side by side: one comparison decides every tag of an image.
        self.width = sum(len(self.tags[h]) for h in heads)
        self._thresholds = np.concatenate([self.thresholds[h] for h in heads])
        self._keep = np.concatenate([self.keep[h] for h in heads])
        self._owner = [(h, t) for h in heads for t in self.tags[h]]

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
        values = np.concatenate([scores.heads[h][row] for h in self.heads])
        return self.tagging(
            np.round(values.astype(np.float64), 4),
            round(float(scores.rating[row]), 4),
            scores.embedding[row] if scores.embedding is not None else None,
        )

    def tagging(
        self, values: np.ndarray, rating_score: float, embedding: np.ndarray | None = None
    ) -> Tagging:
        """The tags of one image from its scores rounded to 4 decimals: ``values`` holds the
        chosen heads' scores one after the other, each head's in the model's tag order."""
        chosen = np.flatnonzero((values > self._thresholds) & self._keep)
        tags: dict[str, list[tuple[str, float]]] = {h: [] for h in self.heads}
        owner = self._owner
        for i, score in zip(chosen.tolist(), values[chosen].tolist()):
            head, tag = owner[i]
            tags[head].append((tag, score))
        top_k = self.options.top_k
        for pairs in tags.values():
            if len(pairs) > 1:
                # Stable, also reversed: equal scores keep the model's tag order.
                pairs.sort(key=_score, reverse=True)
            if top_k is not None:
                del pairs[top_k:]
        if self.options.max_tags is not None:
            tags = _best(tags, self.options.max_tags)
        all_scores = None
        if self.options.all_scores:
            all_scores, start = {}, 0
            for head in self.heads:
                names = self.tags[head]
                stop = start + len(names)
                all_scores[head] = dict(zip(names, values[start:stop].tolist()))
                start = stop
        return Tagging(
            tags=tags,
            rating=self.rating.label(rating_score),
            rating_score=rating_score,
            scores=all_scores,
            embedding=embedding,
        )


_score = itemgetter(1)


def _best(tags: dict[str, list[tuple[str, float]]], count: int) -> dict[str, list]:
    """Only the ``count`` best-scoring tags over all heads (the first head wins a tie)."""
    rows = sorted(
        (
            (-score, h, i)
            for h, pairs in enumerate(tags.values())
            for i, (_, score) in enumerate(pairs)
        )
    )[:count]
    kept = {(h, i) for _, h, i in rows}
    return {
        head: [pair for i, pair in enumerate(pairs) if (h, i) in kept]
        for h, (head, pairs) in enumerate(tags.items())
    }


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
