"""One gallery build: results → thumbnails → page, with a progress bar."""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import OutputError
from furrytag_cli.core.machine import cpu_threads
from furrytag_cli.core.progress import Progress
from furrytag_cli.gallery.page import write_page
from furrytag_cli.gallery.results import OTHER_HEAD, Results
from furrytag_cli.gallery.thumbs import FOLDER, make_thumbnails
from furrytag_cli.model.thresholds import Thresholds

ThresholdTable = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class GallerySummary:
    """What a build did."""

    index: Path
    images: int
    made: int
    missing: int
    unreadable: int
    failures: int
    seconds: float


def threshold_table(results: Results, thresholds: Thresholds) -> dict[str, dict[str, float]]:
    """``thresholds`` spelled out per tag of the results' vocabulary ({head: {tag: value}})."""
    return {
        head: dict(zip(tags, map(float, thresholds.vector(head, tags))))
        for head, tags in results.vocabulary.items()
        if head != OTHER_HEAD
    }


def build_gallery(
    results: Results,
    out: Path,
    *,
    thresholds: ThresholdTable | None = None,
    thresholds_from: str | None = None,
    rating_cuts: Sequence[float] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> GallerySummary:
    """Write the gallery of ``results`` into folder ``out`` (created when missing)."""
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; the gallery is a folder: give a folder name with -o")
    if (out / "index.html").exists() and not (out / "data" / "meta.js").is_file():
        raise OutputError(
            f"{out} holds an index.html that is not a furrytag gallery; give -o an empty "
            "folder, a new one, or an earlier gallery's to rebuild it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the gallery folder {out}: {exc.strerror}") from None
    files = [item.file for item in results.items]
    bar = Progress(len(files), "thumbnails", "img", enabled=progress).start()
    before = set((out / FOLDER).glob("*.webp"))
    try:
        thumbs = make_thumbnails(
            files,
            out / FOLDER,
            workers=workers or cpu_threads(),
            on_done=bar.advance,
        )
    finally:
        bar.close()
    index = write_page(
        out,
        results,
        thumbs,
        thresholds=thresholds,
        thresholds_from=thresholds_from,
        rating_cuts=rating_cuts,
    )
    made = {out / FOLDER / t.name for t in thumbs if t.name} - before
    return GallerySummary(
        index=index,
        images=len(thumbs),
        made=len(made),
        missing=sum(t.status == "missing" for t in thumbs),
        unreadable=sum(t.status == "unreadable" for t in thumbs),
        failures=len(results.failures),
        seconds=time.perf_counter() - start,
    )
