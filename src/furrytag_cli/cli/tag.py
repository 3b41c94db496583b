"""``furrytag tag``: tag image files and folders, write per-category tags."""

import inspect
import os
from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli import options
from furrytag_cli.cli.conventions import PARTIAL, Device, Engine, Quantize
from furrytag_cli.cli.model_options import CacheDir, Normalized
from furrytag_cli.core.errors import FurrytagError
from furrytag_cli.core.progress import Progress


@options.shared_options(after="null")
def tag_command(
    ctx: typer.Context,
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
            help="Registry name, bundle folder/.zip, legacy SavedModel folder, or "
            "hf://OWNER/REPO[@REVISION][/SUBFOLDER]. Default: the registry's default model.",
        ),
    ] = None,
    normalized: Normalized = None,
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
    embeddings: Annotated[
        Path | None, typer.Option(help="Write feature vectors to FILE.npy (+ FILE.paths.txt).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = "auto",
    engine: Annotated[
        Engine,
        typer.Option(
            help="lite (LiteRT, XNNPACK) is the fast one on a CPU; "
            "auto picks it there and keras on a GPU; onnx (ONNX Runtime) runs exported "
            "bundles (model.onnx), which auto picks for them."
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
    skip_existing: options.SkipExisting = False,
    overwrite: options.Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    as_json: options.AsJson = False,
    offline: Annotated[
        bool, typer.Option(help="Never use the network; the model must be cached.")
    ] = False,
    cache_dir: CacheDir = None,
    gallery: Annotated[
        Path | None,
        typer.Option(help="Then write an HTML gallery of the results here (furrytag gallery)."),
    ] = None,
    profile: options.Profile = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster (pip install 'furrytag[ray]'): the one at --ray-address "
            "or RAY_ADDRESS, else one started here. -o is then a folder of Parquet shards "
            "(-f jsonl: JSONL) of every image's tags and scores.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="--ray: the cluster to join (implies --ray).")
    ] = None,
    workers: Annotated[int, typer.Option(help="--ray: model workers, one model each.")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="--ray: GPUs per model worker.")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(help="--ray: CPUs per model worker.")] = 1.0,
    shard_rows: Annotated[int, typer.Option(help="--ray: images per output shard.")] = 10_000,
    **shared,
) -> None:
    """Tag images with e621-style tags, per category, and a rating."""
    values = options.with_profile(ctx, {**locals(), **shared})
    from furrytag_cli.cli import tag_ray

    if ray or ray_address is not None:
        tag_ray.tag_on_ray_command(values, inspect.signature(tag_command))
        return
    tag_ray.check_ray_options(values, inspect.signature(tag_command))
    from furrytag_cli.core.console import printable
    from furrytag_cli.core.interrupt import graceful_interrupt
    from furrytag_cli.tagging.discovery import discover
    from furrytag_cli.tagging.job import TagJob, check_run
    from furrytag_cli.tagging.tagger import resolve_bundle

    if batch_size < 1:
        raise FurrytagError(f"--batch-size must be at least 1; received {batch_size}")
    spec = options.output_spec(
        values, embeddings=embeddings, failures=failures, resume=resume, strict=strict
    )
    if as_json and spec.output is None and spec.fmt != "txt":
        raise FurrytagError(
            "--json prints the summary on stdout, where the results go without -o; "
            "give -o FILE for the results"
        )
    if gallery is not None:
        from furrytag_cli.cli.gallery import check_tag_gallery

        check_tag_gallery(spec, inputs)
    tag_options = options.selection(values)
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
    dirs = [Path(i) for i in inputs if os.path.isdir(i)]
    root = Path(os.path.commonpath([str(d.resolve()) for d in dirs])) if dirs else None
    check_run(spec, found.files, root)
    show = not quiet
    from furrytag_cli.tagging.tagger import Tagger

    bundle = resolve_bundle(
        model, home=cache_dir, offline=offline, progress=show, normalized=normalized
    )
    spec = options.fit_to_model(spec, values, bundle)
    tagger = Tagger(
        bundle,
        options=tag_options,
        batch_size=batch_size,
        embeddings=embeddings is not None,
        device=device,
        engine=engine,
        quantize=quantize,
        home=cache_dir,
        notify=_notice if show else None,
    )
    job = TagJob(tagger, found.files, spec, problems=found.problems, root=root)
    for message in job.summary.recovered:
        _notice(message)
    for path, reason in found.problems:
        typer.echo(f"furrytag: skipped {printable(path)}: {printable(reason)}", err=True)
    with (
        Progress(len(job.files), "Tagging", "img", enabled=show, failures=True) as progress,
        graceful_interrupt(progress.note) as stop,
    ):
        summary = job.run(on_batch=progress.batch, stop=stop)
    if summary.pipe_closed:
        raise typer.Exit(0)
    rate = summary.tagged / summary.seconds if summary.seconds else 0.0
    if as_json:
        _print_json(summary, rate, tagger, spec)
    elif show:
        try:
            typer.echo(
                f"Tagged {summary.tagged}, skipped {summary.skipped} already done, failed "
                f"{len(summary.failed)} of {summary.total} files in {summary.seconds:.1f} s "
                f"({rate:.1f} images/s) with {tagger.bundle.name} ({tagger.engine.name} engine).",
                err=True,
            )
            if summary.failures_file:
                typer.echo(f"Failure report: {summary.failures_file}", err=True)
        except OSError:
            if not summary.interrupted:
                raise  # after a hang-up the terminal may be gone; the outputs are what count
    if gallery is not None and summary.tagged + summary.skipped and not summary.interrupted:
        from furrytag_cli.cli.gallery import gallery_of_run

        gallery_of_run(spec, inputs, tagger, gallery, summary.failures_file, quiet=quiet)
    if summary.interrupted:
        raise typer.Exit(summary.exit_code)
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


def _print_json(summary, rate: float, tagger, spec) -> None:
    import json

    typer.echo(
        json.dumps(
            {
                "total": summary.total,
                "tagged": summary.tagged,
                "skipped": summary.skipped,
                "failed": [{"path": path, "reason": reason} for path, reason in summary.failed],
                "interrupted": summary.interrupted,
                "seconds": round(summary.seconds, 3),
                "images_per_second": round(rate, 2),
                "model": tagger.bundle.name,
                "model_id": tagger.model_id,
                "engine": tagger.engine.name,
                "output": str(spec.output) if spec.output else None,
                "failures_file": str(summary.failures_file) if summary.failures_file else None,
            },
            indent=2,
        )
    )
