"""The engine contract: a float32 batch (N, S, S, 3), already preprocessed per the
bundle's spec, in; per-head score arrays (and the embedding when asked) out.

Every engine (``keras``, ``lite``, ``onnx``) satisfies ``Engine``; ``choose.load_engine`` picks one.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.model.network import EMBEDDING

ENGINES = ("auto", "keras", "lite", "onnx")


@dataclass
class Scores:
    """Scores of one batch: ``heads[head]`` is (N, tags); ``rating`` is (N,)."""

    heads: dict[str, np.ndarray]
    rating: np.ndarray
    embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rating)

    @classmethod
    def from_named(cls, named: Mapping, heads: Sequence[str], *, embeddings: bool) -> "Scores":
        """Scores from arrays keyed by head name, ``rating`` (N, 1) and ``embedding``."""
        return cls(
            heads={h: np.asarray(named[h]) for h in heads},
            rating=np.asarray(named[RATING_HEAD])[:, 0],
            embedding=np.asarray(named[EMBEDDING]) if embeddings else None,
        )


def named_outputs(outputs, heads: Sequence[str], *, embeddings: bool) -> dict:
    """A model's outputs keyed by name, whether it returns a dict (native bundles) or
    a list ``[heads..., rating, (embedding)]`` (legacy models, see ``legacy.py``)."""
    if isinstance(outputs, Mapping):
        return dict(outputs)
    values = list(outputs)
    named = dict(zip(heads, values))
    named[RATING_HEAD] = values[len(heads)]
    if embeddings:
        named[EMBEDDING] = values[-1]
    return named


class Engine(Protocol):
    """What the tagger needs of an engine."""

    name: str
    bundle: Bundle
    embeddings: bool
    # "gpu" when the model runs on a GPU (batches are decoded ahead while it runs),
    # "cpu" when decoding and the model take turns on the CPU cores.
    device: str

    def __call__(self, batch) -> Scores: ...
