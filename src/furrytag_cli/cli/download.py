"""``furrytag download``: fetch, verify and unpack a model into the cache."""

import json
from pathlib import Path
from typing import Annotated

import typer

from furrytag_cli.cli.model_options import Normalized


def download_command(
    name: Annotated[
        str | None,
        typer.Argument(
            help="A known model (see `furrytag models`), hf://OWNER/REPO[@REVISION][/SUBFOLDER], "
            "or the name to install a --url or --from-file model under."
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Fetch from this URL instead (a mirror or any zip/tar.gz; "
            "Google Drive share links work; hf://OWNER/REPO too).",
        ),
    ] = None,
    name_option: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name to install a --url or hf:// model under (default: the URL's file name "
            "or the repository's name).",
        ),
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256", help="Expected sha256 of the archive; on a mismatch nothing is installed."
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Install an archive or a model's folder already on disk (with NAME).",
        ),
    ] = None,
    normalized: Normalized = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even when cached, replacing the copy.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never use the network: check the cached copy.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Model cache folder (default: $FURRYTAG_HOME or the user cache)."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or notes; only the summary.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fetch a model, check its sha256, and unpack it into the cache."""
    from furrytag_cli.store import hub
    from furrytag_cli.store.install import install_model
    from furrytag_cli.tagging.tagger import install_check

    if name and hub.is_hub(name):
        if url:
            raise typer.BadParameter("give the hf:// reference once: as NAME or as --url")
        name, url = name_option, name
    if name and name_option and name != name_option:
        raise typer.BadParameter(f"NAME {name!r} and --name {name_option!r} disagree; give one")
    installed = install_model(
        name or name_option,
        url=url,
        from_file=from_file,
        sha256=sha256,
        force=force,
        normalized=normalized,
        offline=offline,
        home=cache_dir,
        progress=not quiet,
        verify_for=install_check,
    )
    manifest = installed.manifest
    if as_json:
        summary = {
            "name": installed.name,
            "source": manifest.get("source"),
            "stored": str(installed.folder),
            "bundle": str(installed.bundle),
            "sha256": manifest.get("sha256"),
            "pinned": bool(manifest.get("pinned")),
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    digest = manifest.get("sha256", "?")
    pinned = (
        "pinned"
        if manifest.get("pinned")
        else (f"recorded on first use; pin it with --sha256 {digest}")
    )
    typer.echo(f"Model   {installed.name}")
    typer.echo(f"Source  {manifest.get('source', '?')}")
    typer.echo(f"Stored  {installed.folder}")
    typer.echo(f"Bundle  {installed.bundle}")
    typer.echo(f"sha256  {digest} ({pinned})")
