"""``furrytag retag``: choose tags again from the scores ``tag --all-scores`` saved, and
write any of tag's outputs, without running the model."""

from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli import options
from furrytag_cli.cli.conventions import local_results
from furrytag_cli.cli.model_options import CacheDir
from furrytag_cli.core.errors import FurrytagError, UsageError


@options.shared_options(after="model")
def retag_command(
    ctx: typer.Context,
    results: Annotated[
        str,
        typer.Argument(
            help="The JSONL or JSON that furrytag tag --all-scores wrote, or the output "
            "folder of tag --ray.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="The model that tagged them (name, bundle folder/.zip); only its metadata "
            "is read. Default: the model the results name, from the cache.",
        ),
    ] = None,
    skip_existing: options.SkipExisting = False,
    overwrite: options.Overwrite = False,
    profile: options.Profile = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
    as_json: options.AsJson = False,
    cache_dir: CacheDir = None,
    **shared,
) -> None:
    """Tag again from saved scores (tag --all-scores) with other options, in seconds."""
    results = local_results(results, "retag")
    values = options.with_profile(ctx, {**locals(), **shared})
    from furrytag_cli.tagging.retag import RetagJob, results_model
    from furrytag_cli.tagging.tagger import resolve_bundle

    spec = options.output_spec(values)
    if as_json and spec.output is None and spec.fmt != "txt":
        raise UsageError(
            "--json prints the summary on stdout, where the results go without -o; "
            "give -o FILE for the results"
        )
    tag_options = options.selection(values)
    records = _shard_records(results) if results.is_dir() else None
    if model is not None:
        bundle = resolve_bundle(model, home=cache_dir, offline=True)
    else:
        found = results_model(results, records)
        name = found.rpartition("@")[0]
        try:
            bundle = resolve_bundle(name, home=cache_dir, offline=True)
        except FurrytagError:
            raise FurrytagError(
                f"{results} was tagged by {found}, and no model named {name!r} is in the cache: "
                f"give the bundle that tagged it with --model FOLDER (or furrytag download {name})"
            ) from None
    spec = options.fit_to_model(spec, values, bundle)
    job = RetagJob(results, bundle, tag_options, spec, records=records)
    summary = job.run()
    if summary.pipe_closed:
        raise typer.Exit(0)
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    if as_json:
        import json

        typer.echo(
            json.dumps(
                {
                    "written": summary.written,
                    "skipped": summary.skipped,
                    "seconds": round(summary.seconds, 3),
                    "images_per_second": round(rate, 2),
                    "model_id": bundle.model_id,
                    "output": str(spec.output or spec.output_dir or "") or None,
                },
                indent=2,
            )
        )
    elif not quiet:
        skipped = f", kept {summary.skipped} existing captions" if summary.skipped else ""
        typer.echo(
            f"Retagged {summary.written} images{skipped} in {summary.seconds:.1f} s "
            f"({rate:,.0f} images/s) from {results}.",
            err=True,
        )


def _shard_records(folder: Path):
    """Reads the results shards of a ``tag --ray`` output folder afresh at each call."""
    from furrytag_cli.distributed.shards import FAILURES, failure_shards, results_shards, shard_rows

    shards = results_shards(folder)
    if not shards and failure_shards(folder):
        raise UsageError(
            f"{folder} holds only failures (in {FAILURES}/): tag --ray tagged none of its "
            "images, so there are no scores to retag; delete that folder and run tag --ray "
            "again with --resume to try them again"
        )
    if not shards:
        raise UsageError(
            f"{folder} is a folder without the results shards of tag --ray (part-*.parquet "
            "or part-*.jsonl); retag reads those, or the JSONL or JSON of tag --all-scores"
        )
    return lambda: shard_rows(shards)
