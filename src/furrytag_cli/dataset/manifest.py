"""A built dataset on disk: the manifest of labelled posts, their splits, and stats.

``<data>/manifest.jsonl`` holds one JSON object a line, one line a post::

    {"id": 12, "family": 10, "md5": "…32 hex…", "ext": "png",
     "url": "https://static1.e621.net/data/ab/cd/abcd….png", "split": "train",
     "rating": "safe", "tags": {"action": [], "body": ["anthro"], …, "species": ["feline"]}}

``family`` is the top of the post's parent chain (parent, its parent, …), or its own id
when it has no parent; the split is a function of the family alone, so related posts
never straddle splits. ``tags`` lists,
per head, the head's tags the post has, in category order. ``<data>/stats.json`` holds
the counts (posts and ratings per split, positives per tag and split, tags with no
positives) and how the manifest was built.
"""

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.layout import SPLITS, original_path, sample_path
from furrytag_cli.model.categories import RATING_LABELS, CategorySet

MANIFEST = "manifest.jsonl"
STATS = "stats.json"
SUMMARY = "summary.txt"
STATS_FORMAT = 1


@dataclass(frozen=True)
class SplitRatios:
    """How families are divided among train/val/test, by a stable hash of the family id."""

    train: float = 0.9
    val: float = 0.05
    test: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        ratios = (self.train, self.val, self.test)
        # `not r >= 0` also rejects NaN, which every comparison lets through.
        if any(not r >= 0 for r in ratios) or not abs(sum(ratios) - 1.0) <= 1e-6:
            raise ConfigError(
                "split ratios must be three non-negative numbers (train,val,test) summing "
                f"to 1; received {self.train},{self.val},{self.test}"
            )

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> "SplitRatios":
        """Parse ``"0.9,0.05,0.05"`` (train,val,test)."""
        try:
            train, val, test = (float(p) for p in text.split(","))
        except ValueError:
            raise ConfigError(
                f"split ratios must look like 0.9,0.05,0.05 (train,val,test); received {text!r}"
            ) from None
        return cls(train, val, test, seed)

    def split_of(self, family: int) -> str:
        """The split of a post family: the same on every machine and Python version."""
        digest = hashlib.blake2b(f"{self.seed}:{family}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        bound = 0.0
        ratios = (self.train, self.val, self.test)
        last = max(i for i, r in enumerate(ratios) if r > 0)
        for i, (split, ratio) in enumerate(zip(SPLITS, ratios)):
            # The last non-empty split takes what float rounding leaves above its bound.
            bound = 1.0 if i == last else bound + ratio
            if u < bound:
                return split
        return SPLITS[last]


@dataclass(frozen=True)
class ManifestEntry:
    """One post of a built dataset."""

    id: int
    family: int
    md5: str
    ext: str
    url: str
    split: str
    rating: str
    tags: Mapping[str, tuple[str, ...]]

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "family": self.family,
                "md5": self.md5,
                "ext": self.ext,
                "url": self.url,
                "split": self.split,
                "rating": self.rating,
                "tags": {head: list(tags) for head, tags in self.tags.items()},
            }
        )

    @classmethod
    def from_json(cls, line: str, where: str = "manifest") -> "ManifestEntry":
        try:
            data = json.loads(line)
            entry = cls(
                id=int(data["id"]),
                family=int(data["family"]),
                md5=str(data["md5"]),
                ext=str(data["ext"]),
                url=str(data["url"]),
                split=str(data["split"]),
                rating=str(data["rating"]),
                tags={str(h): tuple(str(t) for t in tags) for h, tags in data["tags"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(
                f"{where}: not a manifest entry ({type(exc).__name__}: {exc}); "
                "rebuild it with `furrytag dataset build`"
            ) from None
        if entry.split not in SPLITS or entry.rating not in RATING_LABELS:
            raise DatasetError(
                f"{where}: split must be one of {', '.join(SPLITS)} and rating one of "
                f"{', '.join(RATING_LABELS)}; received split={entry.split!r}, rating={entry.rating!r}"
            )
        return entry


def manifest_path(data_dir: Path) -> Path:
    """The manifest of the dataset in ``data_dir``; a clear error when there is none."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(
            f"no {MANIFEST} in {data_dir}; create one with `furrytag dataset build "
            f"--export EXPORT --data {data_dir}`"
        )
    return path


def iter_manifest(data_dir: Path, splits: Sequence[str] = SPLITS) -> Iterator[ManifestEntry]:
    """The entries of a dataset's manifest in file order, keeping those in ``splits``."""
    path = manifest_path(data_dir)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                entry = ManifestEntry.from_json(line, where=f"{path}:{number}")
                if entry.split in splits:
                    yield entry


class StatsCounter:
    """Running counts of posts, ratings and tag positives per split."""

    def __init__(self, categories: CategorySet) -> None:
        self.categories = categories
        self.posts = dict.fromkeys(SPLITS, 0)
        self.ratings = {split: dict.fromkeys(RATING_LABELS, 0) for split in SPLITS}
        self.positives = {
            split: {head: dict.fromkeys(tags, 0) for head, tags in categories.heads.items()}
            for split in SPLITS
        }

    def add(self, entry: ManifestEntry, sign: int = 1) -> None:
        """Count ``entry`` (``sign=-1`` takes it back out)."""
        self.posts[entry.split] += sign
        self.ratings[entry.split][entry.rating] += sign
        positives = self.positives[entry.split]
        for head, tags in entry.tags.items():
            for tag in tags:
                positives[head][tag] += sign

    def to_dict(self, build: Mapping | None = None) -> dict:
        """The content of ``stats.json``."""
        tags = {
            head: {tag: {s: self.positives[s][head][tag] for s in SPLITS} for tag in head_tags}
            for head, head_tags in self.categories.heads.items()
        }
        zero = {
            split: [
                f"{head}/{tag}"
                for head, counts in tags.items()
                for tag, per_split in counts.items()
                if per_split[split] == 0
            ]
            for split in SPLITS
            if self.posts[split]
        }
        return {
            "format": STATS_FORMAT,
            "posts": {**self.posts, "total": sum(self.posts.values())},
            "ratings": self.ratings,
            "tags": tags,
            "zero_positive": zero,
            "build": dict(build or {}),
        }


def write_stats(data_dir: Path, stats: Mapping) -> None:
    """Write ``stats.json`` and the human summary next to the manifest."""
    data_dir = Path(data_dir)
    (data_dir / STATS).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    (data_dir / SUMMARY).write_text(summary_text(stats) + "\n", encoding="utf-8")


def read_stats(data_dir: Path, categories: CategorySet | None = None) -> dict:
    """A dataset's stats: ``stats.json``, or counted from the manifest when it is missing."""
    path = Path(data_dir) / STATS
    if path.is_file():
        try:
            stats = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc}); delete it to recount") from None
        if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT:
            raise DatasetError(
                f"{path}: expected stats format {STATS_FORMAT}; delete it to recount"
            )
        return stats
    counter = StatsCounter(categories or CategorySet.load())
    for entry in iter_manifest(data_dir):
        counter.add(entry)
    return counter.to_dict()


def summary_text(stats: Mapping) -> str:
    """A few lines for people: split sizes, ratings, dropped posts, tags without positives."""
    posts = stats["posts"]
    lines = [
        f"{posts['total']:,} posts: " + ", ".join(f"{s} {posts[s]:,}" for s in SPLITS),
    ]
    for split in SPLITS:
        if posts[split]:
            ratings = stats["ratings"][split]
            lines.append(
                f"  {split:<5} ratings: "
                + ", ".join(f"{label} {ratings[label] / posts[split]:.0%}" for label in ratings)
            )
    build = stats.get("build") or {}
    if build.get("dropped"):
        dropped = ", ".join(f"{reason} {n:,}" for reason, n in build["dropped"].items() if n)
        lines.append(f"Read {build.get('rows', 0):,} rows; dropped: {dropped or 'none'}")
    if build.get("duplicates"):
        lines.append(f"Collapsed {build['duplicates']:,} duplicate md5s")
    num_tags = sum(len(tags) for tags in stats["tags"].values())
    for split, tags in stats["zero_positive"].items():
        if tags:
            shown = ", ".join(tags[:8]) + (", …" if len(tags) > 8 else "")
            lines.append(f"{len(tags)} of {num_tags} tags have no {split} positives: {shown}")
    return "\n".join(lines)


def local_image(data_dir: Path, entry: ManifestEntry) -> Path | None:
    """The fetched image of a post (the original if present, else the sample), or None."""
    for path in (original_path(data_dir, entry.md5, entry.ext), sample_path(data_dir, entry.md5)):
        if path.is_file():
            return path
    return None
