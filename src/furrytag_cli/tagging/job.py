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

from furrytag_cli.captions.style import CaptionStyle
from furrytag_cli.core.errors import OutputError
from furrytag_cli.core.interrupt import StopFlag
from furrytag_cli.tagging.discovery import display_path
from furrytag_cli.tagging.resume import done_keys, file_key, read_records
from furrytag_cli.tagging.sinks import (
    FORMATS,
    CaptionSink,
    CsvSink,
    EmbeddingSink,
    JsonlSink,
    JsonSink,
    Result,
    TagSink,
    close_all,
    read_embeddings,
)
from furrytag_cli.tagging.tagger import Item, Tagger


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


def format_for(output: Path | None) -> str:
    """The format an output file's name asks for (``tags.csv`` → csv); jsonl otherwise."""
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    return suffix if suffix in ("json", "csv") else "jsonl"


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
    if spec.fmt == "txt" and spec.output is not None:
        raise OutputError(
            "-f txt writes a caption file beside each image, not one -o file; "
            "drop -o, or give --output-dir FOLDER to write the captions there"
        )
    if spec.fmt != "txt" and spec.output_dir is not None:
        raise OutputError(
            f"--output-dir is where -f txt writes captions; for {spec.fmt} use -o FILE"
        )
    if spec.fmt != "txt" and (spec.caption != CaptionStyle() or spec.skip_existing):
        raise OutputError(
            "--prefix, --suffix, --order, --escape-parens, --no-underscores, --replace, "
            "--first, --rating-tag, --separator, --caption-ext, --implied and --skip-existing "
            f"shape caption files (-f txt), not {spec.fmt} output"
        )
    if spec.fmt != "csv" and spec.long:
        raise OutputError(f"--long is a CSV layout (-f csv); {spec.fmt} output has no long form")
    targets = [p for p in (spec.output, spec.embeddings, spec.failures) if p is not None]
    for target in targets:
        if target.is_dir():
            raise OutputError(f"{target} is a folder; give a file name (one inside it will do)")
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
    for target in (spec.output, spec.embeddings):
        if target is not None and target.exists() and not (spec.resume or spec.overwrite):
            raise OutputError(
                f"{target} already exists; use --resume to continue that run or "
                "--overwrite to replace it"
            )


def open_output(
    spec: OutputSpec, heads: Sequence[str], stdout: TextIO, previous: Sequence[dict] = ()
) -> TagSink:
    """The JSONL, JSON or CSV sink of ``spec`` (``previous`` records are kept by a resumed JSON)."""
    stream = stdout if spec.output is None else None
    if spec.fmt == "jsonl":
        if stream is not None:
            return JsonlSink(stream, owned=False)
        return JsonlSink.to_path(spec.output, append=spec.resume)
    if spec.fmt == "json":
        return JsonSink(spec.output, stream, previous=previous)
    return CsvSink(spec.output, heads, spec.long, stream)


class TagJob:
    """Tags ``files`` with ``tagger`` into the outputs of ``spec``."""

    def __init__(
        self,
        tagger: Tagger,
        files: Sequence[Path],
        spec: OutputSpec,
        *,
        problems: Sequence[tuple[str, str]] = (),
        root: Path | None = None,
        stdout: TextIO | None = None,
    ):
        check_output(spec)
        self.tagger = tagger
        self.spec = spec
        self.summary = Summary(total=len(files) + len(problems), failed=list(problems))
        self.root = root
        self.stdout = stdout or sys.stdout
        self.previous: list[dict] = []
        self.recorded: set[Path] = set()  # pending only for their embeddings
        self.embedded = (
            read_embeddings(spec.embeddings) if spec.resume and spec.embeddings else (None, [])
        )
        self.files = self._pending(list(files))
        self.summary.skipped = len(files) - len(self.files)

    def _pending(self, files: list[Path]) -> list[Path]:
        spec = self.spec
        if spec.fmt == "txt":
            return self._pending_captions(files)
        if not spec.resume:
            return files
        self.previous = read_records(spec.output, spec.fmt)
        model = self.tagger.model_id
        others = sorted({r["model"] for r in self.previous} - {model})
        if others:
            raise OutputError(
                f"{spec.output} holds tags from another model ({others[0]}); --resume continues "
                f"a run of the same model, and this is {model}: use -o to write to another file"
            )
        done = done_keys(self.previous)
        pending = self._with_missing_embeddings(
            files, {f for f in files if file_key(f, model) in done}
        )
        self._trim_embedded(pending, known={record["path"] for record in self.previous})
        return pending

    def _with_missing_embeddings(self, files: list[Path], done: set[Path]) -> list[Path]:
        """The files not ``done``, and the done ones that lack an embedding (a killed run
        wrote their tags but not its embeddings); those are run again for it alone."""
        embedded = set(self.embedded[1])
        pending = []
        for file in files:
            if file not in done:
                pending.append(file)
            elif self.spec.embeddings is not None and display_path(file) not in embedded:
                pending.append(file)
                self.recorded.add(file)
        return pending

    def _trim_embedded(self, pending: list[Path], known: set[str] | None) -> None:
        """Keep the earlier embeddings of files not run again (and, given ``known``, of
        files the output holds), so that no path has two rows or a stale one."""
        rows, paths = self.embedded
        if rows is None:
            return
        again = {display_path(f) for f in pending}
        keep = [i for i, p in enumerate(paths) if p not in again and (known is None or p in known)]
        self.embedded = (rows[keep], [paths[i] for i in keep])

    def _pending_captions(self, files: list[Path]) -> list[Path]:
        spec = self.spec
        sink = self._caption_sink(files)
        captioned = [f for f in files if sink.caption_path(f).exists()]
        if spec.skip_existing or spec.resume:
            pending = self._with_missing_embeddings(files, set(captioned))
            self._trim_embedded(pending, known=None)
            return pending
        if captioned and not spec.overwrite:
            raise OutputError(
                f"{len(captioned)} image(s) already have a caption file (e.g. "
                f"{sink.caption_path(captioned[0])}); use --skip-existing to keep them and "
                "caption the rest, or --overwrite to replace them"
            )
        return files

    def _caption_sink(self, files: Sequence[Path]) -> CaptionSink:
        return CaptionSink(
            self.spec.caption, files, output_dir=self.spec.output_dir, root=self.root
        )

    def _sinks(self) -> tuple[TagSink, EmbeddingSink | None]:
        """The main output and the embeddings output (when asked for)."""
        spec = self.spec
        if spec.fmt == "txt":
            main = self._caption_sink(self.files)
        else:
            main = open_output(spec, self.tagger.predictor.heads, self.stdout, self.previous)
        if spec.embeddings is None:
            return main, None
        return main, EmbeddingSink(spec.embeddings, previous=self.embedded)

    def run(
        self,
        on_batch: Callable[[list[Item]], None] = lambda items: None,
        stop: StopFlag | None = None,
    ) -> Summary:
        """Tag everything pending; return the summary (also when stopped early)."""
        summary = self.summary
        start = time.perf_counter()
        main, embeddings = self._sinks()
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
                    # Embeddings first: rows without a record are dropped by a resume.
                    if embeddings is not None:
                        embeddings.write(results)
                    main.write([r for r in results if r.path not in self.recorded])
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
                close_all([main] if embeddings is None else [main, embeddings])
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
