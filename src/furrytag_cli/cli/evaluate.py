"""``furrytag evaluate``: metrics per tag, head and rating; tuned thresholds; reports."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli.conventions import PARTIAL, Device, Split, caption_options
from furrytag_cli.cli.model_options import Normalized
from furrytag_cli.core.errors import FurrytagError

CaptionExt, Separator = caption_options("--labels-from-captions")


def evaluate_command(
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name, bundle folder/zip, legacy SavedModel or hf://OWNER/REPO; repeat to "
            "compare models side by side (default: the registry's default model).",
        ),
    ] = None,
    normalized: Normalized = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="A packed dataset (from `furrytag dataset pack`)."),
    ] = None,
    split: Annotated[Split, typer.Option(help="Split of --data to evaluate.")] = "test",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Evaluate on your own images instead: a CSV (path,tags[,rating]) "
            "or JSONL labels file; paths relative to it.",
        ),
    ] = None,
    labels_from_captions: Annotated[
        Path | None,
        typer.Option(
            "--labels-from-captions",
            help="Evaluate on a folder of images whose caption files you reviewed: their "
            "tags are the labels (thresholds are tuned on them, to your taste).",
        ),
    ] = None,
    caption_ext: CaptionExt = ".txt",
    separator: Separator = ", ",
    tune_on: Annotated[
        str,
        typer.Option(
            "--tune-on",
            help="Where thresholds are tuned: a split of --data (default val), a "
            "labels file with --labels, the captions themselves, or none.",
        ),
    ] = "val",
    threshold: Annotated[
        float | None,
        typer.Option(help="The fixed threshold to report (default: the model's, usually 0.5)."),
    ] = None,
    rating_cuts: Annotated[
        str | None,
        typer.Option(help="Rating cut points LOW,HIGH (default: the model's, 1/3 and 2/3)."),
    ] = None,
    min_support: Annotated[
        int, typer.Option(help="Positives a tag needs in the tuning data to get its own threshold.")
    ] = 10,
    shrinkage: Annotated[
        float,
        typer.Option(
            help="Pull of rare tags' thresholds toward their head's (positives-equivalent)."
        ),
    ] = 10.0,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores",
            help="Folder caching each model's scores as .npz; re-runs with other "
            "thresholds or cuts skip the model.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write metrics.json, per_tag.csv and PNG plots here (a folder per "
            "model when comparing).",
        ),
    ] = None,
    write_thresholds: Annotated[
        bool,
        typer.Option(
            "--write-thresholds",
            help="Store the tuned per-tag thresholds in the bundle's "
            "metadata; `furrytag tag` then uses them by default.",
        ),
    ] = False,
    save_thresholds: Annotated[
        Path | None,
        typer.Option("--save-thresholds", help="Write the tuned thresholds to this YAML file."),
    ] = None,
    compare_at: Annotated[
        str | None,
        typer.Option(
            help="Threshold setting of the comparison table (default: per tag when tuned)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON on stdout.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    device: Annotated[Device, typer.Option(help="Where the models run.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables.")] = False,
    offline: Annotated[
        bool, typer.Option(help="Never use the network; models must be cached.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Model cache folder (default: $FURRYTAG_HOME or the user cache)."
        ),
    ] = None,
) -> None:
    """Measure models on labelled images: P/R/F1/MCC/AP per tag and head, rating accuracy."""
    from furrytag_cli.core.console import notice
    from furrytag_cli.evaluation import job as evaljob
    from furrytag_cli.model.categories import RatingSpec

    if labels is not None and tune_on == "val":
        tune_on = "none"
    from furrytag_cli.captions.files import CaptionFiles
    from furrytag_cli.core.errors import UsageError

    if labels_from_captions is None and (caption_ext, separator) != (".txt", ", "):
        raise UsageError("--caption-ext and --separator say how --labels-from-captions are written")
    source, tuning = evaljob.resolve_sources(
        data, split, labels, tune_on, labels_from_captions, CaptionFiles(caption_ext, separator)
    )
    if compare_at is not None and len(models or []) < 2:
        raise FurrytagError(
            "--compare-at picks the thresholds of the table comparing several "
            "models; give two or more --model"
        )
    if len(models or []) > 1 and write_thresholds:
        raise typer.BadParameter("--write-thresholds works on one --model at a time")
    request = evaljob.EvalRequest(
        source=source,
        tune_on=tuning,
        threshold=threshold,
        rating_cuts=RatingSpec.parse_cuts(rating_cuts).cuts if rating_cuts else None,
        min_support=min_support,
        shrinkage=shrinkage,
        scores_dir=scores,
        batch_size=batch_size,
        device=device,
    )
    show = not quiet
    run = evaljob.run_evaluation(
        models or [None],
        request,
        outputs=evaljob.Outputs(report, save_thresholds, write_thresholds),
        home=cache_dir,
        offline=offline,
        normalized=normalized,
        progress=show,
        notify=notice if show else None,
    )
    for label, result in run.reports.items() if show else ():
        for note in result.notes:
            typer.echo(note, err=True)
        if result.failed:
            typer.echo(
                f"{len(result.failed)} image(s) of {label} could not be read and were "
                "left out of its metrics",
                err=True,
            )
    _render(run.reports, request, quiet=quiet, as_json=as_json, compare_at=compare_at)
    for line in run.written:
        typer.echo(line, err=True)
    if any(result.failed for result in run.reports.values()):
        raise typer.Exit(PARTIAL)


def _render(reports, request, *, quiet: bool, as_json: bool, compare_at: str | None) -> None:
    from rich.console import Console

    from furrytag_cli.evaluation.tables import comparison_table, print_evaluation

    if as_json:
        typer.echo(
            json.dumps(
                {name: r.evaluation.to_dict() for name, r in reports.items()},
                indent=2,
                allow_nan=False,
            )
        )
    if quiet:
        return
    stream = sys.stderr if as_json else sys.stdout
    # Piped or redirected tables are read later, in full: do not squeeze them to 80 columns.
    console = Console(file=stream, width=None if stream.isatty() else 160)
    for name, result in reports.items():
        if result.tuned_on_evaluated:
            console.print(
                f"[yellow]Thresholds of {name} were tuned on the evaluated images "
                "themselves: the tuned rows are optimistic.[/yellow]"
            )
    if len(reports) == 1:
        print_evaluation(next(iter(reports.values())).evaluation, console)
        return
    default = "per tag" if request.tune_on is not None else None
    console.print(
        comparison_table({n: r.evaluation for n, r in reports.items()}, compare_at or default)
    )
