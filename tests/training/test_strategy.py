"""Choosing the tf.distribute strategy from the environment (pure logic; no clusters started)."""

import json

import pytest

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.training.strategy import (
    cluster_size,
    is_chief,
    parse_tf_config,
    strategy_kind,
    tpu_present,
)


def tf_config(workers: int, *, chief: bool = False, task=("worker", 0)) -> dict:
    cluster = {"worker": [f"host{i}:2222" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["chief:2222"]
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})
    }


def test_a_plain_machine_gets_the_default_strategy():
    assert strategy_kind({}, gpus=0) == "default"
    assert strategy_kind({}, gpus=1) == "default"


def test_several_gpus_get_mirrored():
    assert strategy_kind({}, gpus=4) == "mirrored"


def test_a_tf_config_cluster_gets_multi_worker_even_with_several_gpus():
    assert strategy_kind(tf_config(2), gpus=8) == "multi_worker"
    assert strategy_kind(tf_config(1, chief=True), gpus=0) == "multi_worker"


def test_a_single_task_tf_config_is_not_a_cluster():
    assert strategy_kind(tf_config(1), gpus=2) == "mirrored"
    assert cluster_size(parse_tf_config(tf_config(1))) == 1


def test_a_tpu_wins_and_an_explicit_request_wins_over_everything():
    assert strategy_kind(tf_config(2), gpus=0, tpu=True) == "tpu"
    assert strategy_kind(tf_config(2), gpus=4, requested="default") == "default"
    assert tpu_present({"TPU_NAME": "my-tpu"}, exists=lambda p: False)
    assert tpu_present({}, exists=lambda p: p == "/dev/accel0")
    assert not tpu_present({}, exists=lambda p: False)


def test_the_chief_writes_checkpoints():
    assert is_chief(parse_tf_config(tf_config(3, task=("worker", 0))))
    assert not is_chief(parse_tf_config(tf_config(3, task=("worker", 1))))
    assert is_chief(parse_tf_config(tf_config(2, chief=True, task=("chief", 0))))
    assert not is_chief(parse_tf_config(tf_config(2, chief=True, task=("worker", 0))))
    assert is_chief(None)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '{"cluster": ["a"]}'])
def test_a_malformed_tf_config_is_a_clear_error(raw):
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        strategy_kind({"TF_CONFIG": raw}, gpus=0)


def test_selection_here_returns_the_default_strategy():
    import tensorflow as tf

    from furrytag_cli.training.strategy import select_strategy

    strategy = select_strategy("auto", environ={})
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
