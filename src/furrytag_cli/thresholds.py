"""Decision thresholds per tag, and tuning them on a validation split.

A tag is predicted when its score is strictly greater than its threshold. The threshold
of a tag is its own value if it has one, else its head's, else the global one. Tuned
thresholds are chosen on validation data and applied unchanged to the test split.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from furrytag_cli.errors import ConfigError
from furrytag_cli.schema import check_keys, did_you_mean, read_yaml
from furrytag_cli.scoreset import ScoreSet
from furrytag_cli.sweeps import best_f1_cuts, break_even_cut

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Global, per-head and per-tag thresholds; ``default`` is stored under ``global``."""

    default: float = DEFAULT_THRESHOLD
    per_head: Mapping[str, float] = field(default_factory=dict)
    per_tag: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)  # a file, named in errors

    @property
    def _named(self) -> str:
        return f"thresholds in {self.source}" if self.source else "thresholds"

    def vector(self, head: str, tags: Sequence[str]) -> np.ndarray:
        """(T,) thresholds of ``head``'s ``tags`` in order; unknown tag names are an error."""
        own = self.per_tag.get(head, {})
        unknown = [t for t in own if t not in tags]
        if unknown:
            raise ConfigError(
                f"{self._named} name tag {unknown[0]!r} of head {head!r}, which the model does not "
                f"have{did_you_mean(unknown[0], tags)}; remove it or use the matching model"
            )
        fallback = self.per_head.get(head, self.default)
        return np.array([own.get(tag, fallback) for tag in tags], dtype=np.float64)

    def vectors(self, tags: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
        """Per-head threshold vectors for the tag lists ``tags`` ({head: tags})."""
        for head in (*self.per_head, *self.per_tag):
            if head not in tags:
                raise ConfigError(
                    f"{self._named} name head {head!r}, which the model does not have"
                    f"{did_you_mean(head, tags)}; its heads are {', '.join(tags)}"
                )
        return {head: self.vector(head, head_tags) for head, head_tags in tags.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a YAML or JSON file: ``{"global", "per_head", "per_tag"}``."""
        return {
            "global": float(self.default),
            "per_head": {h: float(t) for h, t in self.per_head.items()},
            "per_tag": {h: {t: float(v) for t, v in tags.items()} for h, tags in self.per_tag.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "thresholds") -> "Thresholds":
        """Validate and load what :meth:`to_dict` wrote; ``where`` names the source in errors."""
        check_keys(data, allowed=("global", "per_head", "per_tag"), required=("global",), where=where)
        per_head = _mapping(data.get("per_head"), f"{where}.per_head")
        per_tag = _mapping(data.get("per_tag"), f"{where}.per_tag")
        return cls(
            default=_threshold(data["global"], f"{where}.global"),
            per_head={str(h): _threshold(v, f"{where}.per_head.{h}") for h, v in per_head.items()},
            per_tag={
                str(h): {
                    str(t): _threshold(v, f"{where}.per_tag.{h}.{t}")
                    for t, v in _mapping(tags, f"{where}.per_tag.{h}").items()
                }
                for h, tags in per_tag.items()
            },
        )


def load_thresholds(path: str | Path) -> Thresholds:
    """Thresholds from a YAML or JSON file, as ``furrytag evaluate --save-thresholds`` writes."""
    data = read_yaml(path, "thresholds file", syntax="YAML or JSON",
                     missing_hint="; write one with furrytag evaluate ... --save-thresholds FILE")
    return replace(Thresholds.from_dict(data, where=str(path)), source=str(path))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A mapping keyed by head or tag names (None reads as empty)."""
    value = {} if value is None else value
    return check_keys(value, allowed=value if isinstance(value, Mapping) else (), where=where)


def _threshold(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{where} must be a number from 0 to 1; received {value!r}")
    return float(value)


def best_f1_threshold(data: ScoreSet, heads: tuple[str, ...] | None = None) -> float:
    """The threshold maximising micro F1 over all tags of ``heads`` (default: all)."""
    y, s = data.pooled(heads)
    return float(best_f1_cuts(y[:, None], s[:, None])[0][0])


def break_even_threshold(data: ScoreSet, heads: tuple[str, ...] | None = None) -> float:
    """The threshold where micro precision equals micro recall over ``heads`` (default: all)."""
    return break_even_cut(*data.pooled(heads))


def tune_thresholds(data: ScoreSet, *, min_support: int = 10, shrinkage: float = 10.0) -> Thresholds:
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
        weight = np.divide(support, support + shrinkage, out=np.ones(len(support)), where=support > 0)
        shrunk = weight * own + (1 - weight) * per_head[head]
        tags = {
            tag: float(shrunk[i])
            for i, tag in enumerate(data.tags[head])
            if support[i] >= min_support
        }
        if tags:
            per_tag[head] = tags
    return Thresholds(default=default, per_head=per_head, per_tag=per_tag)
