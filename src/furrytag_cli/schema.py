"""Validation of config-like mappings at the edge: unknown keys rejected with a hint."""

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from furrytag_cli.errors import ConfigError


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
