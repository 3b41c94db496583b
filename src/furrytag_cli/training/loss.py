"""Training losses: per multi-label head, binary cross-entropy summed over the head's tags.

Optional per-tag positive weights (rare tags count more, from their frequency) and the
asymmetric loss of Ridnik et al. (easy negatives down-weighted by ``p ** gamma_neg``
after shifting probabilities down by ``clip``). The rating head is one sigmoid trained
with binary cross-entropy on targets safe 0, questionable 0.5, explicit 1, so its score
orders the three classes and the bins (cut points) stay adjustable after training.
"""

from collections.abc import Mapping

import numpy as np

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.schema import did_you_mean
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.training.config import LossConfig

_EPSILON = 1e-7


def positive_weights(fractions: np.ndarray, power: float, maximum: float) -> np.ndarray:
    """Weights of the positive term per tag: ``((1 - f) / f) ** power``, within [1, maximum]."""
    f = np.clip(np.asarray(fractions, dtype=np.float64), 1e-6, 1.0)
    return np.clip(((1 - f) / f) ** power, 1.0, maximum).astype(np.float32)


def tag_loss(
    weights: np.ndarray | None = None,
    *,
    gamma_neg: float = 0.0,
    gamma_pos: float = 0.0,
    clip: float = 0.0,
    name: str = "tag_loss",
):
    """A per-example loss ``(y_true, y_pred) → (N,)`` over sigmoid scores of one head."""
    tf = tensorflow()
    weight = None if weights is None else tf.constant(weights, tf.float32)

    def loss(y_true, y_pred):
        y = tf.cast(y_true, tf.float32)
        p = tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPSILON, 1 - _EPSILON)
        shifted = tf.maximum(p - clip, 0.0) if clip else p
        positive = y * tf.math.log(p)
        negative = (1 - y) * tf.math.log(tf.maximum(1 - shifted, _EPSILON))
        if gamma_pos:
            positive *= tf.pow(1 - p, gamma_pos)
        if gamma_neg:
            negative *= tf.pow(shifted, gamma_neg)
        if weight is not None:
            positive *= weight
        return -tf.reduce_sum(positive + negative, axis=-1)

    loss.__name__ = name
    return loss


def build_losses(
    config: LossConfig, heads: tuple[str, ...], fractions: Mapping[str, np.ndarray] | None = None
) -> tuple[dict, dict]:
    """Keras ``loss`` and ``loss_weights`` dicts for a model with ``heads`` and the rating."""
    known = (*heads, RATING_HEAD)
    for head in config.head_weights:
        if head not in known:
            raise ConfigError(
                f"loss.head_weights names unknown head {head!r}"
                f"{did_you_mean(head, known)}; heads are {', '.join(known)}"
            )
    asymmetric = config.asymmetric
    losses = {}
    for head in heads:
        weights = None
        if config.positive_weight_power and fractions is not None:
            weights = positive_weights(
                fractions[head], config.positive_weight_power, config.max_positive_weight
            )
        losses[head] = tag_loss(
            weights,
            name=f"{head}_tag_loss",
            gamma_neg=asymmetric.gamma_neg if asymmetric else 0.0,
            gamma_pos=asymmetric.gamma_pos if asymmetric else 0.0,
            clip=asymmetric.clip if asymmetric else 0.0,
        )
    losses[RATING_HEAD] = "binary_crossentropy"
    return losses, {head: float(config.head_weights.get(head, 1.0)) for head in known}
