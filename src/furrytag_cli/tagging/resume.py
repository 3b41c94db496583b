"""What an earlier run already tagged: keys read back from its JSONL or JSON output.

A file counts as done when its path, size, mtime and the model's identity all match a
record, so a changed file or another model is tagged again.
"""

import json
from collections.abc import Iterable
from pathlib import Path

from furrytag_cli.core.errors import OutputError
from furrytag_cli.tagging.discovery import display_path

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
