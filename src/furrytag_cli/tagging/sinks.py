"""Where tagging results go: JSON, JSONL, CSV, caption .txt files, embeddings.

Nothing is lost when a run stops early: JSONL and captions are appended/written and
flushed per batch; JSON and CSV stream into a temporary file beside the target that
``close()`` renames into place (also after Ctrl-C, with what is done).
"""

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from furrytag_cli.captions.style import CaptionStyle
from furrytag_cli.core.atomic import AtomicFile, write_text
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

    def write(self, results: Sequence[Result]) -> None:
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

    def write(self, results: Sequence[Result]) -> None:
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

    def close(self) -> None:
        if self.owned:
            self.stream.close()
        else:
            self.stream.flush()


class _StagedFile:
    """A temp file beside ``target``, renamed over it by ``commit``.

    ``guard`` wraps writes: when one fails the temp file is removed (``target`` keeps its
    earlier content) and the error becomes an OutputError; ``commit`` then does nothing.
    """

    def __init__(self, target: Path | None, stream: TextIO | None = None):
        self.target = target
        self.abandoned = False
        if target is None:
            self.stream, self.staged = stream, None
            return
        try:
            self.staged = AtomicFile(target, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise OutputError(f"cannot write in {target.parent}: {exc.strerror}") from None
        self.stream = self.staged.file

    @contextmanager
    def guard(self):
        try:
            yield
        except OSError as exc:
            if self.staged is None:
                raise
            self.abandoned = True
            self.staged.discard()
            raise _write_error(self.target, exc, "nothing was replaced") from None

    def commit(self) -> None:
        if self.abandoned:
            return
        with self.guard():
            if self.staged is None:
                self.stream.flush()
                return
            self.staged.commit()


class JsonSink(TagSink):
    """A JSON array, streamed to a temp file and renamed into place at the end."""

    def __init__(
        self, target: Path | None, stream: TextIO | None = None, previous: Sequence[dict] = ()
    ):
        self.file = _StagedFile(target, stream)
        self.count = 0
        self.file.stream.write("[")
        for record in previous:
            self._emit(record)

    def _emit(self, record: dict) -> None:
        self.file.stream.write(
            ("," if self.count else "") + "\n  " + json.dumps(record, ensure_ascii=False)
        )
        self.count += 1

    def write(self, results: Sequence[Result]) -> None:
        with self.file.guard():
            for result in results:
                self._emit(result.record())
            self.file.stream.flush()

    def close(self) -> None:
        if not self.file.abandoned:
            with self.file.guard():
                self.file.stream.write("\n]\n" if self.count else "]\n")
        self.file.commit()


class CsvSink(TagSink):
    """CSV: a row per image and a column per head, or ``long``: a row per (image, tag)."""

    def __init__(
        self, target: Path | None, heads: Sequence[str], long: bool, stream: TextIO | None = None
    ):
        self.file = _StagedFile(target, stream)
        self.writer = csv.writer(self.file.stream, lineterminator="\n")
        self.heads = list(heads)
        self.long = long
        header = (
            ["path", "head", "tag", "score"]
            if long
            else ["path", *self.heads, "rating", "rating_score"]
        )
        self.writer.writerow(header)

    def write(self, results: Sequence[Result]) -> None:
        with self.file.guard():
            self._rows(results)
            self.file.stream.flush()

    def _rows(self, results: Sequence[Result]) -> None:
        for result in results:
            path, t = display_path(result.path), result.tagging
            if self.long:
                for head, tag, score in t.flat():
                    self.writer.writerow([path, head, tag, f"{score:.4f}"])
                self.writer.writerow([path, "rating", t.rating, f"{t.rating_score:.4f}"])
            else:
                columns = [" ".join(tag for tag, _ in t.tags[h]) for h in self.heads]
                self.writer.writerow([path, *columns, t.rating, f"{t.rating_score:.4f}"])

    def close(self) -> None:
        self.file.commit()


class CaptionSink(TagSink):
    """A caption file per image (``.txt``, or the style's extension), beside it or under
    ``output_dir`` mirroring ``root``.

    When two inputs share a stem in one folder (``a.png``, ``a.jpg``), both captions keep
    the image's extension (``a.png.txt``, ``a.jpg.txt``) so neither overwrites the other.
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

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            target = self.caption_path(result.path)
            try:
                if target.parent not in self.folders:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.folders.add(target.parent)
                caption = self.style.format(result.tagging.tags, result.tagging.rating)
                # One small file per image: not worth waiting for the disk each time.
                write_text(target, caption + "\n", sync=False)
            except OSError as exc:
                raise OutputError(f"cannot write caption {target}: {exc.strerror}") from None


def embedding_index(target: Path) -> Path:
    """The paths file whose lines name the rows of embeddings file ``target``."""
    return target.with_suffix(".paths.txt")


def read_embeddings(target: Path) -> tuple[np.ndarray | None, list[str]]:
    """The rows and paths of an earlier embeddings file (none when it does not exist)."""
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


class EmbeddingSink(TagSink):
    """Embeddings as a float32 ``.npy`` (rows aligned with ``<name>.paths.txt``).

    ``previous`` (rows and paths of an earlier run) are kept ahead of the new rows.
    """

    def __init__(
        self, target: Path, previous: tuple[np.ndarray | None, Sequence[str]] = (None, ())
    ):
        self.target = target
        self.index = _StagedFile(embedding_index(target))
        try:
            fd, raw = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rows", dir=target.parent)
        except OSError as exc:
            raise OutputError(f"cannot write in {target.parent}: {exc.strerror}") from None
        self.raw_path = Path(raw)
        self.raw = os.fdopen(fd, "wb")
        self.count, self.width = 0, 0
        rows, paths = previous
        if rows is not None and len(rows):
            self.raw.write(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
            self.index.stream.write("".join(f"{path}\n" for path in paths))
            self.count, self.width = rows.shape

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            vector = np.asarray(result.tagging.embedding, dtype=np.float32)
            if self.count and vector.shape[-1] != self.width:
                raise OutputError(
                    f"{self.target} holds {self.width}-wide embeddings of another model; "
                    f"this one's are {vector.shape[-1]} wide: write them to another file"
                )
            self.width = vector.shape[-1]
            self.raw.write(vector.tobytes())
            self.index.stream.write(display_path(result.path) + "\n")
            self.count += 1
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()
        rows = np.fromfile(self.raw_path, dtype=np.float32).reshape(self.count, self.width)
        with AtomicFile(self.target) as handle:
            np.save(handle, rows)
        self.raw_path.unlink()
        self.index.commit()


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


def _close_quietly(stream: TextIO) -> None:
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
