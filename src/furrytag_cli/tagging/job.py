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
from furrytag_cli.core.console import printable
from furrytag_cli.core.errors import OutputError
from furrytag_cli.core.interrupt import StopFlag
from furrytag_cli.tagging.discovery import display_path
from furrytag_cli.tagging.outputs import OutputLock, check_targets
from furrytag_cli.tagging.resume import (
    done_keys,
    file_key,
    read_csv,
    read_records,
    recover,
    recover_embeddings,
)
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
    csv_header,
    embedding_index,
    is_special,
    partial_path,
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
    exit_code: int = 0
    pipe_closed: bool = False
    failures_file: Path | None = None
    recovered: list[str] = field(default_factory=list)

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
    if spec.resume and spec.fmt != "txt" and spec.output is None:
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
    targets = [
        p
        for p in (spec.output, spec.embeddings, spec.failures)
        if p is not None and not is_special(p)
    ]
    for target in targets:
        if target.is_dir():
            raise OutputError(f"{target} is a folder; give a file name (one inside it will do)")
    if spec.output_dir is not None:
        if spec.output_dir.exists() and not spec.output_dir.is_dir():
            raise OutputError(f"--output-dir {spec.output_dir} is a file; give a folder")
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
        if target is None or spec.resume or spec.overwrite or is_special(target):
            continue
        if partial_path(target).exists():
            raise OutputError(
                f"{target}: a run writing it was stopped before it ended, and left its results "
                f"in {partial_path(target)}; use --resume to continue that run or --overwrite "
                "to start afresh"
            )
        if target.exists():
            raise OutputError(
                f"{target} already exists; use --resume to continue that run or "
                "--overwrite to replace it"
            )


def open_output(
    spec: OutputSpec, heads: Sequence[str], stdout: TextIO, previous: Sequence = ()
) -> TagSink:
    """The JSONL, JSON or CSV sink of ``spec`` (``previous`` records, or CSV rows per image,
    are kept by a resumed JSON or CSV)."""
    stream = stdout if spec.output is None else None
    if spec.fmt == "jsonl":
        if stream is not None:
            return JsonlSink(stream, owned=False)
        return JsonlSink.to_path(spec.output, append=spec.resume)
    if spec.fmt == "json":
        return JsonSink(spec.output, stream, previous=previous)
    return CsvSink(spec.output, heads, spec.long, stream, previous)


def failures_path(spec: OutputSpec) -> Path | None:
    """Where the failure report goes: --failures, else beside the output or in --output-dir."""
    if spec.failures is not None:
        return spec.failures
    if spec.output is not None and not is_special(spec.output):
        return spec.output.with_name(spec.output.name + ".failures.tsv")
    if spec.output_dir is not None:
        return spec.output_dir / "furrytag-failures.tsv"
    return None


def check_run(spec: OutputSpec, files: Sequence[Path], root: Path | None = None) -> None:
    """Everything checkable before the model loads: the options (``check_output``), and
    that no output is an input or another output, or goes through a link out of
    --output-dir."""
    check_output(spec)
    outputs = []
    if spec.output is not None:
        outputs.append((f"-o {printable(spec.output)}", spec.output))
    if spec.embeddings is not None:
        index = embedding_index(spec.embeddings)
        outputs.append((f"--embeddings {printable(spec.embeddings)}", spec.embeddings))
        outputs.append((f"the paths file of --embeddings, {printable(index)}", index))
    report = failures_path(spec)
    if report is not None:
        outputs.append((f"the failure report {printable(report)}", report))
    captions = []
    if spec.fmt == "txt":
        sink = CaptionSink(spec.caption, files, output_dir=spec.output_dir, root=root)
        captions = [(file, sink.caption_path(file)) for file in files]
    check_targets(outputs, files, captions, spec.output_dir)


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
        check_run(spec, files, root)
        self.tagger = tagger
        self.spec = spec
        self.summary = Summary(total=len(files) + len(problems), failed=list(problems))
        self.root = root
        self.stdout = stdout or sys.stdout
        self.previous: list = []
        self.recorded: set[Path] = set()  # pending only for their embeddings
        self.lock = OutputLock(self._locked_outputs())
        try:
            self._recover()
            self.embedded = (
                read_embeddings(spec.embeddings) if spec.resume and spec.embeddings else (None, [])
            )
            self.files = self._pending(list(files))
        except BaseException:
            self.lock.release()
            raise
        self.summary.skipped = len(files) - len(self.files)

    def _locked_outputs(self) -> list[Path]:
        spec = self.spec
        outputs = [p for p in (spec.output, spec.embeddings) if p and not is_special(p)]
        if spec.output_dir is not None:
            spec.output_dir.mkdir(parents=True, exist_ok=True)
            outputs.append(spec.output_dir / "furrytag")
        return outputs

    def _recover(self) -> None:
        """Fold what a killed run left in partial files into the outputs (when resuming)."""
        spec = self.spec
        if not spec.resume:
            return
        header = csv_header(self.tagger.predictor.heads, spec.long)
        if count := recover(spec.output, spec.fmt, header):
            self.summary.recovered.append(
                f"recovered {count} results of a stopped run from {partial_path(spec.output)}"
            )
        if spec.embeddings is not None and recover_embeddings(spec.embeddings):
            self.summary.recovered.append(
                f"recovered the embeddings of a stopped run from {partial_path(spec.embeddings)}"
            )

    def _pending(self, files: list[Path]) -> list[Path]:
        spec = self.spec
        if spec.fmt == "txt":
            return self._pending_captions(files)
        if not spec.resume:
            return files
        if spec.fmt == "csv":
            header = csv_header(self.tagger.predictor.heads, spec.long)
            self.previous = read_csv(spec.output, header)
            done = {rows[0][0] for rows in self.previous}
            pending = self._with_missing_embeddings(
                files, {f for f in files if display_path(f) in done}
            )
            self._trim_embedded(pending, known=done)
            return pending
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
        try:
            main, embeddings = self._sinks()
        except BaseException:
            self.lock.release()
            raise
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
                    unwritten = main.write([r for r in results if r.path not in self.recorded])
                except BrokenPipeError:
                    summary.pipe_closed = True
                    _silence_stdout()
                    break
                if unwritten:
                    items = _failing(items, dict(unwritten))
                    summary.failed.extend((display_path(p), why) for p, why in unwritten)
                summary.tagged += len(results) - len(unwritten)
                on_batch(items)
                if stop is not None and stop.requested:
                    summary.interrupted = True
                    summary.exit_code = stop.exit_code
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
            try:
                self._write_failures()
            finally:
                self.lock.release()
        return summary

    def _write_failures(self) -> None:
        target = failures_path(self.spec)
        if not self.summary.failed or target is None:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{printable(path)}\t{printable(why)}\n" for path, why in self.summary.failed]
        target.write_text("path\treason\n" + "".join(lines), encoding="utf-8")
        self.summary.failures_file = target


def _failing(items: list[Item], reasons: dict[Path, str]) -> list[Item]:
    """``items`` with those whose output could not be written turned into failures."""
    return [
        Item(item.index, item.path, reason=reasons[item.path]) if item.path in reasons else item
        for item in items
    ]


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
