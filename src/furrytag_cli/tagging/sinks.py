"""Where tagging results go: JSON, JSONL, CSV, caption .txt files, embeddings.

Nothing is lost when a run stops early: JSONL and captions are appended/written and
flushed per batch; JSON, CSV and embeddings collect per batch in a partial file beside
the target (``.NAME.part``) that ``close()`` turns into the target (also after Ctrl-C or
SIGTERM, with what is done). After a kill the partial file stays, and ``--resume``
recovers what it holds.
"""

import csv
import io
import itertools
import json
import os
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

import numpy as np

from furrytag_cli.captions.style import CaptionStyle
from furrytag_cli.core.atomic import AtomicFile, remove_stale, write_text
from furrytag_cli.core.errors import OutputError
from furrytag_cli.tagging.discovery import display_path
from furrytag_cli.tagging.predict import Tagging

FORMATS = ("jsonl", "json", "csv", "txt")


@dataclass
class Result:
    """One tagged image: where it is, what file it was, and its tags."""

    path: Path
    tagging: Tagging
    size: int
    mtime: float
    model: str

    def record(self) -> dict:
        """The JSON-ready record of this result."""
        t = self.tagging
        data = {
            "path": display_path(self.path),
            "tags": {h: dict(pairs) for h, pairs in t.tags.items()},
            "rating": t.rating,
            "rating_score": t.rating_score,
        }
        if t.scores is not None:
            data["scores"] = t.scores
        data["file"] = {"size": self.size, "mtime": self.mtime}
        data["model"] = self.model
        return data


class TagSink:
    """Base sink: ``write`` a batch of results, ``close`` when done (always called)."""

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        """Write a batch; return the images that could not be written, with the reason."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output; safe to call once after any number of writes."""


class JsonlSink(TagSink):
    """One JSON object per line, flushed per batch; appends when resuming.

    When writing to ``path`` fails (disk full, file size limit), the file is cut back to
    its last complete batch, so that ``--resume`` continues from there.
    """

    def __init__(self, stream: TextIO, owned: bool, path: Path | None = None):
        self.stream = stream
        self.owned = owned
        self.path = path
        self.committed = _size(stream)

    @classmethod
    def to_path(cls, path: Path, append: bool) -> "JsonlSink":
        if append:
            truncate_torn_line(path)
        return cls(_open_text(path, "a" if append else "w"), owned=True, path=path)

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        try:
            for result in results:
                self.stream.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
            self.stream.flush()
        except OSError as exc:
            if self.path is None:
                raise  # standard output: a closed pipe is the job's business
            _close_quietly(self.stream)
            os.truncate(self.path, self.committed)
            raise _write_error(
                self.path,
                exc,
                "what was written before is intact; make room and continue with --resume",
            ) from None
        self.committed = _size(self.stream)
        return []

    def close(self) -> None:
        if self.owned:
            self.stream.close()
        else:
            self.stream.flush()


def partial_path(target: Path) -> Path:
    """Where a JSON, CSV or embeddings output collects results until its run ends.

    Flushed per batch; a killed run leaves it behind and ``--resume`` recovers from it.
    """
    return target.with_name(f".{target.name}.part")


def is_special(path: Path) -> bool:
    """Whether ``path`` is a device or FIFO (``/dev/null``): written straight, not replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def replace_file(target: Path, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Write ``target`` through a temporary file beside it, renamed over it once complete;
    on failure the temporary file is removed and ``target`` keeps its earlier content."""
    text = {} if binary else {"encoding": "utf-8", "newline": ""}
    try:
        staged = AtomicFile(target, "wb" if binary else "w", **text)
    except OSError as exc:
        raise OutputError(f"cannot write in {target.parent}: {exc.strerror}") from None
    try:
        write(staged.file)
        staged.commit()
    except OSError as exc:
        staged.discard()
        raise _write_error(target, exc, "nothing was replaced") from None
    except BaseException:
        staged.discard()
        raise


class _Journal:
    """The partial file of a JSON or CSV output: one JSON entry per line, flushed per batch."""

    def __init__(self, target: Path):
        self.target = target
        self.path = partial_path(target)
        self.stream = _open_text(self.path, "w")
        self.abandoned = False

    def append(self, entries: Sequence) -> None:
        try:
            for entry in entries:
                self.stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.stream.flush()
        except OSError as exc:
            self.discard()
            raise _write_error(self.target, exc, "nothing was replaced") from None

    def texts(self) -> Iterator[str]:
        """The entries written, as JSON text (after ``append`` stops)."""
        self.stream.close()
        with open(self.path, encoding="utf-8", newline="\n") as handle:
            for line in handle:
                yield line.rstrip("\n")

    def discard(self) -> None:
        self.abandoned = True
        _close_quietly(self.stream)
        self.path.unlink(missing_ok=True)


def read_partial(target: Path) -> list:
    """The complete entries of ``target``'s partial JSON or CSV file (a torn last line and
    anything that is not JSON are left out)."""
    try:
        text = partial_path(target).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"cannot read {partial_path(target)}: {exc.strerror}") from None
    entries = []
    for line in text.split("\n")[:-1]:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _json_array(handle: TextIO, texts: Iterable[str]) -> None:
    count = 0
    handle.write("[")
    for text in texts:
        handle.write(("," if count else "") + "\n  " + text)
        count += 1
    handle.write("\n]\n" if count else "]\n")


def write_json(target: Path, records: Iterable[dict]) -> None:
    """``records`` as furrytag's JSON array, replacing ``target`` whole."""
    texts = (json.dumps(record, ensure_ascii=False) for record in records)
    replace_file(target, lambda handle: _json_array(handle, texts))


class JsonSink(TagSink):
    """A JSON array. To a file: results collect in its partial file, and the array (the
    ``previous`` records of a resumed run first) replaces the file when the run ends. To a
    stream or a device: written as they come."""

    def __init__(
        self, target: Path | None, stream: TextIO | None = None, previous: Sequence[dict] = ()
    ):
        self.target = target
        self.previous = previous
        self.new: set[str] = set()
        self.journal = None
        if target is not None and not is_special(target):
            self.journal = _Journal(target)
            return
        self.owned = target is not None
        self.stream = _open_text(target, "w") if target is not None else stream
        self.count = 0
        self.stream.write("[")
        for record in previous:
            self._emit(record)

    def _emit(self, record: dict) -> None:
        self.stream.write(
            ("," if self.count else "") + "\n  " + json.dumps(record, ensure_ascii=False)
        )
        self.count += 1

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        records = [result.record() for result in results]
        if self.journal is not None:
            self.journal.append(records)
            self.new.update(record["path"] for record in records)
            return []
        for record in records:
            self._emit(record)
        self.stream.flush()
        return []

    def close(self) -> None:
        if self.journal is None:
            self.stream.write("\n]\n" if self.count else "]\n")
            self.stream.close() if self.owned else self.stream.flush()
            return
        if self.journal.abandoned:
            return
        try:
            kept = (
                json.dumps(record, ensure_ascii=False)
                for record in self.previous
                if record["path"] not in self.new
            )
            replace_file(
                self.target,
                lambda handle: _json_array(handle, itertools.chain(kept, self.journal.texts())),
            )
        finally:
            self.journal.discard()


def csv_header(heads: Sequence[str], long: bool) -> list[str]:
    """The first row of furrytag's CSV output for these heads, wide or ``long``."""
    return ["path", "head", "tag", "score"] if long else ["path", *heads, "rating", "rating_score"]


def write_csv(target: Path, header: Sequence[str], groups: Iterable[Sequence[Sequence]]) -> None:
    """A CSV file of ``header`` and each group's rows (the rows of one image), replacing
    ``target`` whole."""

    def write(handle: TextIO) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for rows in groups:
            writer.writerows(rows)

    replace_file(target, write)


class CsvSink(TagSink):
    """CSV: a row per image and a column per head, or ``long``: a row per (image, tag).

    To a file it works like JSON: results collect in the partial file (a list of rows per
    image and line) and the whole CSV replaces the file at the end, ``previous`` groups of
    rows (of a resumed run) first.
    """

    def __init__(
        self,
        target: Path | None,
        heads: Sequence[str],
        long: bool,
        stream: TextIO | None = None,
        previous: Sequence[Sequence[Sequence[str]]] = (),
    ):
        self.target = target
        self.heads = list(heads)
        self.long = long
        self.header = csv_header(self.heads, long)
        self.previous = previous
        self.new: set[str] = set()
        self.journal = None
        if target is not None and not is_special(target):
            self.journal = _Journal(target)
            return
        self.owned = target is not None
        self.stream = _open_text(target, "w") if target is not None else stream
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.writer.writerow(self.header)
        for rows in previous:
            self.writer.writerows(rows)

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        groups = [self._rows(result) for result in results]
        if self.journal is not None:
            self.journal.append(groups)
            self.new.update(display_path(result.path) for result in results)
            return []
        for rows in groups:
            self.writer.writerows(rows)
        self.stream.flush()
        return []

    def _rows(self, result: Result) -> list[list[str]]:
        path, t = display_path(result.path), result.tagging
        if self.long:
            rows = [[path, head, tag, f"{score:.4f}"] for head, tag, score in t.flat()]
            return [*rows, [path, "rating", t.rating, f"{t.rating_score:.4f}"]]
        columns = [" ".join(tag for tag, _ in t.tags[h]) for h in self.heads]
        return [[path, *columns, t.rating, f"{t.rating_score:.4f}"]]

    def close(self) -> None:
        if self.journal is None:
            self.stream.close() if self.owned else self.stream.flush()
            return
        if self.journal.abandoned:
            return
        try:
            kept = (rows for rows in self.previous if rows[0][0] not in self.new)
            written = (json.loads(text) for text in self.journal.texts())
            write_csv(self.target, self.header, itertools.chain(kept, written))
        finally:
            self.journal.discard()


class CaptionSink(TagSink):
    """A caption file per image (``.txt``, or the style's extension), beside it or under
    ``output_dir`` mirroring ``root``.

    When two inputs share a stem in one folder (``a.png``, ``a.jpg``), both captions keep
    the image's extension (``a.png.txt``, ``a.jpg.txt``) so neither overwrites the other.
    A caption that cannot be written is that image's failure; the others are still written.
    The temporary files of captions a killed run was writing are removed from each folder
    it writes in.
    """

    def __init__(
        self,
        style: CaptionStyle,
        paths: Sequence[Path],
        output_dir: Path | None = None,
        root: Path | None = None,
    ):
        self.style = style
        self.output_dir = output_dir
        self.root = root
        stems: dict[tuple[str, str], int] = {}
        for path in paths:
            key = (str(path.parent), path.stem)
            stems[key] = stems.get(key, 0) + 1
        self.clashing = {k for k, n in stems.items() if n > 1}
        self.folders: set[Path] = set()  # made already
        self.started = time.time()

    def caption_path(self, image: Path) -> Path:
        name = image.name if (str(image.parent), image.stem) in self.clashing else image.stem
        name += self.style.extension
        if self.output_dir is None:
            return image.parent / name
        folder = self.output_dir
        if self.root is not None:
            try:
                folder = folder / image.parent.resolve().relative_to(self.root.resolve())
            except ValueError:
                pass
        return folder / name

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        failed = []
        for result in results:
            target = self.caption_path(result.path)
            try:
                if target.parent not in self.folders:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    remove_stale(target.parent, self.style.extension, self.started)
                    self.folders.add(target.parent)
                caption = self.style.format(result.tagging.tags, result.tagging.rating)
                # One small file per image: not worth waiting for the disk each time.
                write_text(target, caption + "\n", sync=False)
            except OSError as exc:
                failed.append((result.path, f"cannot write caption {target}: {exc.strerror}"))
        return failed


def embedding_index(target: Path) -> Path:
    """The paths file whose lines name the rows of embeddings file ``target``."""
    return target.with_suffix(".paths.txt")


def read_embeddings(target: Path) -> tuple[np.ndarray | None, list[str]]:
    """The rows and paths of an earlier embeddings file, and of the rows a stopped run left
    in its partial file (those win for a path both hold); none when neither exists."""
    rows, paths = _read_saved_embeddings(target)
    partial = _read_partial_embeddings(target)
    if not partial:
        return rows, paths
    width = len(partial[0][1])
    if rows is not None and len(rows) and rows.shape[1] != width:
        raise OutputError(
            f"{target} holds {rows.shape[1]}-wide embeddings and {partial_path(target)} "
            f"{width}-wide ones; use --overwrite to start them afresh"
        )
    merged = dict(zip(paths, rows)) if rows is not None else {}
    merged.update((path, row) for path, row in partial if len(row) == width)
    return np.stack(list(merged.values())).astype(np.float32), list(merged)


def _read_saved_embeddings(target: Path) -> tuple[np.ndarray | None, list[str]]:
    if not target.exists():
        return None, []
    try:
        rows = np.load(target, allow_pickle=False)
        paths = embedding_index(target).read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, ValueError, EOFError) as exc:
        raise OutputError(
            f"cannot read the earlier embeddings {target} to continue them: {exc}; "
            "use --overwrite to start them afresh"
        ) from None
    if rows.ndim != 2 or len(rows) != len(paths):
        raise OutputError(
            f"{target} and {embedding_index(target)} disagree ({len(rows)} rows, "
            f"{len(paths)} paths); use --overwrite to start them afresh"
        )
    return rows, paths


_ROW_HEAD = struct.Struct("<II")  # a partial embeddings entry: path bytes, floats, then both


def _read_partial_embeddings(target: Path) -> list[tuple[str, np.ndarray]]:
    try:
        data = partial_path(target).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"cannot read {partial_path(target)}: {exc.strerror}") from None
    entries, at = [], 0
    while at + _ROW_HEAD.size <= len(data):
        size, width = _ROW_HEAD.unpack_from(data, at)
        start = at + _ROW_HEAD.size + size
        end = start + 4 * width
        if end > len(data):
            break  # the torn end of a killed run
        path = data[at + _ROW_HEAD.size : start].decode("utf-8", "replace")
        entries.append((path, np.frombuffer(data, np.float32, width, start)))
        at = end
    return entries


def save_embeddings(target: Path, rows: np.ndarray, paths: Sequence[str]) -> None:
    """Replace ``target`` (.npy) and its paths file with ``rows`` and ``paths``."""
    replace_file(target, lambda handle: np.save(handle, rows), binary=True)
    replace_file(embedding_index(target), lambda h: h.write("".join(f"{p}\n" for p in paths)))


class EmbeddingSink(TagSink):
    """Embeddings as a float32 ``.npy`` (rows aligned with ``<name>.paths.txt``).

    Rows collect in the partial file (path and vector per entry, flushed per batch); at the
    end ``previous`` (rows and paths of an earlier run) and the new rows replace both files.
    """

    def __init__(
        self, target: Path, previous: tuple[np.ndarray | None, Sequence[str]] = (None, ())
    ):
        self.target = target
        self.partial = partial_path(target)
        try:
            self.raw = open(self.partial, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write in {target.parent}: {exc.strerror}") from None
        self.previous = previous
        rows = previous[0]
        self.width = rows.shape[1] if rows is not None and len(rows) else 0
        self.new: set[str] = set()
        self.abandoned = False

    def write(self, results: Sequence[Result]) -> list[tuple[Path, str]]:
        for result in results:
            vector = np.asarray(result.tagging.embedding, dtype=np.float32).reshape(-1)
            if self.width and len(vector) != self.width:
                raise OutputError(
                    f"{self.target} holds {self.width}-wide embeddings of another model; "
                    f"this one's are {len(vector)} wide: write them to another file"
                )
            self.width = len(vector)
            path = display_path(result.path)
            name = path.encode("utf-8")
            try:
                self.raw.write(_ROW_HEAD.pack(len(name), len(vector)) + name + vector.tobytes())
            except OSError as exc:
                self._discard()
                raise _write_error(self.target, exc, "nothing was replaced") from None
            self.new.add(path)
        try:
            self.raw.flush()
        except OSError as exc:
            self._discard()
            raise _write_error(self.target, exc, "nothing was replaced") from None
        return []

    def _discard(self) -> None:
        self.abandoned = True
        _close_quietly(self.raw)
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        if self.abandoned:
            return
        try:
            self.raw.close()
            rows, paths = self.previous
            kept = [i for i, path in enumerate(paths) if path not in self.new]
            new = _read_partial_embeddings(self.target)
            vectors = [rows[i] for i in kept] + [row for _, row in new]
            names = [paths[i] for i in kept] + [path for path, _ in new]
            shape = (len(vectors), self.width)
            stacked = np.stack(vectors) if vectors else np.zeros(shape, np.float32)
            save_embeddings(self.target, stacked.astype(np.float32), names)
        except OSError as exc:
            raise _write_error(self.target, exc, "nothing was replaced") from None
        finally:
            self._discard()


def close_all(sinks: Sequence[TagSink]) -> None:
    """Close every sink, even when one fails; then raise the first failure."""
    errors = []
    for sink in sinks:
        try:
            sink.close()
        except (OSError, OutputError) as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def truncate_torn_line(path: Path) -> None:
    """Cut a JSONL file after its last complete line (a killed writer may leave half a line)."""
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                handle.truncate(end)
    except FileNotFoundError:
        return


def _size(stream: TextIO) -> int:
    try:
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0  # not a real file (a test's StringIO); never cut back


def _close_quietly(stream: IO) -> None:
    try:
        stream.close()  # flushing again fails the same way; the file is closed regardless
    except OSError:
        pass


def _write_error(path: Path, exc: OSError, consequence: str) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; {consequence}")


def _open_text(path: Path, mode: str) -> TextIO:
    try:
        return open(path, mode, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
