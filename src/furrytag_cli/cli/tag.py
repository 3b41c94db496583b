"""``furrytag tag``: tag image files and folders, write per-category tags."""

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from furrytag_cli.cli.conventions import INTERRUPTED, PARTIAL, Device, Engine, Quantize
from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.core.live import BatchProgress

Format = Literal["jsonl", "json", "csv", "txt"]


def tag_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders, '-' (paths on stdin) or @LIST (a file of paths).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Registry name, bundle folder/.zip, or legacy SavedModel folder. "
            "Default: the registry's default model.",
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = True,
    glob: Annotated[
        list[str], typer.Option("--glob", help="Only files matching this pattern (repeatable).")
    ] = [],
    exclude: Annotated[
        list[str], typer.Option("--exclude", help="Skip files matching this pattern (repeatable).")
    ] = [],
    null: Annotated[
        bool, typer.Option("-0", "--null", help="Paths from stdin/@LIST are NUL-separated.")
    ] = False,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format. Default: from the -o name (.json, .csv), else jsonl "
            "(txt writes a caption beside each image).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (default or '-': stdout).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="txt: write captions here, mirroring the input tree.")
    ] = None,
    all_scores: Annotated[
        bool, typer.Option("--all-scores", help="JSON/JSONL: include every tag's score.")
    ] = False,
    long: Annotated[
        bool, typer.Option("--long", help="CSV: one row per (image, tag, score).")
    ] = False,
    underscores: Annotated[bool, typer.Option(help="txt: keep underscores in tags.")] = True,
    escape_parens: Annotated[
        bool, typer.Option("--escape-parens", help=r"txt: write ( ) as \( \).")
    ] = False,
    prefix: Annotated[
        str, typer.Option(help="txt: comma-separated tags put first (e.g. a trigger word).")
    ] = "",
    suffix: Annotated[str, typer.Option(help="txt: comma-separated tags put last.")] = "",
    order: Annotated[
        Literal["score", "head"], typer.Option(help="txt: order tags by score or by head.")
    ] = "score",
    exclude_tags: Annotated[str, typer.Option(help="Comma-separated tags never to output.")] = "",
    threshold: Annotated[
        float | None,
        typer.Option(help="Keep tags scoring above this (overrides tuned thresholds)."),
    ] = None,
    head_threshold: Annotated[
        list[str], typer.Option(help="Per-head threshold, HEAD=VALUE (repeatable).")
    ] = [],
    tuned_thresholds: Annotated[
        bool, typer.Option(help="Use the bundle's tuned per-tag thresholds when present.")
    ] = True,
    thresholds: Annotated[
        Path | None,
        typer.Option(
            help="Tuned thresholds from this YAML/JSON file (as "
            "evaluate --save-thresholds writes); used instead of the bundle's."
        ),
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Keep at most K tags per head.")] = None,
    rating_cuts: Annotated[
        str | None, typer.Option(help="Rating cut points LOW,HIGH (default 1/3,2/3).")
    ] = None,
    heads: Annotated[
        str | None, typer.Option(help="Only these heads, comma-separated (e.g. species,body).")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Write feature vectors to FILE.npy (+ FILE.paths.txt).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = "auto",
    engine: Annotated[
        Engine,
        typer.Option(
            help="lite (LiteRT, XNNPACK) is the fast one on a CPU; "
            "auto picks it there and keras on a GPU."
        ),
    ] = "auto",
    quantize: Annotated[
        Quantize,
        typer.Option(help="lite: quantized weights (smaller, scores drift slightly)."),
    ] = "none",
    failures: Annotated[
        Path | None, typer.Option(help="Failure report (default: beside the output).")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first file that fails (exit code 1, not 3).")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Skip files already in the output (same file, same model).")
    ] = False,
    skip_existing: Annotated[
        bool, typer.Option(help="txt: skip images that already have a caption.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing output, embeddings or caption files.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    offline: Annotated[
        bool, typer.Option(help="Never use the network; the model must be cached.")
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Model cache folder.")] = None,
    gallery: Annotated[
        Path | None,
        typer.Option(help="Then write an HTML gallery of the results here (furrytag gallery)."),
    ] = None,
) -> None:
    """Tag images with e621-style tags, per category, and a rating."""
    from furrytag_cli.core.interrupt import graceful_interrupt
    from furrytag_cli.model.categories import RatingSpec
    from furrytag_cli.model.thresholds import load_thresholds
    from furrytag_cli.tagging.discovery import discover
    from furrytag_cli.tagging.job import OutputSpec, TagJob, check_output, format_for
    from furrytag_cli.tagging.predict import TagOptions, parse_head_thresholds
    from furrytag_cli.tagging.sinks import CaptionStyle

    if batch_size < 1:
        raise FurrytagError(f"--batch-size must be at least 1; received {batch_size}")
    if output == Path("-"):
        output = None
    spec = OutputSpec(
        fmt=fmt or format_for(output),
        output=output,
        output_dir=output_dir,
        caption=CaptionStyle(
            underscores=underscores,
            escape_parens=escape_parens,
            prefix=_split(prefix),
            suffix=_split(suffix),
            order=order,
        ),
        long=long,
        embeddings=embeddings,
        failures=failures,
        resume=resume,
        skip_existing=skip_existing,
        overwrite=overwrite,
        strict=strict,
    )
    check_output(spec)
    if gallery is not None:
        from furrytag_cli.cli.gallery import check_tag_gallery

        check_tag_gallery(spec, inputs)
    options = TagOptions(
        threshold=threshold,
        head_thresholds=parse_head_thresholds(head_threshold),
        tuned=tuned_thresholds,
        thresholds=load_thresholds(thresholds) if thresholds else None,
        top_k=top_k,
        heads=_split(heads) or None,
        rating_cuts=RatingSpec.parse_cuts(rating_cuts).cuts if rating_cuts else None,
        exclude_tags=frozenset(_split(exclude_tags)),
        all_scores=all_scores,
    )
    found = discover(inputs, recursive=recursive, globs=glob, excludes=exclude, null_separated=null)
    if not found.files and not found.problems:
        filters = "".join(f", matching {g!r}" for g in glob) + "".join(
            f", not {e!r}" for e in exclude
        )
        raise FurrytagError(
            f"no images found in {', '.join(inputs)} (looked for .jpg .jpeg .png .gif .webp .bmp"
            f"{'' if recursive else ', not in sub-folders'}{filters})"
        )
    if not found.files:
        shown = "; ".join(f"{path}: {reason}" for path, reason in found.problems[:3])
        more = f" and {len(found.problems) - 3} more" if len(found.problems) > 3 else ""
        raise FurrytagError(f"nothing to tag: {shown}{more}")
    show = not quiet
    from furrytag_cli.tagging.tagger import Tagger

    tagger = Tagger(
        model,
        options=options,
        batch_size=batch_size,
        embeddings=embeddings is not None,
        device=device,
        engine=engine,
        quantize=quantize,
        home=cache_dir,
        offline=offline,
        progress=show,
        notify=_notice if show else None,
    )
    dirs = [Path(i) for i in inputs if os.path.isdir(i)]
    root = Path(os.path.commonpath([str(d.resolve()) for d in dirs])) if dirs else None
    job = TagJob(tagger, found.files, spec, problems=found.problems, root=root)
    for path, reason in found.problems:
        typer.echo(f"furrytag: skipped {path}: {reason}", err=True)
    with (
        BatchProgress(len(job.files), enabled=show and sys.stderr.isatty()) as progress,
        graceful_interrupt(progress.note) as stop,
    ):
        summary = job.run(on_batch=progress.update, stop=stop)
    if summary.pipe_closed:
        raise typer.Exit(0)
    if show:
        rate = summary.tagged / summary.seconds if summary.seconds else 0.0
        typer.echo(
            f"Tagged {summary.tagged}, skipped {summary.skipped} already done, "
            f"failed {len(summary.failed)} of {summary.total} files in {summary.seconds:.1f} s "
            f"({rate:.1f} images/s) with {tagger.bundle.name} ({tagger.engine.name} engine).",
            err=True,
        )
        if summary.failures_file:
            typer.echo(f"Failure report: {summary.failures_file}", err=True)
    if gallery is not None and not summary.interrupted:
        from furrytag_cli.cli.gallery import gallery_of_run

        gallery_of_run(spec, inputs, tagger, gallery, summary.failures_file, quiet=quiet)
    if summary.interrupted:
        raise typer.Exit(INTERRUPTED)
    if summary.failed and spec.strict:
        path, reason = summary.failed[0]
        raise FurrytagError(f"stopped at the first file that failed (--strict): {path}: {reason}")
    if summary.failed and not summary.tagged + summary.skipped:
        report = f"; the reasons are in {summary.failures_file}" if summary.failures_file else ""
        raise FurrytagError(f"none of the {summary.total} files could be tagged{report}")
    if summary.failed:
        raise typer.Exit(PARTIAL)


def _notice(message: str) -> None:
    typer.echo(f"furrytag: {message}", err=True)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]
