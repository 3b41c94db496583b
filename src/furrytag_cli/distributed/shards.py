"""The output folder of a Ray run: shards of results and of failures, each written whole.

    OUT/part-<run>-<n>.parquet            one row per tagged image (or .jsonl)
    OUT/_failures/part-<run>-<n>.parquet  one row per image that could not be tagged

A results row holds what ``furrytag tag --all-scores`` writes per image (path, kept
tags per head with scores, rating, rating score, every tag's score, file size and mtime,
model id). A shard is written to a hidden temporary file and renamed, so a shard that
exists is complete; pyarrow and pandas skip names starting with ``.`` and ``_``, so
``pandas.read_parquet(OUT)`` reads the results alone. Every image has exactly one row, in
a results or a failures shard: a resumed run skips the images of every complete shard.

The folder may be in an object store (``s3://bucket/tags``, any URI pyarrow writes;
a ``file://`` URI is a local folder): each shard is then uploaded under a hidden name
and renamed once complete, as on a disk, and no lock can keep a second run out, so give
each run its own prefix.
"""

import fnmatch
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from furrytag_cli.core.atomic import AtomicFile
from furrytag_cli.core.errors import DatasetError, OutputError
from furrytag_cli.distributed.sources import is_uri
from furrytag_cli.tagging.resume import Key, record_key

Place = Path | str  # a local path, or an object-store URI

FORMATS = ("parquet", "jsonl")
FAILURES = "_failures"
_PREFIX = "part-"
_LOCK = ".furrytag-ray.lock"


def result_schema(tags: dict[str, Sequence[str]]):
    """The Parquet schema of results for heads ``tags`` (head → its tag names)."""
    import pyarrow as pa

    scores = pa.struct(
        [(h, pa.struct([(t, pa.float64()) for t in names])) for h, names in tags.items()]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("tags", pa.struct([(h, pa.map_(pa.string(), pa.float64())) for h in tags])),
            ("rating", pa.string()),
            ("rating_score", pa.float64()),
            ("scores", scores),
            ("file", pa.struct([("size", pa.int64()), ("mtime", pa.float64())])),
            ("model", pa.string()),
        ]
    )


def failure_schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("reason", pa.string())])


class ShardFolder:
    """Writes and reads the shards of one output folder in format ``fmt``."""

    def __init__(self, root: Place, fmt: str = "parquet"):
        if fmt not in FORMATS:
            raise OutputError(
                f"shards on Ray are {' or '.join(FORMATS)}; received the format {fmt!r}"
            )
        self.root = _place(root)
        self.fmt = fmt
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.count = 0
        self.held = 0
        self._results: list = []
        self._failures: list[dict] = []

    @property
    def failures(self) -> Place:
        return _join(self.root, FAILURES)

    @property
    def remote(self) -> bool:
        return isinstance(self.root, str)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a run writes here: two runs into one folder would clash."""
        from filelock import FileLock, Timeout

        if self.remote:
            # An object store has no lock a second run would see.
            yield
            return
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(
                f"{self.root} is a file; on Ray the output (-o) is a folder of shards"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the output folder {self.root}: {exc.strerror}"
            ) from None
        lock = FileLock(self.root / _LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputError(
                f"another run is writing to {self.root}; wait for it, or write elsewhere"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def shards(self, fmt: str | None = None) -> list[Place]:
        """The complete results shards (of format ``fmt``; default: this folder's)."""
        return _listed(self.root, f"{_PREFIX}*.{fmt or self.fmt}")

    def failure_shards(self, fmt: str | None = None) -> list[Place]:
        return _listed(self.failures, f"{_PREFIX}*.{fmt or self.fmt}")

    def prepare(self, *, resume: bool, overwrite: bool) -> None:
        """Make the (locked) folder ready: refuse to mix runs unless resuming or overwriting."""
        if resume and overwrite:
            raise OutputError("--resume and --overwrite contradict each other; pick one")
        other = "jsonl" if self.fmt == "parquet" else "parquet"
        if self.shards(other) or self.failure_shards(other):
            how = "-f jsonl" if other == "jsonl" else "without -f jsonl"
            raise OutputError(
                f"{self.root} holds {other} shards; resume them in that format ({how}), or "
                "write to another folder"
            )
        earlier = self.shards() + self.failure_shards()
        if earlier and overwrite:
            for shard in earlier:
                _remove(shard)
        elif earlier and not resume:
            raise OutputError(
                f"{self.root} already holds {len(earlier)} shard(s); use --resume to finish "
                "that run or --overwrite to replace it"
            )
        # Temporary files of a run that was killed never became shards.
        for folder in (self.root, self.failures):
            for stale in _listed(folder, f".{_PREFIX}*"):
                _remove(stale)

    def done(self, model: str) -> tuple[set[Key], set[str]]:
        """The resume keys of the images in results shards, and the paths of failures.

        Raises OutputError when the results come from another model.
        """
        keys: set[Key] = set()
        for shard, record in self._records(self.shards(), columns=["path", "file", "model"]):
            key = record_key(record)
            if key is None:
                raise OutputError(_foreign(shard, "its rows are not furrytag's records"))
            if key[3] != model:
                raise OutputError(
                    f"{self.root} holds tags from another model ({key[3]}); --resume continues "
                    f"a run of the same model, and this is {model}: use -o to write elsewhere"
                )
            keys.add(key)
        failed = {r["path"] for _, r in self._records(self.failure_shards(), columns=["path"])}
        return keys, failed

    def add(self, records: Sequence[str], failures: Sequence[dict], schema) -> None:
        """Hold results (JSON records, as ``tag`` writes them) and failures for the next
        shard; Parquet results are held as Arrow tables (a few kB per image)."""
        if records and self.fmt == "parquet":
            import pyarrow as pa

            rows = [json.loads(record) for record in records]
            self._results.append(pa.Table.from_pylist(rows, schema=schema))
        elif records:
            self._results.append(list(records))
        self._failures.extend(failures)
        self.held += len(records) + len(failures)

    def flush(self) -> tuple[int, int, list[Path]]:
        """Write the results and the failures held (each shard only when not empty);
        return how many of each, and the shards written."""
        name = f"{_PREFIX}{self.run}-{self.count:05d}.{self.fmt}"
        self.count += 1
        written = []
        results = sum(len(chunk) for chunk in self._results)
        failures = len(self._failures)
        if self.fmt == "parquet":
            import pyarrow as pa

            failed = pa.Table.from_pylist(self._failures, schema=failure_schema())
            tagged = pa.concat_tables(self._results) if self._results else None
        else:
            failed = [json.dumps(row, ensure_ascii=False) for row in self._failures]
            tagged = [line for chunk in self._results for line in chunk]
        if failures:
            written.append(self._write(_join(self.failures, name), failed))
        if results:
            written.append(self._write(_join(self.root, name), tagged))
        self._results, self._failures, self.held = [], [], 0
        return results, failures, written

    def _write(self, target: Place, content) -> Place:
        """Write an Arrow table (Parquet) or JSON lines to ``target``, whole or not at all."""
        if isinstance(target, str):
            return self._upload(target, content)
        try:
            target.parent.mkdir(exist_ok=True)
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                with AtomicFile(target) as stream:
                    pq.write_table(content, stream)
            else:
                with AtomicFile(target, "w", encoding="utf-8") as stream:
                    stream.write("".join(line + "\n" for line in content))
        except OSError as exc:
            raise OutputError(
                f"cannot write {target}: {exc.strerror or exc}; the shards before it are "
                "intact: make room and continue with --resume"
            ) from None
        return target

    def _upload(self, target: str, content) -> str:
        """Upload a shard whole: built in memory, sent under a hidden name and renamed
        (an upload cut short is completed by the store with what it got so far)."""
        import pyarrow as pa

        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            buffer = pa.BufferOutputStream()
            pq.write_table(content, buffer)
            data = buffer.getvalue()
        else:
            data = "".join(line + "\n" for line in content).encode("utf-8")
        filesystem, path = _filesystem(target)
        folder, _, name = path.rpartition("/")
        temporary = f"{folder}/.{name}.{secrets.token_hex(4)}.tmp"
        try:
            with filesystem.open_output_stream(temporary) as stream:
                stream.write(data)
            filesystem.move(temporary, path)
        except OSError as exc:
            raise OutputError(
                f"cannot write {target}: {exc}; the shards before it are intact: continue "
                "with --resume once it can be written"
            ) from None
        return target

    def _records(self, shards: Sequence[Place], columns: list[str]) -> Iterator[tuple[Place, dict]]:
        """(shard, record) for each row of ``shards``, with ``columns`` only."""
        for shard in shards:
            try:
                rows = list(read_shard(shard, columns=columns))
            except KeyError as exc:
                raise OutputError(_foreign(shard, f"it has no {exc} field")) from None
            except ValueError as exc:  # not JSON lines, or Parquet without those columns
                raise OutputError(_foreign(shard, str(exc).splitlines()[0])) from None
            except OSError as exc:
                raise OutputError(f"cannot read the shard {shard}: {exc}") from None
            for row in rows:
                yield shard, row


def _foreign(shard: Place, why: str) -> str:
    return (
        f"{shard} is not a shard of furrytag tag --ray ({why}); write to a folder of its "
        "own with -o"
    )


def _place(root: Place) -> Place:
    """A local folder as a Path (also from a ``file://`` URI), any other URI as text."""
    text = str(root)
    if text.startswith("file://"):
        return Path(unquote(urlsplit(text).path))
    return text.rstrip("/") if is_uri(text) else Path(root)


def _join(root: Place, name: str) -> Place:
    return f"{root}/{name}" if isinstance(root, str) else root / name


def _filesystem(uri: str):
    """The pyarrow file system of ``uri`` and the path on it."""
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"cannot reach {uri}: {exc}; give a URI pyarrow reads and writes "
            "(s3://bucket/folder, gs://bucket/folder) with credentials in the environment, "
            "or a local folder"
        ) from None


def _listed(folder: Place, pattern: str) -> list[Place]:
    """The files in ``folder`` whose names match ``pattern`` (a glob), in name order."""
    if not isinstance(folder, str):
        return sorted(folder.glob(pattern))
    from pyarrow import fs as pafs

    filesystem, path = _filesystem(folder)
    scheme = folder.partition("://")[0]
    try:
        found = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as exc:
        raise OutputError(
            f"cannot list {folder}: {exc}; check the URI, that the store can be reached, and "
            "its credentials in the environment (AWS_* for s3://, "
            "GOOGLE_APPLICATION_CREDENTIALS for gs://)"
        ) from None
    return sorted(
        f"{scheme}://{info.path}"
        for info in found
        if info.type == pafs.FileType.File and fnmatch.fnmatchcase(info.base_name, pattern)
    )


def _remove(shard: Place) -> None:
    try:
        if isinstance(shard, str):
            filesystem, path = _filesystem(shard)
            filesystem.delete_file(path)
        else:
            shard.unlink()
    except OSError as exc:
        raise OutputError(
            f"cannot remove {shard}: {exc}; remove it yourself, or write elsewhere with -o"
        ) from None


def read_shard(shard: Place, columns: list[str] | None = None) -> Iterator[dict]:
    """The rows of one shard as ``furrytag tag``'s JSONL records (dicts)."""
    remote = isinstance(shard, str)
    if str(shard).endswith(".jsonl"):
        if remote:
            filesystem, path = _filesystem(shard)
            with filesystem.open_input_stream(path) as stream:
                lines = stream.read().decode("utf-8").splitlines()
        else:
            with open(shard, encoding="utf-8") as stream:
                lines = stream.read().splitlines()
        for line in lines:
            record = json.loads(line)
            yield {k: record[k] for k in columns} if columns else record
        return
    import pyarrow.parquet as pq

    if remote:
        filesystem, path = _filesystem(shard)
        table = pq.read_table(path, columns=columns, filesystem=filesystem)
    else:
        table = pq.read_table(shard, columns=columns)
    for row in table.to_pylist():
        if "tags" in row:
            # Maps come back as (key, value) pairs.
            row["tags"] = {h: dict(pairs) for h, pairs in row["tags"].items()}
        yield row


def shard_rows(shards: Sequence[Place]) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row of ``shards``, one shard in memory at a time."""
    for shard in shards:
        try:
            for number, record in enumerate(read_shard(shard), start=1):
                yield f"{shard} (row {number})", record
        except ImportError:
            raise DatasetError(
                f"{shard} is a Parquet shard, which needs pyarrow: pip install "
                "'furrytag[ray]', or tag with --ray -f jsonl"
            ) from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read the shard {shard}: {exc}") from None


def results_shards(folder: Place) -> list[Place]:
    """The results shards of an output folder, of either format (none in another folder)."""
    return [shard for fmt in FORMATS for shard in ShardFolder(folder, fmt).shards()]


def failure_shards(folder: Place) -> list[Place]:
    """The failures shards of an output folder, of either format."""
    return [shard for fmt in FORMATS for shard in ShardFolder(folder, fmt).failure_shards()]


def read_results(folder: Place) -> tuple[list[dict], list[dict]]:
    """Every results record and every failure (path, reason) of an output folder."""
    shards = ShardFolder(folder)
    records = [r for fmt in FORMATS for s in shards.shards(fmt) for r in read_shard(s)]
    failures = [r for fmt in FORMATS for s in shards.failure_shards(fmt) for r in read_shard(s)]
    return records, failures
