"""Training configs: YAML files validated into dataclasses, with ``--set`` overrides.

A config has the sections ``model``, ``data``, ``augment``, ``loss``, ``optimizer``,
``train`` and ``export`` (see ``configs/tiny.yaml`` for every key). Unknown keys are
rejected with a "did you mean"; omitted keys take the defaults below. The resolved
config (defaults and overrides applied) is saved as ``RUN_DIR/config.yaml``.
"""

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from furrytag_cli.core.atomic import write_text
from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.resources import data_dir
from furrytag_cli.core.schema import check_keys, did_you_mean, read_yaml

RESOLVED_CONFIG = "config.yaml"
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("adamw", "lamb")
# Files of configs/ that are not training configs.
_NOT_TRAINING = ("models",)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_v2_b3"
    input_size: int = 300
    weights: str | None = "imagenet"
    hidden_units: int = 128
    dropout: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    path: str | None = None
    categories: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    shuffle_buffer: int = 4096
    cache_val: bool = True


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    crop_area: tuple[float, float] | None = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    mixup: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_area is not None and not 0 < self.crop_area[0] <= self.crop_area[1] <= 1:
            raise ConfigError(
                f"augment.crop_area must be [low, high] with 0 < low <= high <= 1; "
                f"received {list(self.crop_area)}"
            )
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ConfigError(
                f"augment.crop_ratio must be [low, high] with 0 < low <= high; "
                f"received {list(self.crop_ratio)}"
            )
        _at_least("augment.mixup", self.mixup, 0)


@dataclass(frozen=True)
class AsymmetricConfig:
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05


@dataclass(frozen=True)
class LossConfig:
    head_weights: dict[str, float] = field(default_factory=dict)
    positive_weight_power: float = 0.0
    max_positive_weight: float = 10.0
    asymmetric: AsymmetricConfig | None = None

    def __post_init__(self) -> None:
        for head, weight in self.head_weights.items():
            _at_least(f"loss.head_weights.{head}", weight, 0)
        _at_least("loss.positive_weight_power", self.positive_weight_power, 0)
        _at_least("loss.max_positive_weight", self.max_positive_weight, 1)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    lr_reference_batch: int | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    clipnorm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer.name must be one of {', '.join(OPTIMIZERS)}; received "
                f"{self.name!r}{did_you_mean(str(self.name), OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise ConfigError(f"optimizer.lr must be > 0; received lr={self.lr}")
        _at_least("optimizer.weight_decay", self.weight_decay, 0)
        _at_least("optimizer.warmup_epochs", self.warmup_epochs, 0)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                f"optimizer.min_lr_ratio must be in [0, 1]; received {self.min_lr_ratio}"
            )


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None
    freeze_backbone_epochs: int = 0
    checkpoint_every: int = 1000
    monitor: str = "val_loss"
    early_stopping: int = 0
    mixed_precision: str | bool = "auto"
    jit_compile: str | bool = "auto"
    strategy: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            _at_least(f"train.{name}", getattr(self, name), 1)
        for name in ("freeze_backbone_epochs", "checkpoint_every", "early_stopping"):
            _at_least(f"train.{name}", getattr(self, name), 0)
        if self.steps_per_epoch is not None:
            _at_least("train.steps_per_epoch", self.steps_per_epoch, 1)
        for name in ("mixed_precision", "jit_compile"):
            if getattr(self, name) not in ("auto", True, False):
                raise ConfigError(
                    f"train.{name} must be auto, true or false; received {getattr(self, name)!r}"
                )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"train.strategy must be one of {', '.join(STRATEGIES)}; received "
                f"{self.strategy!r}{did_you_mean(self.strategy, STRATEGIES)}"
            )


@dataclass(frozen=True)
class ExportConfig:
    tune_thresholds: bool = True
    min_support: int = 10
    shrinkage: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe."""

    name: str = "furrytag-model"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict:
        """Plain data for YAML (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> "TrainConfig":
        """Validate a config mapping; errors start with ``where`` (the file)."""
        check_keys(
            {} if data is None else data,
            allowed=[f.name for f in dataclasses.fields(cls)],
            where=where,
        )
        try:
            return _build(cls, data, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _at_least(name: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(f"{name} must be >= {low}; received {value}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass ``cls`` from a mapping, every value checked against the field's type."""
    data = {} if data is None else data
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, allowed=fields, where=where or "config")
    hints = typing.get_type_hints(cls)
    values = {
        key: _coerce(value, hints[key], f"{where}.{key}" if where else key)
        for key, value in data.items()
    }
    return cls(**values)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{where}: received {value!r}, which is none of the allowed kinds"
        )
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where)
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} numbers; received {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        check_keys(value, allowed=value if isinstance(value, Mapping) else (), where=where)
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, str) and _NUMBER.match(value):
            # YAML 1.1 reads 3e-4 (no dot) as a string; a number is meant.
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(f"{where} must be {names.get(kind, kind)}; received {value!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.lr=3e-4"`` → (["optimizer", "lr"], 0.0003); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise ConfigError(f"--set takes KEY.PATH=VALUE like optimizer.lr=3e-4; received {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(data: Mapping, overrides: Sequence[str]) -> dict:
    """``data`` (a raw config mapping) with each ``--set`` override applied."""
    merged = _plain(dict(data or {}))
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in top:
            sections = [f"{s}.{path[0]}" for s in top if path[0] in _settings_of(s)]
            hint = (
                f"; did you mean {' or '.join(sections)}?"
                if sections
                else did_you_mean(path[0], top)
            )
            raise ConfigError(
                f"--set {text!r}: {path[0]!r} is not a section or setting of the config{hint}"
            )
        node = merged
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(path[: depth + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return merged


def _settings_of(section: str) -> set[str]:
    """The setting names of a config section ("train" → epochs, batch_size, ...)."""
    default = getattr(TrainConfig(), section)
    return (
        {f.name for f in dataclasses.fields(default)}
        if dataclasses.is_dataclass(default)
        else set()
    )


def available_configs() -> list[str]:
    """Names of the training configs shipped with furrytag."""
    return sorted(p.stem for p in data_dir("configs").glob("*.yaml") if p.stem not in _NOT_TRAINING)


def find_config(name: str | Path) -> Path:
    """A config file from a path, or the shipped config of that name (``tiny``)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml", ".yml") and len(path.parts) == 1:
        shipped = data_dir("configs") / f"{path.stem}.yaml"
        if shipped.is_file() and path.stem not in _NOT_TRAINING:
            return shipped
    names = available_configs()
    raise ConfigError(
        f"config not found: {name}{did_you_mean(path.stem, names)}; give a YAML file or one "
        f"of the shipped configs: {', '.join(names)}"
    )


def read_config(path: Path) -> dict:
    data = read_yaml(path, "config")
    if data is None:
        raise ConfigError(
            f"config {path} is empty; start from a copy of a shipped one "
            f"({', '.join(available_configs())})"
        )
    return check_keys(
        data, allowed=[f.name for f in dataclasses.fields(TrainConfig)], where=str(path)
    )


def config_from_file(path: Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A config file with ``--set`` overrides applied, validated."""
    where = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return TrainConfig.from_dict(apply_overrides(read_config(path), overrides), where=where)


def load_config(name: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, override and validate a training config."""
    return config_from_file(find_config(name), overrides)


def save_config(config: TrainConfig, run_dir: Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml``."""
    return write_text(
        Path(run_dir) / RESOLVED_CONFIG, yaml.safe_dump(config.to_dict(), sort_keys=False)
    )
