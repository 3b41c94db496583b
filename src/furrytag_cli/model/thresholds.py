"""Decision thresholds per tag: the ``Thresholds`` type and the files that hold them.

A tag is predicted when its score is strictly greater than its threshold. The threshold
of a tag is its own value if it has one, else its head's, else the global one. Tuning them on
labelled data is ``evaluation.tuning``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from furrytag_cli.core.atomic import write_text
from furrytag_cli.core.errors import ConfigError, OutputError
from furrytag_cli.core.schema import check_keys, did_you_mean, read_yaml

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Global, per-head and per-tag thresholds; ``default`` is stored under ``global``.

    ``model`` (``name@fingerprint``, optional) is the model they were tuned for.
    """

    default: float = DEFAULT_THRESHOLD
    per_head: Mapping[str, float] = field(default_factory=dict)
    per_tag: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)  # a file, named in errors
    model: str | None = field(default=None, compare=False)

    @property
    def _named(self) -> str:
        return f"thresholds in {self.source}" if self.source else "thresholds"

    def vector(self, head: str, tags: Sequence[str]) -> np.ndarray:
        """(T,) thresholds of ``head``'s ``tags`` in order; unknown tag names are an error."""
        own = self.per_tag.get(head, {})
        unknown = [t for t in own if t not in tags]
        if unknown:
            raise ConfigError(
                f"{self._named} name tag {unknown[0]!r} of head {head!r}, which the model does not "
                f"have{did_you_mean(unknown[0], tags)}; remove it or use the matching model"
            )
        fallback = self.per_head.get(head, self.default)
        return np.array([own.get(tag, fallback) for tag in tags], dtype=np.float64)

    def vectors(self, tags: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
        """Per-head threshold vectors for the tag lists ``tags`` ({head: tags})."""
        for head in (*self.per_head, *self.per_tag):
            if head not in tags:
                raise ConfigError(
                    f"{self._named} name head {head!r}, which the model does not have"
                    f"{did_you_mean(head, tags)}; its heads are {', '.join(tags)}"
                )
        return {head: self.vector(head, head_tags) for head, head_tags in tags.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a YAML or JSON file: ``{"global", "per_head", "per_tag"}`` (and
        ``"model"`` when known)."""
        data = {"model": self.model} if self.model is not None else {}
        return data | {
            "global": float(self.default),
            "per_head": {h: float(t) for h, t in self.per_head.items()},
            "per_tag": {
                h: {t: float(v) for t, v in tags.items()} for h, tags in self.per_tag.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "thresholds") -> "Thresholds":
        """Validate and load what :meth:`to_dict` wrote; ``where`` names the source in errors."""
        check_keys(
            data,
            allowed=("global", "per_head", "per_tag", "model"),
            required=("global",),
            where=where,
        )
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"{where}.model must be a model name@fingerprint; received {model!r}")
        per_head = _mapping(data.get("per_head"), f"{where}.per_head")
        per_tag = _mapping(data.get("per_tag"), f"{where}.per_tag")
        return cls(
            default=_threshold(data["global"], f"{where}.global"),
            per_head={str(h): _threshold(v, f"{where}.per_head.{h}") for h, v in per_head.items()},
            per_tag={
                str(h): {
                    str(t): _threshold(v, f"{where}.per_tag.{h}.{t}")
                    for t, v in _mapping(tags, f"{where}.per_tag.{h}").items()
                }
                for h, tags in per_tag.items()
            },
            model=model,
        )


def load_thresholds(path: str | Path) -> Thresholds:
    """Thresholds from a YAML or JSON file, as ``furrytag evaluate --save-thresholds`` writes."""
    data = read_yaml(
        path,
        "thresholds file",
        syntax="YAML or JSON",
        missing_hint="; write one with furrytag evaluate ... --save-thresholds FILE",
    )
    return replace(Thresholds.from_dict(data, where=str(path)), source=str(path))


def save_thresholds(thresholds: Thresholds, path: str | Path) -> Path:
    """Write ``thresholds`` to a YAML file that ``load_thresholds`` reads back."""
    import yaml

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, yaml.safe_dump(thresholds.to_dict(), sort_keys=False))
    except OSError as exc:
        raise OutputError(f"cannot write thresholds to {path}: {exc.strerror or exc}") from None
    return path


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A mapping keyed by head or tag names (None reads as empty)."""
    value = {} if value is None else value
    return check_keys(value, allowed=value if isinstance(value, Mapping) else (), where=where)


def _threshold(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{where} must be a number from 0 to 1; received {value!r}")
    return float(value)
