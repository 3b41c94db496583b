"""``furrytag export``: a model as ONNX, LiteRT or Keras, in furrytag's layout or the
wd14 taggers' layout, with a model card."""

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from furrytag_cli.cli.model_options import CacheDir, Normalized


def export_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Registry name, bundle folder/.zip, legacy SavedModel folder, or "
            "hf://OWNER/REPO[@REVISION][/SUBFOLDER].",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Folder to write (absent or empty).", show_default=False
        ),
    ],
    fmt: Annotated[
        Literal["onnx", "tflite", "keras"],
        typer.Option("--format", help="The model file's format."),
    ] = "onnx",
    layout: Annotated[
        Literal["furrytag", "wd14"],
        typer.Option(
            help="furrytag (model + furrytag.yaml: furrytag runs it) or wd14 (model.onnx + "
            "selected_tags.csv for the ComfyUI WD14 node and kohya's wd14 tagger script)."
        ),
    ] = "furrytag",
    size: Annotated[
        int,
        typer.Option(help="wd14: the fixed input size (kohya's script feeds 448 only)."),
    ] = 448,
    license: Annotated[
        str | None,
        typer.Option(help="Licence id for the model card (e.g. mit, cc-by-nc-4.0)."),
    ] = None,
    normalized: Normalized = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    offline: Annotated[
        bool, typer.Option(help="Never use the network; the model must be cached.")
    ] = False,
    cache_dir: CacheDir = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress; only the files written.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export a model for ONNX Runtime, LiteRT or Keras, or for the WD14 tagger tools."""
    from furrytag_cli.export.folder import check_request, export_model
    from furrytag_cli.tagging.tagger import resolve_bundle

    bundle = resolve_bundle(
        model, home=cache_dir, offline=offline, progress=not quiet, normalized=normalized
    )
    check_request(bundle, fmt, layout)
    if not quiet:
        typer.echo(f"Exporting {bundle.name} ({bundle.kind}) as {fmt}, {layout} layout…", err=True)
    done = export_model(
        bundle,
        output,
        fmt=fmt,
        layout=layout,
        size=size,
        license=license,
        overwrite=overwrite,
    )
    if as_json:
        summary = {
            "model": bundle.model_id,
            "folder": str(done.folder),
            "format": fmt,
            "layout": layout,
            "files": done.sizes,
            "seconds": round(done.seconds, 2),
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    for name, nbytes in done.sizes.items():
        typer.echo(f"{done.folder / name}  {nbytes / 1e6:.1f} MB")
    if not quiet:
        typer.echo(f"Exported in {done.seconds:.1f} s", err=True)
