"""The tag vocabulary: ordered tag lists per head, and the rating head's bins.

Each multi-label head's tags come from ``categories/<head>.txt`` (one e621 tag a line,
sorted). The order of a head's tags is the order of its model output units.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import CategoryError, ConfigError
from furrytag_cli.core.resources import data_dir

HEADS: tuple[str, ...] = ("action", "body", "clothing", "identity", "species")
RATING_HEAD = "rating"
RATING_LABELS: tuple[str, ...] = ("safe", "questionable", "explicit")
DEFAULT_RATING_CUTS: tuple[float, float] = (1 / 3, 2 / 3)

# e621 tag names: lowercase, no whitespace or commas, no leading '-' or '~', no '*'.
_TAG_RE = re.compile(r"^[^\s,*\-~A-Z][^\s,*A-Z]*$")


def is_valid_tag(tag: str) -> bool:
    """Whether ``tag`` is a syntactically valid e621 tag name."""
    return bool(_TAG_RE.match(tag))


@dataclass(frozen=True)
class RatingSpec:
    """The rating head: one scalar in [0, 1] binned at two cut points.

    A score ``>= cuts[1]`` is explicit, ``>= cuts[0]`` questionable, else safe.
    """

    cuts: tuple[float, float] = DEFAULT_RATING_CUTS
    labels: tuple[str, ...] = RATING_LABELS

    def __post_init__(self) -> None:
        lo, hi = self.cuts
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(
                f"rating cut points must satisfy 0 <= low <= high <= 1; received cuts={lo},{hi}"
            )

    def label(self, score: float) -> str:
        """The rating label of a scalar score."""
        if score >= self.cuts[1]:
            return self.labels[2]
        if score >= self.cuts[0]:
            return self.labels[1]
        return self.labels[0]

    def target(self, label: str) -> float:
        """The training target of a label: safe 0, questionable 0.5, explicit 1."""
        try:
            return self.labels.index(label) / 2.0
        except ValueError:
            raise ConfigError(
                f"unknown rating {label!r}; expected one of {', '.join(self.labels)}"
            ) from None

    @classmethod
    def parse_cuts(cls, text: str) -> "RatingSpec":
        """Parse ``"0.33,0.67"`` into a spec."""
        parts = [p.strip() for p in text.split(",")]
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(
                f"rating cuts must be two numbers like 0.33,0.67; received {text!r}"
            ) from None
        return cls(cuts=(lo, hi))


@dataclass(frozen=True)
class CategorySet:
    """Ordered tag lists per multi-label head, plus the rating spec."""

    heads: Mapping[str, tuple[str, ...]]
    rating: RatingSpec = field(default_factory=RatingSpec)

    def __post_init__(self) -> None:
        for head, tags in self.heads.items():
            _validate_tags(head, tags, source=f"head {head!r}")

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(self.heads)

    @property
    def num_tags(self) -> int:
        return sum(len(t) for t in self.heads.values())

    def tags(self, head: str) -> tuple[str, ...]:
        try:
            return self.heads[head]
        except KeyError:
            raise CategoryError(
                f"unknown head {head!r}; heads are {', '.join(self.heads)}"
            ) from None

    def index(self) -> dict[str, tuple[str, int]]:
        """Map each tag to (head, position within head)."""
        return {tag: (head, i) for head, tags in self.heads.items() for i, tag in enumerate(tags)}

    @classmethod
    def load(cls, folder: Path | None = None, heads: Sequence[str] = HEADS) -> "CategorySet":
        """Load ``<folder>/<head>.txt`` for each head (default: the shipped categories)."""
        folder = Path(folder) if folder is not None else data_dir("categories")
        loaded = {}
        for head in heads:
            path = folder / f"{head}.txt"
            if not path.is_file():
                raise CategoryError(f"category file for head {head!r} not found: {path}")
            lines = path.read_text(encoding="utf-8").splitlines()
            loaded[head] = _parse_lines(lines, source=str(path))
        return cls(heads=loaded)


def _parse_lines(lines: Sequence[str], *, source: str) -> tuple[str, ...]:
    tags = []
    for number, line in enumerate(lines, start=1):
        tag = line.strip()
        if not tag:
            raise CategoryError(f"{source}:{number}: blank line; remove it")
        tags.append(tag)
    return tuple(tags)


def _validate_tags(head: str, tags: Sequence[str], *, source: str) -> None:
    if not tags:
        raise CategoryError(f"{source}: no tags")
    seen = set()
    for tag in tags:
        if not is_valid_tag(tag):
            raise CategoryError(
                f"{source}: {tag!r} is not a valid e621 tag (lowercase, no spaces, "
                "commas or '*', not starting with '-' or '~')"
            )
        if tag in seen:
            raise CategoryError(f"{source}: duplicate tag {tag!r}")
        seen.add(tag)
