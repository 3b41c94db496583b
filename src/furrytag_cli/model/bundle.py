"""Model bundles: everything needed to run a model, in one folder (or a .zip of one).

Native bundle: ``furrytag.yaml`` (metadata) + ``model.keras`` (weights, loaded with
Keras safe mode), or an export of one (``furrytag export``) holding ``model.onnx`` or
``model.tflite`` instead. Legacy bundle: the original project's Keras-2 SavedModel folder
(``saved_model.pb``), at any depth inside the given path; its metadata is derived from
the registry and the categories (see ``legacy.py``).
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import yaml

from furrytag_cli import __version__
from furrytag_cli.core.atomic import write_text
from furrytag_cli.core.errors import BundleError, CategoryError, ConfigError
from furrytag_cli.core.schema import check_keys, read_yaml
from furrytag_cli.model.categories import CategorySet, RatingSpec
from furrytag_cli.model.preprocess import PreprocessSpec

METADATA = "furrytag.yaml"
WEIGHTS = "model.keras"
ONNX_WEIGHTS = "model.onnx"
TFLITE_WEIGHTS = "model.tflite"
# The model files a native bundle may hold, in the order one is preferred.
MODEL_FILES = (WEIGHTS, ONNX_WEIGHTS, TFLITE_WEIGHTS)
FORMAT = "furrytag-bundle"
FORMAT_VERSION = 1
_KEYS = (
    "format",
    "format_version",
    "name",
    "backbone",
    "preprocess",
    "heads",
    "rating",
    "threshold",
    "thresholds",
    "metrics",
    "provenance",
    "implications",
)


@dataclass
class Bundle:
    """A model on disk and what it means."""

    path: Path
    kind: str
    name: str
    backbone: str
    categories: CategorySet
    preprocess: PreprocessSpec
    threshold: float = 0.5
    thresholds: Mapping | None = None
    metrics: Mapping = field(default_factory=dict)
    provenance: Mapping = field(default_factory=dict)
    implications: Mapping[str, list[str]] | None = None  # {tag: the model tags it implies}
    # The model file of a native bundle (one of MODEL_FILES).
    weights: str = WEIGHTS

    def has(self, model_file: str) -> bool:
        """Whether the bundle's folder holds ``model_file`` (e.g. ``model.onnx``)."""
        return self.kind == "native" and (self.path / model_file).is_file()

    @property
    def rating(self) -> RatingSpec:
        return self.categories.rating

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    def fingerprint(self) -> str:
        """A short content hash of the model's files, identifying it in resume indexes and
        score caches."""
        return self._content_hash

    @cached_property
    def _content_hash(self) -> str:
        # Read once per Bundle: the files can be hundreds of MB.
        digest = hashlib.sha256()
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        for file in files:
            digest.update(str(file.relative_to(self.path)).encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()[:16]

    @property
    def model_id(self) -> str:
        """``name@fingerprint``: the model and its weights, as outputs and caches record it."""
        return f"{self.name}@{self.fingerprint()}"

    def metadata(self) -> dict:
        """The native metadata dict (what ``furrytag.yaml`` holds)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "backbone": self.backbone,
            "preprocess": self.preprocess.to_dict(),
            "heads": [{"name": h, "tags": list(t)} for h, t in self.categories.heads.items()],
            "rating": {"cuts": list(self.rating.cuts), "labels": list(self.rating.labels)},
            "threshold": self.threshold,
            "thresholds": dict(self.thresholds) if self.thresholds else None,
            "metrics": dict(self.metrics),
            "provenance": dict(self.provenance),
            "implications": dict(self.implications) if self.implications else None,
        }


def save_bundle(model, path: Path, bundle: Bundle) -> Bundle:
    """Write ``model`` and ``bundle``'s metadata as a native bundle folder at ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _check_widths(bundle, _model_widths(model), where=str(path))
    model.save(path / WEIGHTS)
    provenance = {
        "furrytag_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **dict(bundle.provenance),
    }
    saved = Bundle(
        **{
            **bundle.__dict__,
            "path": path,
            "kind": "native",
            "provenance": provenance,
            "weights": WEIGHTS,
        }
    )
    write_metadata(saved)
    return saved


def write_metadata(bundle: Bundle) -> None:
    """Rewrite a native bundle's ``furrytag.yaml`` atomically (e.g. with tuned thresholds)."""
    write_text(bundle.path / METADATA, yaml.safe_dump(bundle.metadata(), sort_keys=False))


def read_native(root: Path) -> Bundle:
    """A native bundle's metadata from ``root/furrytag.yaml`` (weights are loaded later)."""
    where = str(root / METADATA)
    meta = read_yaml(root / METADATA, "bundle metadata", error=BundleError)
    try:
        check_keys(
            meta,
            allowed=_KEYS,
            required=("format", "format_version", "name", "preprocess", "heads"),
            where=where,
        )
        if meta["format"] != FORMAT:
            raise ConfigError(f"{where}: format must be {FORMAT!r}; received {meta['format']!r}")
        if meta["format_version"] > FORMAT_VERSION:
            raise ConfigError(
                f"{where}: format_version {meta['format_version']} is newer than this furrytag "
                f"understands ({FORMAT_VERSION}); upgrade furrytag"
            )
        heads = {}
        for spec in meta["heads"]:
            check_keys(
                spec, allowed=("name", "tags"), required=("name", "tags"), where=f"{where}: heads"
            )
            heads[spec["name"]] = tuple(spec["tags"])
        rating = meta.get("rating") or {}
        check_keys(rating, allowed=("cuts", "labels"), where=f"{where}: rating")
        rating_spec = RatingSpec(
            cuts=tuple(rating.get("cuts", RatingSpec().cuts)),
            labels=tuple(rating.get("labels", RatingSpec().labels)),
        )
        categories = CategorySet(heads=heads, rating=rating_spec)
        preprocess = PreprocessSpec.from_dict(meta["preprocess"], where=f"{where}: preprocess")
        implications = _implications(meta.get("implications"), where)
    except (ConfigError, CategoryError) as exc:
        raise BundleError(str(exc)) from None
    weights = next((f for f in MODEL_FILES if (root / f).is_file()), None)
    if weights is None:
        raise BundleError(
            f"bundle {root} has metadata but no model file ({' or '.join(MODEL_FILES)})"
        )
    return Bundle(
        path=root,
        kind="native",
        name=meta["name"],
        backbone=meta.get("backbone", "unknown"),
        categories=categories,
        preprocess=preprocess,
        threshold=float(meta.get("threshold", 0.5)),
        thresholds=meta.get("thresholds"),
        metrics=meta.get("metrics") or {},
        provenance=meta.get("provenance") or {},
        implications=implications,
        weights=weights,
    )


def _implications(value, where: str) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in value.values()
    ):
        raise ConfigError(
            f"{where}: implications must map each tag to a list of the tags it implies"
        )
    return {str(tag): list(implied) for tag, implied in value.items()}


def _model_widths(model) -> dict[str, int]:
    outputs = model.output
    if not isinstance(outputs, Mapping):
        raise BundleError(
            f"model outputs must be a dict keyed by head name; received {type(outputs).__name__}"
        )
    return {name: int(tensor.shape[-1]) for name, tensor in outputs.items()}


def check_model_matches(bundle: Bundle, model) -> None:
    """Fail clearly when the weights' input size or outputs disagree with the metadata."""
    size = bundle.preprocess.size
    height, width = tuple(model.inputs[0].shape)[1:3]
    if (height, width) != (size, size) and None not in (height, width):
        raise BundleError(
            f"{bundle.path}: the metadata says images are resized to {size} px but the model "
            f"takes {height}x{width}; the bundle is inconsistent — re-export it"
        )
    _check_widths(bundle, _model_widths(model), where=str(bundle.path))


def _check_widths(bundle: Bundle, widths: Mapping[str, int], *, where: str) -> None:
    expected = {h: len(t) for h, t in bundle.categories.heads.items()}
    expected["rating"] = 1
    if set(widths) != set(expected):
        raise BundleError(
            f"{where}: the model's outputs {sorted(widths)} differ from the heads in the metadata "
            f"{sorted(expected)}; the bundle is inconsistent — re-export or re-download it"
        )
    for head, width in expected.items():
        if widths[head] != width:
            raise BundleError(
                f"{where}: head {head!r} lists {width} tags in the metadata but the model "
                f"outputs {widths[head]} scores; the bundle is inconsistent — re-export it"
            )
