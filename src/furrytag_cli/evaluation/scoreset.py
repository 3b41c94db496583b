"""Scores and true labels of one data split, and their ``.npz`` cache.

Evaluating a model is slow and re-scoring its outputs is fast: ``evaluate --scores
FILE.npz`` keeps the model's scores so that other thresholds or cut points can be tried
without running the model again.
"""

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from furrytag_cli.core.atomic import AtomicFile
from furrytag_cli.core.errors import FurrytagError, OutputError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScoreSet:
    """Per multi-label head: tag names, (N, T) 0/1 labels and (N, T) scores; the rating.

    ``rating_true`` holds targets (safe 0, questionable 0.5, explicit 1), ``rating_score``
    the rating head's outputs; both are (N,) or both None. ``meta`` is free text (model
    name, split) stored with the cache so a caller can check it belongs to its run.
    Labels are stored as bool and integer scores as float64.
    """

    tags: Mapping[str, tuple[str, ...]]
    y_true: Mapping[str, np.ndarray]
    scores: Mapping[str, np.ndarray]
    rating_true: np.ndarray | None = None
    rating_score: np.ndarray | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        heads = list(self.tags)
        if not heads:
            raise FurrytagError("a score set needs at least one multi-label head; received none")
        for name, mapping in (("labels", self.y_true), ("scores", self.scores)):
            if list(mapping) != heads:
                raise FurrytagError(
                    f"{name} are given for heads {list(mapping)} but the tags for heads "
                    f"{heads}; give both for the same heads in the same order"
                )
        images = None
        y_true, scores = {}, {}
        for head in heads:
            y, s = np.asarray(self.y_true[head]), np.asarray(self.scores[head])
            images = (len(y) if y.ndim else 0) if images is None else images
            if images == 0:
                raise FurrytagError("a score set needs at least one image; received none")
            for name, array in (("labels", y), ("scores", s)):
                if array.shape != (images, len(self.tags[head])):
                    raise FurrytagError(
                        f"head {head!r}: {name} have shape {array.shape}; expected "
                        f"({images}, {len(self.tags[head])}) (images × tags of the head)"
                    )
            if not np.isin(y, (0, 1)).all():
                raise FurrytagError(f"head {head!r}: labels must be 0 or 1; found other values")
            if not np.issubdtype(s.dtype, np.floating):
                s = s.astype(np.float64)
            if not np.isfinite(s).all():
                raise FurrytagError(
                    f"head {head!r}: scores contain NaN or infinity; the model's outputs are invalid"
                )
            y_true[head], scores[head] = y.astype(bool), s
        object.__setattr__(self, "tags", {h: tuple(self.tags[h]) for h in heads})
        object.__setattr__(self, "y_true", y_true)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "meta", {str(k): str(v) for k, v in self.meta.items()})
        self._check_rating(images)

    def _check_rating(self, images: int) -> None:
        if (self.rating_true is None) != (self.rating_score is None):
            raise FurrytagError("give both rating targets and rating scores, or neither")
        if self.rating_true is None:
            return
        for name in ("rating_true", "rating_score"):
            array = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if array.shape != (images,) or not np.isfinite(array).all():
                raise FurrytagError(
                    f"{name} must hold {images} finite numbers (one per image); "
                    f"received shape {np.shape(getattr(self, name))}"
                )
            object.__setattr__(self, name, array)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.tags)

    @property
    def images(self) -> int:
        return len(next(iter(self.y_true.values())))

    def pooled(self, heads: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """1-D labels and scores of all tags of ``heads`` (default: every head)."""
        heads = self.heads if heads is None else heads
        y = np.concatenate([self.y_true[h].reshape(-1) for h in heads])
        s = np.concatenate([self.scores[h].reshape(-1) for h in heads])
        return y, s

    def save(self, path: Path) -> Path:
        """Write the set to ``path`` (.npz, compressed), replacing it atomically."""
        path = Path(path)
        arrays = {"format_version": np.array(FORMAT_VERSION), "heads": np.array(self.heads)}
        arrays["meta"] = np.array(json.dumps(dict(self.meta)))
        for head in self.heads:
            arrays[f"tags.{head}"] = np.array(self.tags[head], dtype=str)
            arrays[f"y_true.{head}"] = self.y_true[head]
            arrays[f"scores.{head}"] = self.scores[head]
        if self.rating_true is not None:
            arrays["rating_true"], arrays["rating_score"] = self.rating_true, self.rating_score
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with AtomicFile(path) as handle:
                np.savez_compressed(handle, **arrays)
        except OSError as exc:
            raise OutputError(
                f"cannot write scores cache {path}: {exc.strerror or exc}; choose a writable path"
            ) from None
        return path

    @classmethod
    def load(cls, path: Path) -> "ScoreSet":
        """Read a set written by :meth:`save`."""
        path = Path(path)
        hint = "delete it (or pass another --scores path) to score the model again"
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != FORMAT_VERSION:
                    raise FurrytagError(
                        f"scores cache {path} has format version {version}; this furrytag "
                        f"reads version {FORMAT_VERSION}; {hint}"
                    )
                heads = [str(h) for h in data["heads"]]
                fields = {
                    "tags": {h: tuple(str(t) for t in data[f"tags.{h}"]) for h in heads},
                    "y_true": {h: data[f"y_true.{h}"] for h in heads},
                    "scores": {h: data[f"scores.{h}"] for h in heads},
                    "meta": json.loads(str(data["meta"])),
                }
                if "rating_true" in data.files:
                    fields["rating_true"] = data["rating_true"]
                    fields["rating_score"] = data["rating_score"]
        except FileNotFoundError:
            raise FurrytagError(f"scores cache {path} does not exist; check the path") from None
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise FurrytagError(
                f"scores cache {path} is unreadable or incomplete ({exc}); {hint}"
            ) from None
        try:
            return cls(**fields)
        except FurrytagError as exc:
            raise FurrytagError(f"scores cache {path}: {exc}; {hint}") from None
