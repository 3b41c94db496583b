"""The preprocessing a bundle declares, and its TensorFlow and numpy implementations.

A decoded image (uint8, H×W×3 RGB) becomes the model input (float32, S×S×3):
resize to S×S (aspect ratio not kept, bilinear) → ``x * scale`` → ``(x - mean) / std``.
Legacy models use the original project's exact recipe: no antialiasing, scale 1/255,
and for "normalized" models mean 0.5 and std 0.225 per channel.

``preprocess_image`` runs in TensorFlow (tf.data on GPUs, training, evaluation);
``preprocess_array`` is the same in numpy (tagging on a CPU without TensorFlow).
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.schema import check_keys
from furrytag_cli.model.resize import resize

ALPHA_MODES = ("drop", "white")


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects of its input images."""

    size: int
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    antialias: bool = True
    alpha: str = "white"
    exif: bool = True
    decoder: str = field(default="standard")

    def __post_init__(self) -> None:
        if self.alpha not in ALPHA_MODES:
            raise ConfigError(
                f"preprocess.alpha must be one of {', '.join(ALPHA_MODES)}; received {self.alpha!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(
                f"preprocess.mean and std need 3 values, std > 0; received mean={self.mean}, std={self.std}"
            )

    @classmethod
    def legacy(cls, size: int, normalized: bool) -> "PreprocessSpec":
        """The original project's preprocessing."""
        return cls(
            size=size,
            scale=1 / 255.0,
            mean=(0.5, 0.5, 0.5) if normalized else (0.0, 0.0, 0.0),
            std=(0.225, 0.225, 0.225) if normalized else (1.0, 1.0, 1.0),
            antialias=False,
            alpha="drop",
            exif=False,
            decoder="legacy",
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "preprocess") -> "PreprocessSpec":
        check_keys(
            data, allowed=[f for f in cls.__dataclass_fields__], required=["size"], where=where
        )
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


def preprocess_image(image, spec: PreprocessSpec):
    """TF ops: uint8 (H, W, 3) or (N, H, W, 3) → float32 model input per ``spec``."""
    import tensorflow as tf

    x = tf.image.resize(image, [spec.size, spec.size], antialias=spec.antialias)
    if spec.decoder == "legacy":
        # The original: tf.image.resize(...) / 255.0, then (x - 0.5) / 0.225 if normalized.
        x = x / 255.0
        if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
            x = (x - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)
        return x
    x = x * spec.scale
    return (x - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)


def preprocess_array(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """numpy: uint8 (H, W, 3) (or float32 already S×S) → float32 model input per ``spec``,
    the same float32 operations in the same order as ``preprocess_image``."""
    x = resize(image, spec.size, antialias=spec.antialias)
    if spec.decoder == "legacy":
        x = x / np.float32(255.0)
        if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
            x = (x - np.float32(spec.mean)) / np.float32(spec.std)
        return x
    x = x * np.float32(spec.scale)
    return (x - np.float32(spec.mean)) / np.float32(spec.std)
