"""What an earlier run already tagged: keys read back from its JSONL or JSON output, the
paths of its CSV output, and what a killed run left in its partial files.

A file counts as done when its path, size, mtime and the model's identity all match a
record, so a changed file or another model is tagged again. CSV holds none of these: a
path in it counts as done.
"""

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from furrytag_cli.core.errors import OutputError
from furrytag_cli.tagging.discovery import display_path
from furrytag_cli.tagging.sinks import (
    partial_path,
    read_embeddings,
    read_partial,
    save_embeddings,
    write_csv,
    write_json,
)

Key = tuple[str, int, float, str]


def file_key(path: Path, model: str) -> Key | None:
    """The resume key of an input file (None when it cannot be stat'ed)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (display_path(path), stat.st_size, stat.st_mtime, model)


def record_key(record: dict) -> Key | None:
    try:
        return (record["path"], record["file"]["size"], record["file"]["mtime"], record["model"])
    except (KeyError, TypeError):
        return None


def read_records(path: Path, fmt: str) -> list[dict]:
    """The complete records of an earlier output (a torn last JSONL line is ignored).

    Raises OutputError when the file holds anything but furrytag records in ``fmt``, so
    that resuming never appends to (or replaces) a file it does not understand.
    """
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if fmt == "json":
        records = _parse(text) if text.strip() else []
    else:
        # Only "\n" ends a record (paths may hold other line breaks); the piece after the
        # last one is empty or a torn line.
        records = [_parse(line) for line in text.split("\n")[:-1] if line.strip()]
    if not isinstance(records, list) or any(record_key(r) is None for r in records):
        raise OutputError(
            f"{path} is not furrytag {fmt} output (or is cut short), so --resume cannot "
            "continue it; check --format (-f), or use --overwrite to replace the file or -o "
            "to write another"
        )
    return records


def _parse(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def done_keys(records: Iterable[dict]) -> set[Key]:
    return {key for key in map(record_key, records) if key is not None}


def read_csv(path: Path, header: Sequence[str]) -> list[list[list[str]]]:
    """The rows of an earlier CSV output, grouped per image (path) in order.

    Raises OutputError unless the file is furrytag CSV with ``header``'s columns.
    """
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            rows = list(csv.reader(handle))
    except csv.Error:
        rows = []
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    if not rows or rows[0] != list(header) or any(len(row) != len(header) for row in rows):
        raise OutputError(
            f"{path} is not furrytag CSV output with this run's columns "
            f"({', '.join(header)}), so --resume cannot continue it; use the same --heads "
            "and --long, or --overwrite to replace the file, or -o to write another"
        )
    groups: dict[str, list[list[str]]] = {}
    for row in rows[1:]:
        groups.setdefault(row[0], []).append(row)
    return list(groups.values())


def recover(output: Path | None, fmt: str, header: Sequence[str]) -> int:
    """Fold what a killed run left in ``output``'s partial file into ``output`` and remove
    the partial file; return how many images it held (0 when there was none)."""
    if output is None or fmt not in ("json", "csv") or not partial_path(output).exists():
        return 0
    entries = read_partial(output)
    if fmt == "json":
        found = [e for e in entries if isinstance(e, dict) and record_key(e) is not None]
        merged = {r["path"]: r for r in read_records(output, "json")}
        merged.update((record["path"], record) for record in found)
        write_json(output, merged.values())
    else:
        found = [e for e in entries if _is_row_group(e, len(header))]
        groups = {rows[0][0]: rows for rows in read_csv(output, header)}
        groups.update((rows[0][0], rows) for rows in found)
        write_csv(output, header, groups.values())
    partial_path(output).unlink()
    return len(found)


def recover_embeddings(target: Path) -> bool:
    """As ``recover``, for an embeddings file and its paths file; True when there was a
    partial file."""
    if not partial_path(target).exists():
        return False
    rows, paths = read_embeddings(target)
    if rows is not None:
        save_embeddings(target, rows, paths)
    partial_path(target).unlink()
    return True


def _is_row_group(entry, width: int) -> bool:
    return (
        isinstance(entry, list)
        and bool(entry)
        and all(isinstance(row, list) and len(row) == width for row in entry)
        and len({row[0] for row in entry}) == 1
    )
