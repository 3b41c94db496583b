"""A whole ``furrytag tag`` run: inputs → tagger → sinks, with resume, failures and stop.

The CLI renders; this module decides what is tagged, where results go, and makes sure
that whatever happens (a bad file, Ctrl-C, a closed pipe) nothing already done is lost.
"""

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from furrytag_cli.discovery import display_path
from furrytag_cli.errors import OutputError
from furrytag_cli.interrupt import StopFlag
from furrytag_cli.resume import done_keys, file_key, read_records
from furrytag_cli.sinks import (
    FORMATS, CaptionSink, CaptionStyle, CsvSink, EmbeddingSink, JsonlSink, JsonSink, Result,
    SinkGroup, TagSink,
)
from furrytag_cli.tagger import Item, Tagger


@dataclass(frozen=True)
class OutputSpec:
    """Where and how results are written. ``output=None`` means standard output."""

    fmt: str = "jsonl"
    output: Path | None = None
    output_dir: Path | None = None
    caption: CaptionStyle = CaptionStyle()
    long: bool = False
    embeddings: Path | None = None
    failures: Path | None = None
    resume: bool = False
    skip_existing: bool = False
    overwrite: bool = False
    strict: bool = False


@dataclass
class Summary:
    """What a run did."""

    total: int = 0
    tagged: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    pipe_closed: bool = False
    failures_file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def check_output(spec: OutputSpec) -> None:
    """Fail before the long run when the outputs cannot be written or would clobber work."""
    if spec.fmt not in FORMATS:
        raise OutputError(f"--format must be one of {', '.join(FORMATS)}; received {spec.fmt!r}")
    if spec.resume and spec.overwrite:
        raise OutputError("--resume and --overwrite contradict each other; pick one")
    if spec.resume and spec.fmt == "csv":
        raise OutputError("--resume reads back JSONL or JSON output; use --format jsonl (or json)")
    if spec.resume and spec.fmt in ("json", "jsonl") and spec.output is None:
        raise OutputError("--resume needs the earlier output file: give it with -o FILE")
    targets = [p for p in (spec.output, spec.embeddings, spec.failures) if p is not None]
    if spec.output_dir is not None:
        targets.append(spec.output_dir / "x")
    for target in targets:
        folder = target.parent
        if not folder.is_dir():
            if target.parent == spec.output_dir:
                continue
            raise OutputError(f"output folder {folder} does not exist; create it first")
        if not os.access(folder, os.W_OK):
            raise OutputError(f"cannot write in {folder}: permission denied")
    if (spec.output is not None and spec.fmt != "txt" and spec.output.exists()
            and not (spec.resume or spec.overwrite)):
        raise OutputError(
            f"{spec.output} already exists; use --resume to continue that run or "
            "--overwrite to replace it"
        )


class TagJob:
    """Tags ``files`` with ``tagger`` into the outputs of ``spec``."""

    def __init__(self, tagger: Tagger, files: Sequence[Path], spec: OutputSpec, *,
                 problems: Sequence[tuple[str, str]] = (), root: Path | None = None,
                 stdout: TextIO | None = None):
        check_output(spec)
        self.tagger = tagger
        self.spec = spec
        self.summary = Summary(total=len(files) + len(problems), failed=list(problems))
        self.root = root
        self.stdout = stdout or sys.stdout
        self.files, previous = self._pending(list(files))
        self.summary.skipped = len(files) - len(self.files)
        self.previous = previous

    def _pending(self, files: list[Path]) -> tuple[list[Path], list[dict]]:
        spec = self.spec
        if spec.fmt == "txt" and (spec.skip_existing or spec.resume):
            sink = self._caption_sink(files)
            return [f for f in files if not sink.caption_path(f).exists()], []
        if not spec.resume:
            return files, []
        records = read_records(spec.output, spec.fmt)
        done = done_keys(records)
        model = self.tagger.model_id
        return [f for f in files if file_key(f, model) not in done], records

    def _caption_sink(self, files: Sequence[Path]) -> CaptionSink:
        return CaptionSink(self.spec.caption, files, output_dir=self.spec.output_dir, root=self.root)

    def _sink(self) -> TagSink:
        spec = self.spec
        stream = self.stdout if spec.output is None else None
        if spec.fmt == "jsonl":
            main = (JsonlSink(stream, owned=False) if stream else
                    JsonlSink.to_path(spec.output, append=spec.resume))
        elif spec.fmt == "json":
            main = JsonSink(spec.output, stream, previous=self.previous)
        elif spec.fmt == "csv":
            main = CsvSink(spec.output, self.tagger.predictor.heads, spec.long, stream)
        else:
            main = self._caption_sink(self.files)
        sinks = [main]
        if spec.embeddings is not None:
            sinks.append(EmbeddingSink(spec.embeddings))
        return SinkGroup(sinks)

    def run(self, on_batch: Callable[[list[Item]], None] = lambda items: None,
            stop: StopFlag | None = None) -> Summary:
        """Tag everything pending; return the summary (also when stopped early)."""
        summary = self.summary
        start = time.perf_counter()
        sink = self._sink()
        model = self.tagger.model_id
        try:
            for items in self.tagger.tag_batches(self.files):
                results = []
                for item in items:
                    if item.ok:
                        stat = _stat(item.path)
                        results.append(Result(item.path, item.tagging, stat[0], stat[1], model))
                    else:
                        summary.failed.append((display_path(item.path), item.reason))
                try:
                    sink.write(results)
                except BrokenPipeError:
                    summary.pipe_closed = True
                    _silence_stdout()
                    break
                summary.tagged += len(results)
                on_batch(items)
                if stop is not None and stop.requested:
                    summary.interrupted = True
                    break
                if self.spec.strict and summary.failed:
                    break
        finally:
            try:
                sink.close()
            except BrokenPipeError:
                summary.pipe_closed = True
                _silence_stdout()
            summary.seconds = time.perf_counter() - start
            self._write_failures()
        return summary

    def _write_failures(self) -> None:
        target = self.spec.failures
        if target is None and self.spec.output is not None:
            target = self.spec.output.with_name(self.spec.output.name + ".failures.tsv")
        if target is None and self.spec.output_dir is not None:
            target = self.spec.output_dir / "furrytag-failures.tsv"
        if not self.summary.failed or target is None:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{path}\t{reason}\n" for path, reason in self.summary.failed]
        target.write_text("path\treason\n" + "".join(lines), encoding="utf-8")
        self.summary.failures_file = target


def _stat(path: Path) -> tuple[int, float]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0.0)
    return (st.st_size, st.st_mtime)


def _silence_stdout() -> None:
    # The reader went away (`| head`); point stdout at /dev/null so exiting stays quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
