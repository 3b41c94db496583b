"""``furrytag dataset``: e621 export → labels and splits → images → TFRecord shards.

The dataset code is imported inside each command, so ``--help`` stays fast.
"""

from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli.conventions import (
    PARTIAL,
    SPLITS,
    complete_from,
    either,
    split_choices,
    split_commas,
)
from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.layout import (
    DEFAULT_USER_AGENT,
    E621_BASE_URL,
    IMAGES,
    SAMPLES,
    STILL_FORMATS,
)

app = typer.Typer(
    help=(
        "Training data from e621's database export: labels and splits (build), images "
        "(fetch), TFRecord shards (pack), class balance (stats); synth writes a small "
        "synthetic export for tests and offline trials."
    ),
    no_args_is_help=True,
)

CategoriesOption = Annotated[
    Path | None,
    typer.Option(
        "--categories", help="Folder of <head>.txt tag lists (default: the shipped categories)."
    ),
]
SplitOption = Annotated[
    list[str] | None,
    typer.Option(
        "--split",
        metavar="<" + "|".join(SPLITS) + ">",
        callback=lambda values: split_choices(values, SPLITS, "--split"),
        autocompletion=complete_from(SPLITS),
        help="Only these splits (repeatable, or comma-separated). Default: all.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
DataOption = Annotated[
    Path, typer.Option("--data", "-d", help="Dataset folder (with manifest.jsonl).")
]
# The old name of build's --data and of pack's and synth's --output: still accepted, unlisted.
OldOut = Annotated[Path | None, typer.Option("--out", hidden=True)]


def _categories(folder: Path | None):
    from furrytag_cli.model.categories import CategorySet

    return CategorySet.load(folder) if folder is not None else CategorySet.load()


@app.command("build")
def build_command(
    export: Annotated[
        list[Path],
        typer.Option(
            "--export",
            help="Export folder, or export files (posts-*, tag_aliases-*, "
            "tag_implications-*, .csv or .csv.gz); repeatable.",
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Dataset folder to write the manifest to."),
    ] = None,
    categories: CategoriesOption = None,
    splits: Annotated[str, typer.Option(help="train,val,test ratios.")] = "0.9,0.05,0.05",
    split_seed: Annotated[int, typer.Option(help="Salt of the split hash.")] = 0,
    formats: Annotated[
        list[str],
        typer.Option(
            help="File extensions to keep (repeatable, or comma-separated; add gif for still GIFs)."
        ),
    ] = list(STILL_FORMATS),
    min_score: Annotated[int | None, typer.Option(help="Drop posts scored below this.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Drop posts created before this date (YYYY-MM-DD[ HH:MM:SS])."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after keeping this many posts.")] = None,
    keep_deleted: Annotated[bool, typer.Option(help="Keep deleted posts.")] = False,
    keep_pending: Annotated[bool, typer.Option(help="Keep posts pending approval.")] = False,
    keep_flagged: Annotated[bool, typer.Option(help="Keep posts flagged for deletion.")] = False,
    keep_untagged: Annotated[
        bool, typer.Option(help="Keep posts with no tag of any head.")
    ] = False,
    quiet: QuietOption = False,
    out: OldOut = None,
) -> None:
    """Label and split an e621 export: write DATA/manifest.jsonl, stats.json, summary.txt.

    Aliases are applied and tags closed under active implications before they are
    matched against each head's tags; posts of one family (a parent chain) share
    a split; duplicate md5s are kept once.
    """
    from furrytag_cli.dataset.build import BuildOptions, build_dataset
    from furrytag_cli.dataset.manifest import SplitRatios, summary_text

    data = either(data, out, "--data", "--out", required=True)
    options = BuildOptions(
        formats=tuple(split_commas(formats)),
        keep_deleted=keep_deleted,
        keep_pending=keep_pending,
        keep_flagged=keep_flagged,
        keep_untagged=keep_untagged,
        min_score=min_score,
        since=since,
        limit=limit,
        splits=SplitRatios.parse(splits, seed=split_seed),
    )
    report = build_dataset(export, data, _categories(categories), options, progress=not quiet)
    typer.echo(summary_text(report.stats))
    typer.echo(
        f"Wrote {report.manifest} ({report.rows / max(report.seconds, 1e-9):,.0f} rows/s); "
        f"next: furrytag dataset fetch --data {data}"
    )


@app.command("fetch")
def fetch_command(
    data: DataOption,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Fetch e621's downsized samples (JPEG, 850 px wide) instead of "
            "originals; posts without a sample get the original.",
        ),
    ] = False,
    base_url: Annotated[
        str,
        typer.Option(
            help="Server to fetch from: a mirror, or `python -m http.server -d SYNTH/site`."
        ),
    ] = E621_BASE_URL,
    user_agent: Annotated[
        str,
        typer.Option(
            envvar="FURRYTAG_USER_AGENT",
            help="User-Agent header; e621 asks for the project "
            "and a contact, e.g. 'furrytag/0.1 (by yourname on e621)'.",
        ),
    ] = DEFAULT_USER_AGENT,
    rate: Annotated[
        float,
        typer.Option(
            help="Requests per second across all workers (0: no limit, local servers only)."
        ),
    ] = 2.0,
    concurrency: Annotated[int, typer.Option(help="Parallel downloads.")] = 3,
    retries: Annotated[int, typer.Option(help="Retries per file, with exponential backoff.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 60.0,
    split: SplitOption = None,
    recheck: Annotated[
        bool,
        typer.Option(help="Verify the md5 of files already stored; refetch those that differ."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Download the manifest's images into DATA/images/ab/cd/<md5>.<ext>, verified.

    Resumable: stored files are verified before they are moved into place, and a rerun
    fetches only what is missing. Failures are listed in DATA/fetch-failures.jsonl; the
    exit code is 3 when some remain, 1 when no image could be fetched.
    """
    from furrytag_cli.dataset.images import FetchOptions, fetch_images

    options = FetchOptions(
        base_url=base_url,
        sample=sample,
        user_agent=user_agent,
        rate=rate,
        concurrency=concurrency,
        retries=retries,
        timeout=timeout,
        splits=tuple(split or SPLITS),
        recheck=recheck,
    )
    where = data / (SAMPLES if sample else IMAGES)
    typer.echo(
        f"Fetching the images of {data} from {base_url} into {where} (User-Agent: {user_agent})"
    )
    report = fetch_images(data, options, progress=not quiet)
    typer.echo(
        f"Downloaded {report.downloaded:,} ({report.bytes / 1e6:,.1f} MB) in "
        f"{report.seconds:,.1f} s; {report.present:,} already stored; {report.failed:,} failed"
    )
    if report.failed and not report.downloaded + report.present:
        raise DatasetError(
            f"none of the {report.failed:,} images could be fetched; the failures are listed "
            f"in {report.failures}"
        )
    if report.failed:
        typer.echo(
            f"Failures are listed in {report.failures}; run the command again to retry them.",
            err=True,
        )
        raise typer.Exit(PARTIAL)


@app.command("pack")
def pack_command(
    data: DataOption,
    size: Annotated[
        int, typer.Option(help="Training input size; images are stored a little larger.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Shard folder (default: DATA/shards).")
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Examples per shard.")] = 1000,
    quality: Annotated[int, typer.Option(help="JPEG quality of the stored images.")] = 90,
    split: SplitOption = None,
    workers: Annotated[
        int | None, typer.Option(help="Image threads (default: one per CPU).")
    ] = None,
    categories: CategoriesOption = None,
    quiet: QuietOption = False,
    out: OldOut = None,
) -> None:
    """Write TFRecord shards (<split>-00000-of-0000N.tfrecord) of the fetched images.

    Images that cannot be decoded are left out and listed; the exit code is then 3.
    """
    from furrytag_cli.dataset.pack import pack_dataset

    report = pack_dataset(
        data,
        size,
        _categories(categories),
        out=either(output, out, "--output", "--out"),
        shard_size=shard_size,
        quality=quality,
        splits=tuple(split or SPLITS),
        workers=workers,
        progress=not quiet,
    )
    packed = sum(report.examples.values())
    for name, count in report.examples.items():
        typer.echo(f"{name:<5} {count:>9,} examples in {len(report.shards[name])} shard(s)")
    typer.echo(
        f"Packed {packed:,} images into {report.folder} at "
        f"{packed / max(report.seconds, 1e-9):,.0f} images/s"
    )
    if report.missing:
        typer.echo(
            f"{report.missing:,} posts have no fetched image "
            f"(run `furrytag dataset fetch --data {data}`)"
        )
    failures = report.folder / "pack-failures.jsonl"
    if report.failed and not packed:
        raise DatasetError(f"none of the images could be decoded; see {failures}")
    if report.failed:
        typer.echo(
            f"{len(report.failed):,} images could not be decoded and were left out; see {failures}",
            err=True,
        )
        raise typer.Exit(PARTIAL)


@app.command("synth")
def synth_command(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder to write the synthetic export to."),
    ] = None,
    posts: Annotated[int, typer.Option(help="Number of posts.")] = 500,
    tags_per_head: Annotated[
        int | None,
        typer.Option(
            help="Use only the first K tags of each head (small K: a tiny model learns them)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed writes the same files.")
    ] = 0,
    images: Annotated[bool, typer.Option(help="Draw the images (--no-images: CSV only).")] = True,
    plain: Annotated[bool, typer.Option("--plain", help="Write .csv instead of .csv.gz.")] = False,
    categories: CategoriesOption = None,
    out: OldOut = None,
) -> None:
    """Write a synthetic e621 export with learnable images, for tests, demos and offline trials.

    Same CSV formats as e621's export; images served from OUTPUT/site with the layout of
    e621's file server. Not real data: train on it only to check a pipeline end to end.
    """
    from furrytag_cli.dataset.synth import write_synthetic

    out = either(output, out, "--output", "--out", required=True)
    report = write_synthetic(
        out,
        posts,
        seed=seed,
        tags_per_head=tags_per_head,
        categories=_categories(categories),
        images=images,
        compress=not plain,
    )
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.kinds.items()))
    typer.echo(f"Wrote {report.posts:,} posts ({kinds}) and {report.images:,} images to {out}")
    typer.echo(f"  export:     {out / 'export'}")
    typer.echo(f"  categories: {out / 'categories'}")
    if images:
        typer.echo(
            f"  images:     {out / 'site'}  (serve: python -m http.server -d {out / 'site'} 8621)"
        )
    typer.echo(
        f"Next: furrytag dataset build --export {out / 'export'} --data {out / 'data'} "
        f"--categories {out / 'categories'}"
    )


@app.command("stats")
def stats_command(
    data: DataOption,
    head: Annotated[
        list[str], typer.Option(help="Only these heads (repeatable, or comma-separated).")
    ] = [],
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json.")] = False,
    categories: CategoriesOption = None,
) -> None:
    """Print split sizes, rating balance and positives per tag and split."""
    import json

    from rich.console import Console
    from rich.table import Table

    from furrytag_cli.dataset.manifest import read_stats

    stats = read_stats(data, _categories(categories) if categories is not None else None)
    if as_json:
        typer.echo(json.dumps(stats, indent=1))
        return
    heads = split_commas(head) or list(stats["tags"])
    unknown = [h for h in heads if h not in stats["tags"]]
    if unknown:
        raise ConfigError(
            f"unknown head(s) {', '.join(unknown)}; heads are {', '.join(stats['tags'])}"
        )
    posts = stats["posts"]
    console = Console()
    splits = Table(title=f"{data}: {posts['total']:,} posts")
    for column in ("split", "posts", *stats["ratings"]["train"]):
        splits.add_column(column, justify="right")
    for name in SPLITS:
        ratings = stats["ratings"][name]
        splits.add_row(name, f"{posts[name]:,}", *(f"{n:,}" for n in ratings.values()))
    console.print(splits)
    table = Table(title="Positives per tag (red: none in that split)")
    table.add_column("head")
    table.add_column("tag")
    for name in SPLITS:
        table.add_column(name, justify="right")
    table.add_column("train %", justify="right")
    for head_name in heads:
        for tag, counts in stats["tags"][head_name].items():
            cells = [
                "[red]0[/red]" if counts[s] == 0 and posts[s] else f"{counts[s]:,}" for s in SPLITS
            ]
            share = f"{counts['train'] / posts['train']:.1%}" if posts["train"] else "-"
            table.add_row(head_name, tag, *cells, share)
    console.print(table)
