"""The e621 database export → a labelled, split dataset manifest.

Reads ``posts``, ``tag_aliases`` and ``tag_implications`` (``.csv`` or ``.csv.gz``) row
by row; memory grows only by 16 bytes per kept post and per post with a parent (md5 keys,
family links), not with the rows. A post's labels are its tags after alias mapping and closure
under active implications, intersected with each head's tags: many head tags (``feline``
from ``domestic_cat``) are reached only through implications.
"""

import re
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.export_tables import ExportFiles, ExportTable, read_relations
from furrytag_cli.dataset.families import ParentLinks
from furrytag_cli.dataset.implications import implication_table, write_table
from furrytag_cli.dataset.layout import E621_BASE_URL, STILL_FORMATS
from furrytag_cli.dataset.manifest import (
    MANIFEST,
    ManifestEntry,
    SplitRatios,
    StatsCounter,
    write_stats,
)
from furrytag_cli.dataset.tag_rules import TagResolver
from furrytag_cli.model.categories import RATING_LABELS, CategorySet

RATINGS = {"s": RATING_LABELS[0], "q": RATING_LABELS[1], "e": RATING_LABELS[2]}
POST_COLUMNS = (
    "id",
    "created_at",
    "md5",
    "rating",
    "tag_string",
    "file_ext",
    "parent_id",
    "is_deleted",
    "is_pending",
    "is_flagged",
    "score",
)
_MD5 = re.compile(r"[0-9a-f]{32}")


def file_url(md5: str, ext: str, base_url: str = E621_BASE_URL) -> str:
    """Where e621 serves a post's original file."""
    return f"{base_url.rstrip('/')}/data/{md5[0:2]}/{md5[2:4]}/{md5}.{ext}"


def sample_url(md5: str, base_url: str = E621_BASE_URL) -> str:
    """Where e621 serves a post's downsized sample (a JPEG; only for large images)."""
    return f"{base_url.rstrip('/')}/data/sample/{md5[0:2]}/{md5[2:4]}/{md5}.jpg"


@dataclass(frozen=True)
class BuildOptions:
    """Which posts a build keeps and how it splits them."""

    formats: tuple[str, ...] = STILL_FORMATS
    keep_deleted: bool = False
    keep_pending: bool = False
    keep_flagged: bool = False
    keep_untagged: bool = False
    min_score: int | None = None
    since: str | None = None
    limit: int | None = None
    splits: SplitRatios = field(default_factory=SplitRatios)

    def __post_init__(self) -> None:
        formats = tuple(f.strip().lower().lstrip(".") for f in self.formats if f.strip())
        if not formats:
            raise ConfigError("--formats needs at least one file extension, e.g. jpg,png,webp")
        object.__setattr__(self, "formats", formats)
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"--limit must be a positive number of posts; received {self.limit}")
        if self.since is not None:
            object.__setattr__(self, "since", _parse_since(self.since))


def _parse_since(text: str) -> str:
    """``YYYY-MM-DD[ HH:MM:SS]`` → the same form as ``created_at``, which sorts as text."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since must be a date like 2024-01-31 or 2024-01-31 12:00:00; received {text!r}"
        ) from None
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class BuildReport:
    """What a build read, kept and dropped."""

    manifest: Path
    stats: dict
    rows: int = 0
    kept: int = 0
    duplicates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def build_dataset(
    export: Sequence[Path],
    out: Path,
    categories: CategorySet | None = None,
    options: BuildOptions | None = None,
    *,
    progress: bool = False,
) -> BuildReport:
    """Write ``out/manifest.jsonl``, ``out/stats.json``, ``out/summary.txt`` and
    ``out/implications.json`` (which head tags imply which) from an export."""
    categories = categories or CategorySet.load()
    options = options or BuildOptions()
    files = ExportFiles.find(export)
    started = time.perf_counter()
    resolver = TagResolver(
        categories,
        {a: c[0] for a, c in read_relations(files.aliases).items()},
        read_relations(files.implications),
    )
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the output folder {out}: {exc}") from None
    partial = out / (MANIFEST + ".partial")
    counter = StatsCounter(categories)
    report = BuildReport(manifest=out / MANIFEST, stats={})
    report.dropped = dict.fromkeys(
        (
            "malformed",
            "deleted",
            "pending",
            "flagged",
            "format",
            "date",
            "score",
            "rating",
            "md5",
            "untagged",
        ),
        0,
    )
    # One 64-bit md5 prefix and the parent-or-own id per kept post, in manifest order:
    # enough to find duplicates and whole families afterwards without holding millions
    # of strings.
    keys, families, links = array("Q"), array("Q"), ParentLinks()
    posts = ExportTable(files.posts, POST_COLUMNS, progress=progress)
    try:
        with posts as table, partial.open("w", encoding="utf-8") as sink:
            for row in _filtered_rows(table, options, report.dropped, links):
                entry = _entry(row, table.columns, resolver, options, report.dropped)
                if entry is None:
                    continue
                sink.write(entry.to_json() + "\n")
                counter.add(entry)
                keys.append(int(entry.md5[:16], 16))
                families.append(entry.family)
                report.kept += 1
                if options.limit is not None and report.kept >= options.limit:
                    break
            report.dropped["malformed"] += table.malformed
    except BaseException:
        # A broken export or Ctrl-C leaves no half-written manifest behind.
        partial.unlink(missing_ok=True)
        raise
    # Every row read was either written or dropped for one reason.
    report.rows = report.kept + sum(report.dropped.values())
    if not report.kept:
        partial.unlink(missing_ok=True)
        reasons = ", ".join(
            f"{count:,} {reason}" for reason, count in report.dropped.items() if count
        )
        raise DatasetError(
            f"no post was kept of the {report.rows:,} read from {files.posts} "
            f"(dropped: {reasons or 'none'}); loosen the filters (--formats, --min-score, "
            "--since, --keep-*) or check the export"
        )
    try:
        report.duplicates = _finish_manifest(
            partial, report.manifest, keys, families, links, options.splits, counter
        )
    finally:
        partial.unlink(missing_ok=True)
    report.kept -= report.duplicates
    report.seconds = time.perf_counter() - started
    report.stats = counter.to_dict(build=_build_record(files, options, report))
    write_stats(out, report.stats)
    write_table(out, implication_table(resolver))
    return report


def _build_record(files: ExportFiles, options: BuildOptions, report: BuildReport) -> dict:
    """How a manifest was built, for ``stats.json``."""
    return {
        "export": {
            "posts": str(files.posts),
            "tag_aliases": str(files.aliases),
            "tag_implications": str(files.implications),
        },
        "options": {
            "formats": list(options.formats),
            "keep_deleted": options.keep_deleted,
            "keep_pending": options.keep_pending,
            "keep_flagged": options.keep_flagged,
            "keep_untagged": options.keep_untagged,
            "min_score": options.min_score,
            "since": options.since,
            "limit": options.limit,
            "splits": {
                "train": options.splits.train,
                "val": options.splits.val,
                "test": options.splits.test,
                "seed": options.splits.seed,
            },
        },
        "rows": report.rows,
        "kept": report.kept,
        "duplicates": report.duplicates,
        "dropped": report.dropped,
        "seconds": round(report.seconds, 2),
    }


def _filtered_rows(
    table: ExportTable, options: BuildOptions, dropped: dict[str, int], links: ParentLinks
):
    """Rows that pass the cheap column filters; each drop counted by its reason.

    The parent link of every row is recorded first: a dropped post still joins its
    parent and its children into one family.
    """
    col = table.columns
    i_del, i_pen, i_flag = col["is_deleted"], col["is_pending"], col["is_flagged"]
    i_ext, i_created, i_score = col["file_ext"], col["created_at"], col["score"]
    i_id, i_parent = col["id"], col["parent_id"]
    formats, since, min_score = set(options.formats), options.since, options.min_score
    for row in table:
        if row[i_parent]:
            child, parent = _int(row[i_id], None), _int(row[i_parent], None)
            if child is not None and parent:
                links.add(child, parent)
        if row[i_del] == "t" and not options.keep_deleted:
            dropped["deleted"] += 1
        elif row[i_pen] == "t" and not options.keep_pending:
            dropped["pending"] += 1
        elif row[i_flag] == "t" and not options.keep_flagged:
            dropped["flagged"] += 1
        elif row[i_ext].lower() not in formats:
            dropped["format"] += 1
        elif since is not None and row[i_created] < since:
            dropped["date"] += 1
        elif min_score is not None and _int(row[i_score], 0) < min_score:
            dropped["score"] += 1
        else:
            yield row


def _entry(
    row: list[str],
    col: Mapping[str, int],
    resolver: TagResolver,
    options: BuildOptions,
    dropped: dict[str, int],
) -> ManifestEntry | None:
    rating = RATINGS.get(row[col["rating"]])
    if rating is None:
        dropped["rating"] += 1
        return None
    md5 = row[col["md5"]].lower()
    if not _MD5.fullmatch(md5):
        dropped["md5"] += 1
        return None
    slots = resolver.slots_of(row[col["tag_string"]].split())
    if not slots and not options.keep_untagged:
        dropped["untagged"] += 1
        return None
    post_id = _int(row[col["id"]], None)
    if post_id is None:
        dropped["malformed"] += 1
        return None
    family = _int(row[col["parent_id"]], None) or post_id
    tags: dict[str, list[str]] = {head: [] for head in resolver.categories.heads}
    for slot in slots:
        head, tag = resolver.slots[slot]
        tags[head].append(tag)
    ext = row[col["file_ext"]].lower()
    return ManifestEntry(
        id=post_id,
        family=family,
        md5=md5,
        ext=ext,
        url=file_url(md5, ext),
        split=options.splits.split_of(family),
        rating=rating,
        tags={head: tuple(t) for head, t in tags.items()},
    )


def _int(text: str, default: int | None) -> int | None:
    try:
        return int(text)
    except ValueError:
        return default


def _finish_manifest(
    partial: Path,
    final: Path,
    keys: array,
    families: array,
    links: ParentLinks,
    splits: SplitRatios,
    counter: StatsCounter,
) -> int:
    """Move the manifest into place: the first post of each md5 only, every post in the
    split of its whole family (the top of its parent chain). Returns the duplicates left out.
    """
    import numpy as np

    sorted_keys = np.sort(np.frombuffer(keys, dtype=np.uint64))
    repeated = set(sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]].tolist())
    direct = np.frombuffer(families, dtype=np.uint64)
    roots = links.roots(direct)
    moved = np.flatnonzero(roots != direct)
    if not repeated and not len(moved):
        partial.replace(final)
        return 0
    root_of = dict(zip(moved.tolist(), roots[moved].tolist()))
    seen: set[int] = set()
    duplicates = 0
    with partial.open(encoding="utf-8") as lines, final.open("w", encoding="utf-8") as sink:
        for index, (key, line) in enumerate(zip(keys, lines)):
            if key in repeated:
                if key in seen:
                    counter.add(ManifestEntry.from_json(line), sign=-1)
                    duplicates += 1
                    continue
                seen.add(key)
            root = root_of.get(index)
            if root is not None:
                entry = ManifestEntry.from_json(line)
                counter.add(entry, sign=-1)
                entry = replace(entry, family=root, split=splits.split_of(root))
                counter.add(entry)
                line = entry.to_json() + "\n"
            sink.write(line)
    return duplicates
