"""``furrytag models``: the known models, which are cached, and where."""

import json
from pathlib import Path
from typing import Annotated

import typer


def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Model cache folder (default: $FURRYTAG_HOME or the user cache)."
        ),
    ] = None,
) -> None:
    """List known models: backbone, input size, parameters, published metrics, cache state.

    Models installed with `download --url` or `--from-file` are listed after the registry's.
    """
    from furrytag_cli.store.layout import cached_models, model_dir, read_manifest
    from furrytag_cli.store.registry import load_registry

    registry = load_registry()
    rows = []
    for entry in registry.models.values():
        manifest = read_manifest(entry.name, cache_dir)
        rows.append(
            {
                "name": entry.name,
                "default": entry.name == registry.default,
                "format": entry.format,
                "backbone": entry.backbone,
                "input_size": entry.input_size,
                "params": entry.params,
                "metrics": dict(entry.metrics),
                "cached": manifest is not None,
                "path": str(model_dir(entry.name, cache_dir)),
                "sha256": (manifest or {}).get("sha256") or entry.sha256,
                "source": entry.sources[0],
            }
        )
    for name in cached_models(cache_dir):
        if name in registry.models:
            continue
        manifest = read_manifest(name, cache_dir) or {}
        rows.append(
            {
                "name": name,
                "default": False,
                "format": None,
                "backbone": None,
                "input_size": None,
                "params": None,
                "metrics": {},
                "cached": True,
                "path": str(model_dir(name, cache_dir)),
                "sha256": manifest.get("sha256"),
                "source": manifest.get("source"),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="furrytag models", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
    )
    for column in ("name", "size", "params", "F1", "R", "P", "rating", "cached"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        m = row["metrics"]
        table.add_row(
            row["name"] + (" *" if row["default"] else ""),
            str(row["input_size"] or "-"),
            row["params"] or "-",
            *(f"{m[k]:.2f}" if k in m else "-" for k in ("f1", "recall", "precision")),
            f"{m['rating_accuracy']:.3f}" if "rating_accuracy" in m else "-",
            "yes" if row["cached"] else "no",
        )
    console = Console()
    console.print(table)
    console.print("* default model. F1/R(ecall)/P(recision)/rating accuracy as published.")
    console.print(f"Cache: {model_dir('', cache_dir)}")
