"""What a gallery shows: furrytag's JSONL/JSON tagging output, the shards folder of
``tag --ray``, or a folder of captions.

Each becomes a ``Results``: the images in order (kept tags per head with their scores,
the rating, every tag's score when the run had ``--all-scores``), the failures of the
run, and the tag vocabulary. Anything else (CSV output, another tool's JSON) is refused
with a message that says what the gallery reads.
"""

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from furrytag_cli.captions.files import CaptionFiles
from furrytag_cli.captions.names import TagNames, tag_key
from furrytag_cli.core.errors import DatasetError
from furrytag_cli.model.categories import CategorySet
from furrytag_cli.tagging.discovery import discover, display_path

OTHER_HEAD = "other"  # caption tags that are not in the model's vocabulary (trigger words)
_READS = (
    "the gallery reads furrytag's JSONL or JSON output (furrytag tag -o results.jsonl), the "
    "output folder of tag --ray, or a folder of caption files (furrytag tag -f txt)"
)


@dataclass
class Item:
    """One image: its path as the results name it, the file, and what was kept."""

    path: str
    file: Path
    tags: dict[str, list[tuple[str, float | None]]]
    rating: str | None = None
    rating_score: float | None = None
    scores: np.ndarray | None = None  # every tag's score, in the order of Results.scored
    note: str | None = None


@dataclass
class Results:
    """Everything one gallery shows."""

    source: Path
    items: list[Item]
    vocabulary: dict[str, list[str]]
    failures: list[tuple[str, str]] = field(default_factory=list)
    model: str | None = None
    base: Path = field(default_factory=Path.cwd)
    scored: list[tuple[str, str]] = field(default_factory=list)  # (head, tag) of Item.scores

    @property
    def has_scores(self) -> bool:
        return bool(self.items) and all(item.scores is not None for item in self.items)


def read_results(
    source: Path,
    *,
    base: Path | None = None,
    failures: Path | None = None,
    captions: CaptionFiles | None = None,
) -> Results:
    """Read ``source``: a JSONL/JSON results file, the shards folder of ``tag --ray``, or
    a folder of captions.

    Relative image paths are taken from ``base`` (default: the current folder when the
    images are found there, else the results file's folder). ``failures`` is the run's
    failure report (default: the one ``tag`` writes beside its output, when present).
    ``captions`` says how a folder's caption files are named and written.
    """
    from furrytag_cli.distributed.shards import results_shards

    source = Path(source)
    shards = results_shards(source) if source.is_dir() else []
    if shards:
        results, report = _read_shards(source, shards, base), None
    elif source.is_dir():
        results = _read_captions(source, captions or CaptionFiles())
        report = source / "furrytag-failures.tsv"
    elif source.is_file():
        results = _read_records(source, base)
        report = source.with_name(source.name + ".failures.tsv")
    else:
        raise DatasetError(f"{source} does not exist; {_READS}")
    if failures is not None:
        results.failures.extend(read_failures(failures))
    elif report is not None and report.is_file():
        results.failures.extend(read_failures(report))
    return results


def read_failures(path: Path) -> list[tuple[str, str]]:
    """The ``path<TAB>reason`` rows of a failure report written by ``tag``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read the failure report {path}: {exc.strerror}") from None
    lines = text.split("\n")
    if not lines or lines[0].strip() != "path\treason":
        raise DatasetError(
            f"{path} is not a furrytag failure report (its first line should be "
            "'path<TAB>reason'); give the report tag wrote with --failures"
        )
    rows = []
    for line in lines[1:]:
        if line.strip():
            where, _, reason = line.rpartition("\t")
            rows.append((where, reason) if where else (reason, ""))
    return rows


def _read_records(path: Path, base: Path | None) -> Results:
    return _from_records(path, _records(path), base)


def _read_shards(folder: Path, shards: Sequence[Path], base: Path | None) -> Results:
    from furrytag_cli.distributed.shards import shard_rows

    results = _from_records(folder, shard_rows(shards), base, results_folder=folder)
    results.failures = _shard_failures(folder)
    return results


def _shard_failures(folder: Path) -> list[tuple[str, str]]:
    from furrytag_cli.distributed.shards import failure_shards, shard_rows

    shards = failure_shards(folder)
    return [(str(row.get("path")), str(row.get("reason"))) for _, row in shard_rows(shards)]


def _from_records(
    source: Path,
    records: Iterator[tuple[str, object]],
    base: Path | None,
    *,
    results_folder: Path | None = None,
) -> Results:
    layout = _ScoreLayout()
    items, models = [], set()
    for where, record in records:
        items.append(_item(record, where, layout))
        if isinstance(record.get("model"), str):
            models.add(record["model"])
    if not items:
        raise DatasetError(f"{source} holds no results; {_READS}")
    folder = base if base is not None else _guess_base(items, results_folder or source.parent)
    for item in items:
        item.file = folder / item.file
    return Results(
        source=source,
        items=items,
        vocabulary=_vocabulary(items, layout.tags),
        model=", ".join(sorted(models)) or None,
        base=folder,
        scored=layout.tags,
    )


def _records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record) of a JSON array or JSONL file, a line at a time for JSONL."""
    try:
        # Only "\n" ends a JSONL record: paths may hold other line breaks.
        handle = open(path, encoding="utf-8", errors="replace", newline="\n")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        start = handle.read(4096).lstrip()
        handle.seek(0)
        if not start:
            raise DatasetError(f"{path} is empty; {_READS}")
        if start.startswith("["):
            try:
                records = json.load(handle)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})"
                ) from None
            for number, record in enumerate(records, start=1):
                yield f"{path} (record {number})", record
        elif start.startswith("{"):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path}:{number}", _json_line(line, f"{path}:{number}")
        else:
            first = start.split("\n", 1)[0]
            kind = "CSV output" if next(csv.reader([first]), [""])[0] == "path" else "not JSON"
            raise DatasetError(f"{path} is {kind}; {_READS}")


def _json_line(line: str, where: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where} is not valid JSON ({exc.msg}); {_READS}") from None


class _ScoreLayout:
    """The order of every-tag scores, set by the first record that has them; a record's
    scores become one float32 row in that order (NaN for a tag it lacks)."""

    def __init__(self) -> None:
        self.tags: list[tuple[str, str]] = []
        self.heads: dict[str, tuple[str, ...]] = {}
        self.offsets: dict[str, int] = {}
        self.index: dict[tuple[str, str], int] = {}

    def row(self, scores: dict, where: str) -> np.ndarray:
        if not self.tags:
            for head, values in scores.items():
                self.offsets[head] = len(self.tags)
                self.heads[head] = tuple(values)
                self.tags.extend((head, tag) for tag in values)
            self.index = {key: i for i, key in enumerate(self.tags)}
        row = np.full(len(self.tags), np.nan, dtype=np.float32)
        try:
            for head, values in scores.items():
                if tuple(values) == self.heads.get(head):
                    start = self.offsets[head]
                    row[start : start + len(values)] = np.fromiter(
                        values.values(), np.float32, len(values)
                    )
                    continue
                for tag, value in values.items():
                    if (head, tag) in self.index:
                        row[self.index[(head, tag)]] = float(value)
        except (TypeError, ValueError, AttributeError):
            raise DatasetError(f'{where}: "scores" must map each head to tag scores') from None
        return row


def _item(record, where: str, layout: _ScoreLayout) -> Item:
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise DatasetError(f'{where} has no "path"; it is not a furrytag result; {_READS}')
    tags = record.get("tags")
    if not isinstance(tags, dict) or not all(
        isinstance(pairs, dict) and all(_is_score(s) for s in pairs.values())
        for pairs in tags.values()
    ):
        raise DatasetError(
            f'{where} has no "tags" per head ({{"species": {{"wolf": 0.9}}, ...}}); '
            f"it is not a furrytag result; {_READS}"
        )
    scores = record.get("scores")
    if scores is not None and not isinstance(scores, dict):
        raise DatasetError(f'{where}: "scores" must map each head to tag scores')
    rating = record.get("rating")
    rating_score = record.get("rating_score")
    return Item(
        path=record["path"],
        file=Path(record["path"]),
        tags={
            head: sorted(((t, float(s)) for t, s in pairs.items()), key=lambda p: -p[1])
            for head, pairs in tags.items()
        },
        rating=rating if isinstance(rating, str) else None,
        rating_score=float(rating_score) if _is_score(rating_score) else None,
        scores=layout.row(scores, where) if scores is not None else None,
    )


def _is_score(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _guess_base(items: Sequence[Item], results_folder: Path) -> Path:
    """The folder relative paths are found in: the current one, else the results file's."""
    relative = [item.file for item in items if not item.file.is_absolute()][:50]
    here = Path.cwd()
    if not relative:
        return here
    found_here = sum((here / p).exists() for p in relative)
    found_there = sum((results_folder / p).exists() for p in relative)
    return results_folder.resolve() if found_there > found_here else here


def _vocabulary(
    items: Sequence[Item], scored: Sequence[tuple[str, str]] = ()
) -> dict[str, list[str]]:
    """Every head's tags: the model's (from the scores, else the shipped lists), then any others."""
    vocabulary: dict[str, list[str]] = {}
    if scored:
        for head, tag in scored:
            vocabulary.setdefault(head, []).append(tag)
    else:
        vocabulary = {head: list(tags) for head, tags in CategorySet.load().heads.items()}
    known = {head: set(tags) for head, tags in vocabulary.items()}
    for item in items:
        for head, pairs in item.tags.items():
            for tag, _ in pairs:
                if tag not in known.setdefault(head, set()):
                    known[head].add(tag)
                    vocabulary.setdefault(head, []).append(tag)
    return vocabulary


def _read_captions(folder: Path, files: CaptionFiles) -> Results:
    found = discover([str(folder)])
    if not found.files:
        raise DatasetError(f"{folder} holds no images; {_READS}")
    categories = CategorySet.load()
    index = categories.index()
    names = TagNames(index)
    items = []
    for image in found.files:
        caption = files.read(image)
        if caption is None:
            items.append(Item(path=display_path(image), file=image, tags={}, note="no caption"))
            continue
        tags: dict[str, list[tuple[str, float | None]]] = {}
        seen = set()
        for word in files.split(caption):
            tag = names.get(word) or tag_key(word)
            if tag not in seen:
                seen.add(tag)
                head = index[tag][0] if tag in index else OTHER_HEAD
                tags.setdefault(head, []).append((tag, None))
        items.append(Item(path=display_path(image), file=image, tags=tags))
    if all(item.note for item in items):
        raise DatasetError(
            f"none of the {len(items)} images in {folder} has a caption file beside it "
            f"(image{files.extension}); caption them with furrytag tag -f txt"
        )
    return Results(
        source=folder,
        items=items,
        vocabulary=_vocabulary(items),
        failures=list(found.problems),
        base=Path.cwd(),
    )
