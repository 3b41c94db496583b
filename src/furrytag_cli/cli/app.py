"""The ``furrytag`` Typer app: global options, command registration, error mapping.

Help is click's plain layout (``rich_markup_mode=None``): Typer's rich help pulls in
rich's Markdown renderer and markdown-it, which would double the time of ``--help``.
"""

import os
import sys
from typing import Annotated

import typer

from furrytag_cli import __version__
from furrytag_cli.cli import (
    dataset,
    download,
    evaluate,
    export,
    gallery,
    models,
    retag,
    tag,
    train,
)
from furrytag_cli.cli.conventions import ERROR, EXIT_CODES, INTERRUPTED, SUCCESS, USAGE
from furrytag_cli.core.errors import FurrytagError, Interrupted, UsageError

app = typer.Typer(
    name="furrytag",
    help="Tag furry artwork with e621-style tags using a multi-head Keras model.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.command("models")(models.models_command)
app.command("download")(download.download_command)
app.command("tag")(tag.tag_command)
app.command("retag")(retag.retag_command)
app.command("train")(train.train_command)
app.add_typer(dataset.app, name="dataset")
app.command("evaluate")(evaluate.evaluate_command)
app.command("gallery")(gallery.gallery_command)
app.command("export")(export.export_command)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"furrytag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show full tracebacks on errors (may also follow the command)."
        ),
    ] = False,
) -> None:
    _state["debug"] = debug or bool(os.environ.get("FURRYTAG_DEBUG"))


def main() -> None:
    """Entry point: run the app, turn library errors into one line and an exit code."""
    try:
        code = app(args=_debug_first(sys.argv[1:]), prog_name="furrytag", standalone_mode=False)
    except Interrupted as exc:
        typer.echo(f"Interrupted: {exc}", err=True)
        sys.exit(INTERRUPTED)
    except FurrytagError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(USAGE if isinstance(exc, UsageError) else ERROR)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(INTERRUPTED)
    except OSError as exc:
        # A file system refusal nobody foresaw (a full disk on stdout, a read-only folder).
        if _state["debug"] or isinstance(exc, BrokenPipeError):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(
            f"Error: {exc.strerror or exc}{where} (--debug shows where it happened)", err=True
        )
        sys.exit(ERROR)
    except Exception as exc:
        # Usage errors from Typer's parser carry their own message and exit code (2).
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else SUCCESS)


def _debug_first(args: list[str]) -> list[str]:
    """Move ``--debug`` given after the command (before any ``--``) to the front."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for i, a in enumerate(args) if i >= end or a != "--debug")]
