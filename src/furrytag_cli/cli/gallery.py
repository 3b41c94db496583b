"""``furrytag gallery``: an offline HTML page of tagging results, with review and labels export."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from furrytag_cli.cli.conventions import caption_options, local_results
from furrytag_cli.core.errors import UsageError

if TYPE_CHECKING:
    from furrytag_cli.gallery.build import ThresholdTable
    from furrytag_cli.gallery.results import Results
    from furrytag_cli.tagging.job import OutputSpec
    from furrytag_cli.tagging.tagger import Tagger

CaptionExt, Separator = caption_options("A caption folder (tag -f txt)")


def gallery_command(
    results: Annotated[
        str,
        typer.Argument(
            help="Results of furrytag tag (JSONL or JSON), or a folder of images with captions.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Gallery folder (created; index.html inside).")
    ],
    thresholds: Annotated[
        Path | None,
        typer.Option(
            help="The thresholds the run used (a file of evaluate --save-thresholds), "
            "shown in the detail view."
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="The one threshold the run used (tag --threshold).")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            help="Folder the results' relative paths start from (default: the current "
            "folder, or the results file's when the images are there)."
        ),
    ] = None,
    failures: Annotated[
        Path | None,
        typer.Option(help="The run's failure report (default: RESULTS.failures.tsv when present)."),
    ] = None,
    caption_ext: CaptionExt = ".txt",
    separator: Separator = ", ",
    workers: Annotated[
        int | None, typer.Option(help="Processes making thumbnails (default: every core).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Write an HTML gallery of tagged images: filters, scores, review, labels export."""
    from furrytag_cli.captions.files import CaptionFiles
    from furrytag_cli.gallery.results import read_results

    if thresholds is not None and threshold is not None:
        raise UsageError("--thresholds and --threshold both name the thresholds; give one")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1; received {threshold}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1; received {workers}")
    captions = CaptionFiles(extension=caption_ext, separator=separator)
    loaded = read_results(
        local_results(results, "the gallery"), base=base, failures=failures, captions=captions
    )
    table, named = None, None
    if thresholds is not None or threshold is not None:
        from furrytag_cli.gallery.build import threshold_table
        from furrytag_cli.model.thresholds import Thresholds, load_thresholds

        chosen = load_thresholds(thresholds) if thresholds else Thresholds(default=threshold)
        table = threshold_table(loaded, chosen)
        named = f"from {thresholds}" if thresholds else f"{threshold:g} for every tag"
    write_gallery(loaded, output, table, named, workers=workers, quiet=quiet)


def write_gallery(
    results: "Results",
    output: Path,
    thresholds: "ThresholdTable | None",
    thresholds_from: str | None,
    *,
    workers: int | None = None,
    rating_cuts: Sequence[float] | None = None,
    quiet: bool = False,
) -> None:
    """Build the gallery and say where it is (shared with ``tag --gallery``)."""
    from furrytag_cli.gallery.build import build_gallery

    summary = build_gallery(
        results,
        output,
        thresholds=thresholds,
        thresholds_from=thresholds_from,
        rating_cuts=rating_cuts,
        workers=workers,
        progress=not quiet,
    )
    if quiet:
        return
    problems = [
        f"{n} {what}"
        for n, what in (
            (summary.missing, "missing"),
            (summary.unreadable, "unreadable"),
            (summary.failures, "failed in the run"),
        )
        if n
    ]
    typer.echo(
        f"Gallery of {summary.images} images ({summary.made} thumbnails made, "
        f"{summary.images - summary.made - summary.missing - summary.unreadable} reused"
        f"{'; ' + ', '.join(problems) if problems else ''}) in {summary.seconds:.1f} s: "
        f"{summary.index.resolve().as_uri()}",
        err=True,
    )


def check_tag_gallery(spec: "OutputSpec", inputs: list[str]) -> None:
    """Refuse ``tag --gallery`` before the run when its results could not be shown."""
    if spec.fmt in ("jsonl", "json") and spec.output is not None:
        return
    if (
        spec.fmt == "txt"
        and spec.output_dir is None
        and len(inputs) == 1
        and Path(inputs[0]).is_dir()
    ):
        return
    raise UsageError(
        "--gallery shows the results written to a file: add -o results.jsonl (JSONL or JSON); "
        "for captions (-f txt) tag one folder without --output-dir"
    )


def gallery_of_run(
    spec: "OutputSpec",
    inputs: list[str],
    tagger: "Tagger",
    folder: Path,
    failures: Path | None,
    *,
    quiet: bool,
) -> None:
    """The gallery of a finished ``tag`` run, with the thresholds and rating cuts it used."""
    from furrytag_cli.captions.files import CaptionFiles
    from furrytag_cli.gallery.results import read_results

    source = spec.output if spec.output is not None else Path(inputs[0])
    captions = CaptionFiles(extension=spec.caption.extension, separator=spec.caption.separator)
    results = read_results(source, base=Path.cwd(), failures=failures, captions=captions)
    predictor = tagger.predictor
    table = {
        head: dict(zip(predictor.tags[head], map(float, predictor.thresholds[head])))
        for head in predictor.heads
    }
    write_gallery(
        results,
        folder,
        table,
        f"as this run of {tagger.bundle.name} used them",
        rating_cuts=predictor.rating.cuts,
        quiet=quiet,
    )
