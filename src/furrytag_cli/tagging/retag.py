"""Tags chosen again from saved scores, without the model: the JSONL or JSON that
``furrytag tag --all-scores`` wrote (or the shards of ``tag --ray``, read by the caller)
→ any of tag's outputs, with any selection options.

Each record's scores go through the same ``Predictor`` and the same sinks as in a tagging
run, so the output is what ``tag`` writes with those options, byte for byte. The results
file is read one line at a time: memory does not grow with its length (captions, which
need every image's name first to keep ``a.png`` and ``a.jpg`` apart, hold the paths).
"""

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TextIO

import numpy as np
import orjson

from furrytag_cli.core.errors import OutputError, UsageError
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.tagging.job import OutputSpec, check_output, open_output
from furrytag_cli.tagging.outputs import check_targets
from furrytag_cli.tagging.predict import Predictor, TagOptions
from furrytag_cli.tagging.sinks import CaptionSink, Result, TagSink, close_all

BATCH = 512
_READS = "retag reads the JSONL or JSON that furrytag tag --all-scores writes"

# (where, record) of every result, read afresh at each call.
Records = Callable[[], Iterator[tuple[str, dict]]]


class ResultsError(UsageError):
    """A results file that retag cannot take its scores from."""


@dataclass
class RetagSummary:
    """What a retag run did."""

    written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    pipe_closed: bool = False


def results_model(results: Path, records: Records | None = None) -> str:
    """The ``name@fingerprint`` of the model whose scores ``results`` holds (its first
    record); ``records`` reads them (default: the JSONL or JSON file ``results``)."""
    for where, record in (records or (lambda: read_results(results)))():
        model = record.get("model")
        if not isinstance(model, str):
            raise ResultsError(f'{where} names no "model"; {_READS}')
        return model
    raise ResultsError(f"{results} holds no results; {_READS}")


def read_results(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, record) for each record of a JSONL or JSON results file, streamed.

    A last line cut short (a run killed while writing) is an error, not silently dropped.
    """
    path = Path(path)
    try:
        handle = open(path, "rb", buffering=1 << 20)
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist; {_READS}") from None
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        _check_ending(path, handle)
        first = handle.readline()
        if first.strip() in (b"[", b"[]"):
            yield from _json_records(path, handle, first)
            return
        number = 1
        line = first
        while line:
            if line.strip():
                yield f"{path}:{number}", _parse(line, f"{path}:{number}")
            line = handle.readline()
            number += 1


def _check_ending(path: Path, handle) -> None:
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise ResultsError(f"{path} is empty; {_READS}")
    handle.seek(size - 1)
    if handle.read(1) != b"\n":
        raise ResultsError(
            f"{path} ends in a line cut short (the run writing it was stopped): complete it "
            "with furrytag tag --resume -o FILE, or delete its last line"
        )
    handle.seek(0)


def _json_records(path: Path, handle, first: bytes) -> Iterator[tuple[str, dict]]:
    """The records of a JSON array as ``tag -f json`` lays it out: one record a line."""
    if first.strip() == b"[]":
        return
    for number, line in enumerate(handle, start=2):
        text = line.strip()
        if text == b"]":
            return
        if text:
            where = f"{path} (line {number})"
            yield where, _parse(text[:-1] if text.endswith(b",") else text, where)
    raise ResultsError(f"{path} is a JSON array without its closing ']'; {_READS}")


def _parse(line: bytes, where: str) -> dict:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ResultsError(f"{where} is not valid JSON ({exc}); {_READS}") from None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise ResultsError(f'{where} is not a furrytag result (no "path"); {_READS}')
    return record


class RetagJob:
    """Writes ``spec``'s output from the scores in ``results``, as tagging with ``bundle``
    and ``options`` would have; ``records`` reads them (default: the JSONL or JSON file
    ``results``)."""

    def __init__(
        self,
        results: Path,
        bundle: Bundle,
        options: TagOptions,
        spec: OutputSpec,
        *,
        records: Records | None = None,
        stdout: TextIO | None = None,
    ):
        if spec.resume or spec.embeddings is not None:
            raise UsageError("retag writes its outputs afresh; --resume and --embeddings are tag's")
        self.results = Path(results)
        self.records = records or (lambda: read_results(self.results))
        _check_target(self.results, spec)
        check_output(spec)
        self.spec = spec
        self.predictor = Predictor(bundle, options)
        self.model = bundle.model_id
        self.stdout = stdout or sys.stdout
        found = results_model(self.results, self.records)
        if found != self.model:
            raise ResultsError(
                f"{self.results} holds the scores of model {found}, and the model given is "
                f"{self.model}; retag with the model that tagged them (--model)"
            )
        self.caption_sink: CaptionSink | None = None
        self.skip: set[str] = set()
        if spec.fmt == "txt":
            self._plan_captions()

    def _plan_captions(self) -> None:
        """Caption names need every image's path; every record is checked, and existing
        captions are kept or refused, before anything is written, as in a tagging run."""
        spec = self.spec
        paths = []
        for where, record in self.records():
            self._read(where, record)
            paths.append(Path(record["path"]))
        folders = {str(p.parent.resolve()) for p in paths}
        root = Path(os.path.commonpath(sorted(folders))) if folders else None
        self.caption_sink = CaptionSink(spec.caption, paths, output_dir=spec.output_dir, root=root)
        targets = [(p, self.caption_sink.caption_path(p)) for p in paths]
        # As in a tagging run: a caption never replaces an image nor leaves --output-dir.
        check_targets([], paths, targets, spec.output_dir)
        captioned = [p for p, caption in targets if caption.exists()]
        if captioned and spec.skip_existing:
            self.skip = {str(p) for p in captioned}
        elif captioned and not spec.overwrite:
            raise OutputError(
                f"{len(captioned)} image(s) already have a caption file (e.g. "
                f"{self.caption_sink.caption_path(captioned[0])}); use --skip-existing to keep "
                "them and caption the rest, or --overwrite to replace them"
            )

    def run(self, on_batch: Callable[[int], None] = lambda count: None) -> RetagSummary:
        """Write every result; return the summary."""
        summary = RetagSummary()
        start = time.perf_counter()
        sink: TagSink = self.caption_sink or open_output(
            self.spec, self.predictor.heads, self.stdout
        )
        try:
            batch: list[Result] = []
            for where, record in self.records():
                if record["path"] in self.skip:
                    summary.skipped += 1
                    continue
                batch.append(self._result(where, record))
                if len(batch) == BATCH:
                    self._write(sink, batch, summary)
                    on_batch(len(batch))
                    batch = []
            if batch:
                self._write(sink, batch, summary)
                on_batch(len(batch))
        except BrokenPipeError:
            summary.pipe_closed = True
            _silence_stdout()
        finally:
            try:
                close_all([sink])
            except BrokenPipeError:
                summary.pipe_closed = True
                _silence_stdout()
            summary.seconds = time.perf_counter() - start
        return summary

    def _write(self, sink: TagSink, batch: Sequence[Result], summary: RetagSummary) -> None:
        unwritten = sink.write(batch)
        if unwritten:
            raise OutputError(unwritten[0][1])
        summary.written += len(batch)

    def _result(self, where: str, record: dict) -> Result:
        values, rating, size, mtime = self._read(where, record)
        tagging = self.predictor.tagging(values, rating)
        return Result(Path(record["path"]), tagging, size, mtime, self.model)

    def _read(self, where: str, record: dict) -> tuple[np.ndarray, float, int, float]:
        """A record's scores (the chosen heads side by side), rating score and file stat."""
        predictor = self.predictor
        scores = record.get("scores")
        if not isinstance(scores, dict):
            raise ResultsError(
                f"{where} holds only the kept tags, not every tag's score: retag chooses "
                "tags from the scores; tag once more with --all-scores"
            )
        if record.get("model") != self.model:
            raise ResultsError(
                f"{where} is from model {record.get('model')}, not {self.model} like the first "
                "record; retag one model's results at a time"
            )
        for head in predictor.heads:
            head_scores = scores.get(head)
            tags = predictor.tags[head]
            if not isinstance(head_scores, dict) or tuple(head_scores) != tags:
                raise ResultsError(
                    f"{where} lacks the scores of every {head} tag (the model's {len(tags)}, "
                    f"in its order); it has scores of: {', '.join(scores) or 'no head'}. Retag "
                    "with --heads among those, or tag again with --all-scores and no --heads"
                )
        every = chain.from_iterable(scores[head].values() for head in predictor.heads)
        try:
            values = np.fromiter(every, dtype=np.float64, count=predictor.width)
        except (TypeError, ValueError):
            raise ResultsError(f"{where}: every score must be a number") from None
        try:
            rating = float(record["rating_score"])
            size, mtime = record["file"]["size"], record["file"]["mtime"]
        except (KeyError, TypeError, ValueError):
            raise ResultsError(
                f'{where} lacks "rating_score" or "file" (size, mtime); {_READS}'
            ) from None
        return values, rating, size, mtime


def _check_target(results: Path, spec: OutputSpec) -> None:
    """Writing over the results while reading them would destroy them; another existing
    file is replaced only with --overwrite."""
    if spec.output is None or not spec.output.exists():
        return
    if results.exists() and spec.output.samefile(results):
        raise UsageError(f"-o {spec.output} is the results file retag reads; write to another file")
    if not spec.overwrite:
        raise OutputError(f"{spec.output} already exists; use --overwrite to replace it")


def _silence_stdout() -> None:
    # The reader went away (`| head`); point stdout at /dev/null so exiting stays quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
