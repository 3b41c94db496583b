"""What every command shares: the fixed choices, list options, and the exit codes.

The choices are ``Literal`` types, so Typer turns them into click choices: a wrong value is
a usage error naming them, ``--help`` lists them and shell completion offers them. The
library checks the same values for Python callers (tests keep the two lists equal).
"""

from pathlib import Path
from typing import Annotated, Literal, get_args

import typer

from furrytag_cli.core.errors import UsageError

Device = Literal["auto", "cpu", "gpu"]
Engine = Literal["auto", "keras", "lite", "onnx"]
Quantize = Literal["none", "dynamic", "float16"]
Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
CaptionExtension = Literal[".txt", ".caption"]

SUCCESS = 0
ERROR = 1
USAGE = 2
PARTIAL = 3
INTERRUPTED = 130

EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0    success\n"
    "  1    error (one 'Error:' line says what went wrong; --debug shows the traceback)\n"
    "  2    usage error: an unknown command or option, a value not among the choices\n"
    "  3    finished, but some inputs failed (tag, evaluate, dataset fetch, dataset pack:\n"
    "       the failures are listed)\n"
    "  130  interrupted (Ctrl-C); what was finished is kept\n"
    "  143  tag stopped by SIGTERM (129: by SIGHUP), as by Ctrl-C"
)


def split_commas(values: list[str] | None) -> list[str]:
    """A repeatable option's values, each of which may also hold a comma-separated list."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def split_choices(values: list[str] | None, choices: tuple[str, ...], option: str) -> list[str]:
    """:func:`split_commas`, refusing (as a usage error) a value that is not a choice."""
    parts = split_commas(values)
    for part in parts:
        if part not in choices:
            raise typer.BadParameter(
                f"{part!r} is not one of {', '.join(map(repr, choices))}", param_hint=option
            )
    return parts


def complete_from(choices: tuple[str, ...]):
    """Shell completion of one of ``choices`` (for list options that also take commas)."""
    return lambda incomplete: [choice for choice in choices if choice.startswith(incomplete)]


def caption_options(scope: str) -> tuple[type, type]:
    """The ``--caption-ext`` and ``--separator`` options of caption files (defaults ".txt"
    and ", "), their help starting with ``scope``: where they apply."""
    return (
        Annotated[CaptionExtension, typer.Option(help=f"{scope}: the caption files' extension.")],
        Annotated[str, typer.Option(help=f"{scope}: what separates the tags of a caption.")],
    )


def local_results(text: str, command: str) -> Path:
    """The local path of the results ``command`` reads; an object-store URI is refused
    with how to copy it down (a Path would have merged its "//" into a local name)."""
    from furrytag_cli.distributed.sources import is_uri

    if is_uri(text):
        raise UsageError(
            f"{command} reads a local file or folder; received {text}: copy the shards down "
            "first (aws s3 cp --recursive, gcloud storage cp -r) and give the local folder"
        )
    return Path(text)


class MissingOption(typer.BadParameter):
    """A usage error for a required option that Typer could not require itself."""

    def format_message(self) -> str:
        return f"Missing option '{self.param_hint}'."


def either(value, old_value, option: str, old: str, *, required: bool = False):
    """An option's value, or that of its old spelling (a hidden alias kept working)."""
    if value is not None and old_value is not None and value != old_value:
        raise typer.BadParameter(
            f"it disagrees with {old}, its old name; give one", param_hint=option
        )
    if value is None and old_value is None and required:
        raise MissingOption("", param_hint=option)
    return value if value is not None else old_value
