"""Known models (``configs/models.yaml``): where to fetch them and what they are."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.resources import data_dir
from furrytag_cli.core.schema import check_keys, did_you_mean, read_yaml

_ENTRY_KEYS = (
    "format",
    "backbone",
    "input_size",
    "normalized",
    "params",
    "google_drive_id",
    "url",
    "sources",
    "sha256",
    "metrics",
    "notes",
)
_METRIC_KEYS = ("f1", "recall", "precision", "rating_accuracy")
_FORMATS = ("legacy", "native")


@dataclass(frozen=True)
class ModelEntry:
    """One known model."""

    name: str
    format: str
    backbone: str
    input_size: int
    normalized: bool
    params: str
    google_drive_id: str | None = None
    url: str | None = None
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    notes: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """Where the model is fetched from, tried in order: its ``google_drive_id`` or
        ``url``, then its further ``sources`` (URLs or ``hf://`` references)."""
        first = (
            [self.url]
            if self.url
            else [f"https://drive.google.com/uc?export=download&id={self.google_drive_id}"]
            if self.google_drive_id
            else []
        )
        return (*first, *self.mirrors)


@dataclass(frozen=True)
class Registry:
    """The known models and the default one."""

    models: Mapping[str, ModelEntry]
    default: str

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; a clear error (with a suggestion) when unknown."""
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(
                f"unknown model {name!r}{did_you_mean(name, self.models)}; known models: "
                f"{', '.join(self.models)} (see `furrytag models`)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.models


def load_registry(path: Path | None = None) -> Registry:
    """Load and validate the registry file.

    Default: ``$FURRYTAG_REGISTRY`` when set (a registry of your own: mirrors, private
    models), else the shipped ``models.yaml``.
    """
    if path is None:
        path = os.environ.get("FURRYTAG_REGISTRY") or data_dir("configs") / "models.yaml"
    path = Path(path)
    raw = read_yaml(
        path,
        "model registry",
        missing_hint="; unset FURRYTAG_REGISTRY or point it at a models.yaml",
    )
    where = str(path)
    check_keys(raw, allowed=("default", "models"), required=("default", "models"), where=where)
    check_keys(raw["models"], allowed=raw["models"] or (), where=f"{where}: models")
    models = {name: _entry(name, spec, where) for name, spec in raw["models"].items()}
    if raw["default"] not in models:
        raise ConfigError(
            f"{where}: default model {raw['default']!r} is not among the models"
            f"{did_you_mean(str(raw['default']), models)}"
        )
    return Registry(models=models, default=raw["default"])


def _entry(name: str, spec: object, where: str) -> ModelEntry:
    where = f"{where}: model {name!r}"
    check_keys(
        spec,
        allowed=_ENTRY_KEYS,
        required=("format", "backbone", "input_size", "normalized", "params"),
        where=where,
    )
    if spec["format"] not in _FORMATS:
        raise ConfigError(
            f"{where}: format must be one of {', '.join(_FORMATS)}; received {spec['format']!r}"
        )
    mirrors = spec.get("sources") or []
    if not isinstance(mirrors, list) or not all(
        isinstance(m, str) and m.startswith(("http://", "https://", "hf://")) for m in mirrors
    ):
        raise ConfigError(
            f"{where}: sources must be a list of http(s):// URLs or hf://OWNER/REPO "
            f"references; received {mirrors!r}"
        )
    if not spec.get("google_drive_id") and not spec.get("url") and not mirrors:
        raise ConfigError(
            f"{where}: needs a `google_drive_id`, a `url` or `sources` to fetch it from"
        )
    if not isinstance(spec["input_size"], int) or spec["input_size"] <= 0:
        raise ConfigError(
            f"{where}: input_size must be a positive integer; received {spec['input_size']!r}"
        )
    sha = spec.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ConfigError(f"{where}: sha256 must be 64 hex digits or null; received {sha!r}")
    metrics = check_keys(spec.get("metrics") or {}, allowed=_METRIC_KEYS, where=f"{where}: metrics")
    return ModelEntry(
        name=name,
        format=spec["format"],
        backbone=spec["backbone"],
        input_size=spec["input_size"],
        normalized=bool(spec["normalized"]),
        params=str(spec["params"]),
        google_drive_id=spec.get("google_drive_id"),
        url=spec.get("url"),
        mirrors=tuple(mirrors),
        sha256=sha.lower() if sha else None,
        metrics=dict(metrics),
        notes=spec.get("notes"),
    )
