"""Training losses: summed BCE per head, positive weights, asymmetric loss, head weights."""

import numpy as np
import pytest

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.training.config import AsymmetricConfig, LossConfig
from furrytag_cli.training.loss import build_losses, positive_weights, tag_loss

Y = np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32)
P = np.array([[0.9, 0.2, 0.04], [0.3, 0.6, 0.99]], dtype=np.float32)


def bce(y, p):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_the_plain_loss_is_bce_summed_over_the_tags_of_each_example():
    np.testing.assert_allclose(tag_loss()(Y, P).numpy(), bce(Y, P).sum(axis=1), rtol=1e-5)


def test_positive_weights_scale_only_the_positive_terms():
    weights = np.array([2.0, 1.0, 3.0], dtype=np.float32)
    expected = (bce(Y, P) * np.where(Y == 1, weights, 1.0)).sum(axis=1)
    np.testing.assert_allclose(tag_loss(weights)(Y, P).numpy(), expected, rtol=1e-5)


def test_the_asymmetric_loss_drops_easy_negatives_and_shrinks_hard_ones():
    y, p = np.zeros((1, 2), np.float32), np.array([[0.04, 0.6]], np.float32)
    loss = tag_loss(gamma_neg=4, clip=0.05)
    easy = loss(y[:, :1], p[:, :1]).numpy()[0]
    hard = loss(y[:, 1:], p[:, 1:]).numpy()[0]
    assert easy == 0.0
    expected = -(0.55**4) * np.log(1 - 0.55)
    assert hard == pytest.approx(expected, rel=1e-4) and hard < bce(0.0, 0.6)
    # Positives are untouched with gamma_pos 0.
    assert loss(np.ones((1, 1)), np.array([[0.7]])).numpy()[0] == pytest.approx(
        -np.log(0.7), rel=1e-5
    )


def test_positive_weights_grow_with_rarity_within_bounds():
    weights = positive_weights(np.array([0.5, 0.01, 0.9, 1e-7]), power=0.5, maximum=5.0)
    np.testing.assert_allclose(weights, [1.0, 5.0, 1.0, 5.0])
    assert positive_weights(np.array([0.2]), power=0.5, maximum=10)[0] == pytest.approx(2.0)


def test_losses_and_weights_cover_every_head_and_the_rating():
    config = LossConfig(head_weights={"rating": 2.0}, asymmetric=AsymmetricConfig())
    losses, weights = build_losses(config, ("body", "species"))
    assert (
        set(losses) == {"body", "species", "rating"} and losses["rating"] == "binary_crossentropy"
    )
    assert weights == {"body": 1.0, "species": 1.0, "rating": 2.0}
    with pytest.raises(ConfigError, match=r"unknown head 'specie' \(did you mean 'species'\?\)"):
        build_losses(LossConfig(head_weights={"specie": 1.0}), ("body", "species"))
