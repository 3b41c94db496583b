"""Config-like files at the edge: read with clear errors, unknown keys rejected with a hint."""

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from furrytag_cli.core.errors import ConfigError


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(
    data: Any,
    *,
    allowed: Iterable[str],
    required: Iterable[str] = (),
    where: str,
) -> Mapping[str, Any]:
    """Check that ``data`` is a mapping with only ``allowed`` keys and all ``required``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, received {type(data).__name__}")
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    return data


def read_yaml(
    path: str | Path,
    what: str,
    *,
    missing_hint: str = "",
    syntax: str = "YAML",
    error: type[Exception] = ConfigError,
) -> Any:
    """The parsed YAML document in ``path`` (JSON is YAML too).

    ``what`` names the file in errors ("model registry"); ``missing_hint`` follows the
    message for a file that does not exist; ``error`` is the exception type raised.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist{missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise error(
            f"{what} {path} is not valid {syntax}{line}{f': {problem}' if problem else ''}"
        ) from None
