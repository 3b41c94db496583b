"""``furrytag tag --ray``: the tag command's options, run on a Ray cluster into a folder of shards."""

import dataclasses
import inspect
import json
import logging

import typer

from furrytag_cli.cli import options
from furrytag_cli.cli.conventions import PARTIAL
from furrytag_cli.core.errors import FurrytagError, UsageError

# tag's options that shape single-machine outputs; on Ray, results are shards of every score.
_NOT_ON_RAY = (
    "output_dir",
    "long",
    "underscores",
    "escape_parens",
    "prefix",
    "suffix",
    "order",
    "replace",
    "first",
    "rating_tag",
    "rating_at",
    "separator",
    "caption_ext",
    "implied",
    "implications",
    "embeddings",
    "failures",
    "strict",
    "skip_existing",
    "gallery",
)
_RAY_ONLY = ("workers", "gpus_per_worker", "cpus_per_worker", "shard_rows")


def check_ray_options(values: dict, signature: inspect.Signature) -> None:
    """Refuse the Ray-only options on a run without --ray."""
    for name in _RAY_ONLY:
        if values[name] != signature.parameters[name].default:
            raise UsageError(
                f"--{name.replace('_', '-')} applies to runs on Ray; add --ray (or drop it)"
            )


def tag_on_ray_command(values: dict, signature: inspect.Signature) -> None:
    """Run ``furrytag tag`` with the options ``values`` (parameter name → value) on Ray."""
    from furrytag_cli.distributed.runtime import require_ray

    require_ray()
    for name in _NOT_ON_RAY:
        if values[name] != signature.parameters[name].default:
            raise UsageError(
                f"--{name.replace('_', '-')} does not apply with --ray, which writes every "
                "image's tags and scores to a folder of shards (-o FOLDER); drop it, or tag "
                "without --ray"
            )
    if values["fmt"] not in (None, "jsonl"):
        raise UsageError(
            f"-f {values['fmt']} does not apply with --ray: shards are Parquet, or JSONL with "
            "-f jsonl"
        )
    if values["output"] in (None, "-"):
        raise UsageError(
            "--ray writes a folder of shards: give it with -o FOLDER (or -o s3://BUCKET/FOLDER)"
        )
    from furrytag_cli.distributed.run import RayJob, RaySettings, run_on_ray

    job = RayJob(
        model=values["model"],
        options=dataclasses.replace(options.selection(values), all_scores=True),
        fmt=values["fmt"] or "parquet",
        settings=RaySettings(
            workers=values["workers"],
            gpus_per_worker=values["gpus_per_worker"],
            cpus_per_worker=values["cpus_per_worker"],
            batch_size=values["batch_size"],
            shard_rows=values["shard_rows"],
        ),
        address=values["ray_address"],
        resume=values["resume"],
        overwrite=values["overwrite"],
        engine=values["engine"],
        device=values["device"],
        quantize=values["quantize"],
        home=values["cache_dir"],
        offline=values["offline"],
        recursive=values["recursive"],
        globs=values["glob"],
        excludes=values["exclude"],
        null_separated=values["null"],
    )
    show = not values["quiet"] and not values["as_json"]
    logging.getLogger("ray").setLevel(logging.ERROR)

    def progress(summary) -> None:
        if show:
            done = summary.tagged + summary.failed
            typer.echo(
                f"furrytag: {done} of {summary.total - summary.skipped} images in "
                f"{len(summary.shards)} shard(s)",
                err=True,
            )

    summary = run_on_ray(values["inputs"], values["output"], job, on_shard=progress)
    for path, reason in summary.problems:
        typer.echo(f"furrytag: skipped {path}: {reason}", err=True)
    done = summary.tagged + summary.failed
    rate = done / summary.seconds if summary.seconds else 0.0
    if values["as_json"]:
        typer.echo(json.dumps(_summary_json(summary, rate), indent=2))
    elif show:
        typer.echo(
            f"Tagged {summary.tagged}, skipped {summary.skipped} already done, failed "
            f"{summary.failed} of {summary.total} files in {summary.seconds:.1f} s "
            f"({rate:.1f} images/s) on Ray with {summary.model_id}; shards in "
            f"{summary.folder}",
            err=True,
        )
    if summary.failed and not summary.tagged + summary.skipped:
        raise FurrytagError(
            f"none of the {summary.total} files could be tagged; the reasons are in "
            f"{summary.folder}/_failures"
        )
    if summary.failed or summary.problems:
        raise typer.Exit(PARTIAL)


def _summary_json(summary, rate: float) -> dict:
    return {
        "total": summary.total,
        "tagged": summary.tagged,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
        "images_per_second": round(rate, 2),
        "model_id": summary.model_id,
        "output": str(summary.folder),
        "shards": [str(s) for s in summary.shards],
    }
