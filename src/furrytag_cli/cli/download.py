"""``furrytag download``: fetch, verify and unpack a model into the cache."""

import dataclasses
import json
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import typer

from furrytag_cli.cli.model_options import Normalized

_ARCHIVE_SUFFIX = re.compile(r"\.(zip|tar\.gz|tgz)$", re.IGNORECASE)


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
    from furrytag_cli.store import install as store
    from furrytag_cli.store.layout import read_manifest
    from furrytag_cli.store.registry import load_registry
    from furrytag_cli.tagging.tagger import install_check

    if name and hub.is_hub(name):
        if url:
            raise typer.BadParameter("give the hf:// reference once: as NAME or as --url")
        name, url = name_option, name
    if name and name_option and name != name_option:
        raise typer.BadParameter(f"NAME {name!r} and --name {name_option!r} disagree; give one")
    name = name or name_option
    if url and from_file:
        raise typer.BadParameter("give either --url or --from-file, not both")
    if offline and (from_file or force or (url and not hub.is_hub(url))):
        raise typer.BadParameter(
            "--offline only checks a cached model (or the Hugging Face cache); drop --url, "
            "--from-file and --force, or drop --offline"
        )
    registry = load_registry()
    known = registry.models.get(name) if name else None
    pin = sha256 or (known.sha256 if known else None)
    if normalized is None and known is not None and known.format == "legacy":
        normalized = known.normalized
    check = install_check(normalized)
    progress = not quiet
    if from_file is not None:
        if not name:
            raise typer.BadParameter("--from-file needs the NAME to install the model under")
        bundle = store.install_from_file(
            name,
            from_file,
            sha256=pin,
            home=cache_dir,
            force=force,
            verify=check,
            progress=progress,
            normalized=normalized,
        )
    elif url and hub.is_hub(url):
        name = name or hub.parse(url).name
        bundle = store.install_from_hub(
            name,
            url,
            sha256=pin,
            home=cache_dir,
            force=force,
            offline=offline,
            verify=check,
            progress=progress,
            normalized=normalized,
        )
    elif url:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise typer.BadParameter(
                f"--url takes an http:// or https:// address, or hf://OWNER/REPO; received {url!r}"
            )
        name = name or _name_from_url(url)
        bundle = store.install_from_url(
            name,
            url,
            sha256=pin,
            home=cache_dir,
            force=force,
            verify=check,
            progress=progress,
            normalized=normalized,
        )
    elif not name:
        raise typer.BadParameter("give a model NAME (see `furrytag models`), or --url URL")
    elif name not in registry and force:
        manifest = read_manifest(name, cache_dir) or {}
        source = manifest.get("source", "")
        if normalized is None:
            normalized = manifest.get("normalized")
            check = install_check(normalized)
        if hub.is_hub(source):
            bundle = store.install_from_hub(
                name,
                source,
                home=cache_dir,
                force=True,
                verify=check,
                progress=progress,
                normalized=normalized,
            )
        elif source.startswith(("https:", "http:")):
            bundle = store.install_from_url(
                name,
                source,
                sha256=pin,
                home=cache_dir,
                force=True,
                verify=check,
                progress=progress,
                normalized=normalized,
            )
        else:
            raise typer.BadParameter(
                f"{name!r} is not a known model; to replace it, "
                f"pass --url URL or --from-file ARCHIVE"
            )
    elif name not in registry:
        bundle = store.ensure_model(
            name, home=cache_dir, offline=offline, verify=check, progress=progress
        )
    else:
        entry = dataclasses.replace(registry.get(name), sha256=pin)
        if force:
            bundle = store.install_entry(
                entry, home=cache_dir, force=True, verify=check, progress=progress
            )
        else:
            bundle = store.ensure_model(
                entry, home=cache_dir, offline=offline, verify=check, progress=progress
            )
    _report(name, bundle, cache_dir, as_json=as_json)


def _name_from_url(url: str) -> str:
    stem = _ARCHIVE_SUFFIX.sub("", unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    if not stem or stem in ("uc", "download", "view") or not re.fullmatch(r"[\w.-]+", stem):
        raise typer.BadParameter(f"cannot tell a model name from {url}; pass --name NAME")
    return stem


def _report(name: str, bundle: Path, cache_dir: Path | None, *, as_json: bool) -> None:
    from furrytag_cli.store.layout import model_dir, read_manifest

    manifest = read_manifest(name, cache_dir) or {}
    if as_json:
        summary = {
            "name": name,
            "source": manifest.get("source"),
            "stored": str(model_dir(name, cache_dir)),
            "bundle": str(bundle),
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
    typer.echo(f"Model   {name}")
    typer.echo(f"Source  {manifest.get('source', '?')}")
    typer.echo(f"Stored  {model_dir(name, cache_dir)}")
    typer.echo(f"Bundle  {bundle}")
    typer.echo(f"sha256  {digest} ({pinned})")
