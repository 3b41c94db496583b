"""The files of e621's database export: finding them, and reading them row by row.

``posts``, ``tag_aliases`` and ``tag_implications`` come as ``<kind>-YYYY-MM-DD.csv.gz``
(or plain ``.csv``). Rows are read one at a time, so a file of millions of posts needs no
more memory than one row; fields may hold megabytes and span lines (descriptions).
"""

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.core.progress import Progress

RELATION_COLUMNS = ("antecedent_name", "consequent_name", "status")
_EXPORT_KINDS = ("posts", "tag_aliases", "tag_implications")
_PROGRESS_EVERY = 4096


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
            raise DatasetError(
                f"{self.path}: cannot read a CSV header ({exc or 'empty file'})"
            ) from None
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
            self._bar = Progress(self.path.stat().st_size, self.path.name, "B").start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set(self._raw.tell())
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
                    bar.set(self._raw.tell())
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
