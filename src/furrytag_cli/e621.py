"""The e621 database export → a labelled, split dataset manifest.

Reads ``posts``, ``tag_aliases`` and ``tag_implications`` (``.csv`` or ``.csv.gz``) row
by row in constant memory. A post's labels are its tags after alias mapping and closure
under active implications, intersected with each head's tags: many head tags (``feline``
from ``domestic_cat``) are reached only through implications.
"""

import csv
import gzip
import io
import re
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from furrytag_cli.categories import RATING_LABELS, CategorySet
from furrytag_cli.errors import ConfigError, DatasetError
from furrytag_cli.manifest import MANIFEST, ManifestEntry, SplitRatios, StatsCounter, write_stats
from furrytag_cli.progressbar import progress_bar
from furrytag_cli.tagresolver import TagResolver

E621_BASE_URL = "https://static1.e621.net"
STILL_FORMATS: tuple[str, ...] = ("jpg", "png", "webp")
RATINGS = {"s": RATING_LABELS[0], "q": RATING_LABELS[1], "e": RATING_LABELS[2]}
POST_COLUMNS = (
    "id", "created_at", "md5", "rating", "tag_string", "file_ext", "parent_id",
    "is_deleted", "is_pending", "is_flagged", "score",
)
RELATION_COLUMNS = ("antecedent_name", "consequent_name", "status")
_EXPORT_KINDS = ("posts", "tag_aliases", "tag_implications")
_MD5 = re.compile(r"[0-9a-f]{32}")
_PROGRESS_EVERY = 4096


def file_url(md5: str, ext: str, base_url: str = E621_BASE_URL) -> str:
    """Where e621 serves a post's original file."""
    return f"{base_url.rstrip('/')}/data/{md5[0:2]}/{md5[2:4]}/{md5}.{ext}"


def sample_url(md5: str, base_url: str = E621_BASE_URL) -> str:
    """Where e621 serves a post's downsized sample (a JPEG; only for large images)."""
    return f"{base_url.rstrip('/')}/data/sample/{md5[0:2]}/{md5[2:4]}/{md5}.jpg"


@dataclass(frozen=True)
class ExportFiles:
    """The three export files a build reads."""

    posts: Path
    aliases: Path
    implications: Path

    @classmethod
    def find(cls, paths: Sequence[Path]) -> "ExportFiles":
        """Pick the files from folders and/or files, by name (``posts-DATE.csv[.gz]`` …).

        Where a folder holds several dates of one kind, the newest is used.
        """
        found: dict[str, list[Path]] = {kind: [] for kind in _EXPORT_KINDS}
        for path in map(Path, paths):
            if path.is_dir():
                candidates = sorted(path.iterdir())
            elif path.is_file():
                candidates = [path]
            else:
                raise DatasetError(f"export path not found: {path}")
            for candidate in candidates:
                kind = _export_kind(candidate.name)
                if kind:
                    found[kind].append(candidate)
        missing = [kind for kind in _EXPORT_KINDS if not found[kind]]
        if missing:
            raise DatasetError(
                f"the export given ({', '.join(map(str, paths))}) has no "
                + ", ".join(f"{kind}-*.csv[.gz]" for kind in missing)
                + "; download them from e621's db_export (aliases and implications are "
                "needed for complete labels)"
            )
        newest = {kind: max(files, key=lambda p: p.name) for kind, files in found.items()}
        return cls(newest["posts"], newest["tag_aliases"], newest["tag_implications"])


def _export_kind(name: str) -> str | None:
    for kind in _EXPORT_KINDS:
        if name.startswith(kind + "-") and name.endswith((".csv", ".csv.gz")):
            return kind
    return None


class ExportTable:
    """One export CSV file (plain or gzip) read row by row; rows of the wrong width skipped."""

    def __init__(self, path: Path, required: Sequence[str], *, progress: bool = False) -> None:
        self.path = Path(path)
        self.required = tuple(required)
        self.progress = progress
        self.malformed = 0
        self._bar = None

    def __enter__(self) -> "ExportTable":
        # Descriptions can be megabytes long; the csv module's default limit is 128 KiB.
        csv.field_size_limit(2**31 - 1)
        self._raw = self.path.open("rb")
        binary = gzip.GzipFile(fileobj=self._raw) if self.path.name.endswith(".gz") else self._raw
        self._text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
        self._reader = csv.reader(self._text)
        try:
            header = next(self._reader)
        except (StopIteration, OSError, csv.Error) as exc:
            self.close()
            raise DatasetError(f"{self.path}: cannot read a CSV header ({exc or 'empty file'})") from None
        self.columns = {name: i for i, name in enumerate(header)}
        missing = [c for c in self.required if c not in self.columns]
        if missing:
            self.close()
            raise DatasetError(
                f"{self.path}: missing column(s) {', '.join(missing)}; received header "
                f"{','.join(header)[:300]!r} — is this the right export file?"
            )
        self.width = len(header)
        if self.progress:
            self._bar = progress_bar(self.path.stat().st_size, self.path.name, "B", unit_scale=True)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._raw.tell() - self._bar.n)
            self._bar.close()
            self._bar = None
        self._text.close()
        self._raw.close()

    def __iter__(self) -> Iterator[list[str]]:
        bar = self._bar
        try:
            for number, row in enumerate(self._reader, start=1):
                if bar is not None and number % _PROGRESS_EVERY == 0:
                    # Compressed bytes read: a total known up front, so the bar has an ETA.
                    bar.update(self._raw.tell() - bar.n)
                if len(row) == self.width:
                    yield row
                else:
                    self.malformed += 1
        except (OSError, EOFError, csv.Error) as exc:
            raise DatasetError(
                f"{self.path}: unreadable near line {self._reader.line_num} ({exc}); "
                "download the export again"
            ) from None


def read_relations(path: Path) -> dict[str, list[str]]:
    """Active rows of a tag_aliases or tag_implications file: antecedent → consequents."""
    relations: dict[str, list[str]] = {}
    with ExportTable(path, RELATION_COLUMNS) as table:
        a, c, s = (table.columns[name] for name in RELATION_COLUMNS)
        for row in table:
            if row[s] == "active":
                relations.setdefault(row[a], []).append(row[c])
    return relations


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
    """Write ``out/manifest.jsonl``, ``out/stats.json`` and ``out/summary.txt`` from an export."""
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
        ("malformed", "deleted", "pending", "flagged", "format", "date", "score",
         "rating", "md5", "untagged"), 0,
    )
    # One 64-bit md5 prefix per kept post, in manifest order: enough to find duplicates
    # afterwards without holding millions of strings.
    keys = array("Q")
    posts = ExportTable(files.posts, POST_COLUMNS, progress=progress)
    with posts as table, partial.open("w", encoding="utf-8") as sink:
        for row in _filtered_rows(table, options, report.dropped):
            entry = _entry(row, table.columns, resolver, options, report.dropped)
            if entry is None:
                continue
            sink.write(entry.to_json() + "\n")
            counter.add(entry)
            keys.append(int(entry.md5[:16], 16))
            report.kept += 1
            if options.limit is not None and report.kept >= options.limit:
                break
        report.dropped["malformed"] += table.malformed
    # Every row read was either written or dropped for one reason.
    report.rows = report.kept + sum(report.dropped.values())
    report.duplicates = _collapse_duplicates(partial, report.manifest, keys, counter)
    report.kept -= report.duplicates
    report.seconds = time.perf_counter() - started
    report.stats = counter.to_dict(build={
        "export": {"posts": str(files.posts), "tag_aliases": str(files.aliases),
                   "tag_implications": str(files.implications)},
        "options": {
            "formats": list(options.formats), "keep_deleted": options.keep_deleted,
            "keep_pending": options.keep_pending, "keep_flagged": options.keep_flagged,
            "keep_untagged": options.keep_untagged, "min_score": options.min_score,
            "since": options.since, "limit": options.limit,
            "splits": {"train": options.splits.train, "val": options.splits.val,
                       "test": options.splits.test, "seed": options.splits.seed},
        },
        "rows": report.rows, "kept": report.kept, "duplicates": report.duplicates,
        "dropped": report.dropped, "seconds": round(report.seconds, 2),
    })
    write_stats(out, report.stats)
    return report


def _filtered_rows(table: ExportTable, options: BuildOptions, dropped: dict[str, int]):
    """Rows that pass the cheap column filters; each drop counted by its reason."""
    col = table.columns
    i_del, i_pen, i_flag = col["is_deleted"], col["is_pending"], col["is_flagged"]
    i_ext, i_created, i_score = col["file_ext"], col["created_at"], col["score"]
    formats, since, min_score = set(options.formats), options.since, options.min_score
    for row in table:
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
    row: list[str], col: Mapping[str, int], resolver: TagResolver,
    options: BuildOptions, dropped: dict[str, int],
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
        id=post_id, family=family, md5=md5, ext=ext, url=file_url(md5, ext),
        split=options.splits.split_of(family), rating=rating,
        tags={head: tuple(t) for head, t in tags.items()},
    )


def _int(text: str, default: int | None) -> int | None:
    try:
        return int(text)
    except ValueError:
        return default


def _collapse_duplicates(partial: Path, final: Path, keys: array, counter: StatsCounter) -> int:
    """Move the manifest into place keeping the first post of each md5; count the rest."""
    import numpy as np

    sorted_keys = np.sort(np.frombuffer(keys, dtype=np.uint64))
    repeated = set(sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]].tolist())
    if not repeated:
        partial.replace(final)
        return 0
    seen: set[int] = set()
    duplicates = 0
    with partial.open(encoding="utf-8") as lines, final.open("w", encoding="utf-8") as sink:
        for key, line in zip(keys, lines):
            if key in repeated:
                if key in seen:
                    counter.add(ManifestEntry.from_json(line), sign=-1)
                    duplicates += 1
                    continue
                seen.add(key)
            sink.write(line)
    partial.unlink()
    return duplicates
