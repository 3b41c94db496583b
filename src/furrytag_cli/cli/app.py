"""The ``furrytag`` Typer app: global options, command registration, error mapping."""

import os
import sys
from typing import Annotated

import typer

from furrytag_cli import __version__
from furrytag_cli.cli import dataset, download, evaluate, gallery, models, tag, train
from furrytag_cli.core.errors import FurrytagError, Interrupted

app = typer.Typer(
    name="furrytag",
    help="Tag furry artwork with e621-style tags using a multi-head Keras model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("models")(models.models_command)
app.command("download")(download.download_command)
app.command("tag")(tag.tag_command)
app.command("train")(train.train_command)
app.add_typer(dataset.app, name="dataset")
app.command("evaluate")(evaluate.evaluate_command)
app.command("gallery")(gallery.gallery_command)

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
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug or bool(os.environ.get("FURRYTAG_DEBUG"))


def main() -> None:
    """Entry point: run the app, turn library errors into one line and an exit code."""
    try:
        code = app(standalone_mode=False)
    except Interrupted as exc:
        typer.echo(f"Interrupted: {exc}", err=True)
        sys.exit(130)
    except FurrytagError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except OSError as exc:
        # A file system refusal nobody foresaw (a full disk on stdout, a read-only folder).
        if _state["debug"] or isinstance(exc, BrokenPipeError):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(
            f"Error: {exc.strerror or exc}{where} (--debug shows where it happened)", err=True
        )
        sys.exit(1)
    except Exception as exc:
        # Usage errors from Typer's parser carry their own message and exit code (2).
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
