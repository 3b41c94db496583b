"""Training configs: shipped configs load, bad keys and values fail clearly, overrides apply."""

import pytest
import yaml

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.training.config import (
    TrainConfig,
    apply_overrides,
    available_configs,
    find_config,
    load_config,
    parse_override,
    save_config,
)

SHIPPED = (
    "tiny",
    "mobilenet_v3_224",
    "efficientnet_v2_b3_300",
    "convnext_tiny_224",
    "efficientnet_v2_m_384",
)


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_by_bare_name(name):
    config = load_config(name)
    assert config.model.input_size >= 32 and config.train.batch_size >= 1
    assert find_config(name).name == f"{name}.yaml"


def test_the_model_registry_is_not_offered_as_a_training_config():
    assert set(SHIPPED) <= set(available_configs())
    assert "models" not in available_configs()
    with pytest.raises(ConfigError, match="config not found: models"):
        find_config("models")


def test_unknown_config_name_suggests_the_closest():
    with pytest.raises(
        ConfigError, match=r"did you mean 'tiny'.*shipped configs: .*mobilenet_v3_224"
    ):
        find_config("tinny")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "optimizer: {lrr: 0.1}\n",
            r"c\.yaml: optimizer: unknown key 'lrr' \(did you mean 'lr'\?\)",
        ),
        ("trian: {}\n", r"unknown key 'trian' \(did you mean 'train'\?\)"),
        ("train: {epochs: ten}\n", r"c\.yaml: train\.epochs must be an integer; received 'ten'"),
        ("train: {batch_size: 0}\n", r"train\.batch_size must be >= 1; received 0"),
        ("train: {strategy: mirror}\n", r"did you mean 'mirrored'"),
        (
            "train: {mixed_precision: maybe}\n",
            r"train\.mixed_precision must be auto, true or false",
        ),
        ("augment: {crop_area: [0.9, 0.5]}\n", r"augment\.crop_area must be \[low, high\]"),
        ("augment: {crop_area: 0.5}\n", r"crop_area must be a list of 2 numbers; received 0.5"),
        ("optimizer: {lr: -1}\n", r"optimizer\.lr must be > 0"),
        (
            "optimizer: {name: lambb}\n",
            r"optimizer\.name must be one of adamw, lamb; received 'lambb' \(did you mean 'lamb'\?\)",
        ),
        ("loss: {asymmetric: {gamma: 2}}\n", r"loss\.asymmetric: unknown key 'gamma'"),
        ("- a list\n", r"expected a mapping, received list"),
        ("train: {epochs: 3\n", r"config .*c\.yaml is not valid YAML at line 2"),
    ],
)
def test_bad_configs_name_the_key_and_what_was_received(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    config = load_config(write(tmp_path, "optimizer: {lr: 3e-4, weight_decay: 1E-2}\n"))
    assert config.optimizer.lr == pytest.approx(3e-4)
    assert config.optimizer.weight_decay == pytest.approx(1e-2)


def test_overrides_are_parsed_as_yaml_scalars_and_lists():
    assert parse_override("optimizer.lr=3e-4") == (["optimizer", "lr"], "3e-4")
    assert parse_override("augment.crop_area=[0.5, 1]") == (["augment", "crop_area"], [0.5, 1])
    assert parse_override("data.val_split=null") == (["data", "val_split"], None)
    assert parse_override("train.jit_compile=false") == (["train", "jit_compile"], False)
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_override("optimizer.lr")


def test_overrides_apply_over_the_file_and_are_validated():
    config = load_config(
        "tiny",
        [
            "optimizer.lr=3e-4",
            "train.epochs=2",
            "loss.asymmetric.gamma_neg=2",
            "loss.head_weights.rating=2",
        ],
    )
    assert config.optimizer.lr == pytest.approx(3e-4) and config.train.epochs == 2
    assert config.loss.asymmetric.gamma_neg == 2.0 and config.loss.asymmetric.clip == 0.05
    assert config.loss.head_weights == {"rating": 2.0}
    with pytest.raises(ConfigError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        load_config("tiny", ["train.epoch=2"])
    with pytest.raises(ConfigError, match="model.backbone is not a section"):
        apply_overrides({"model": {"backbone": "tiny"}}, ["model.backbone.x=1"])
    with pytest.raises(
        ConfigError,
        match=r"'epochs' is not a section or setting of the config; "
        r"did you mean train\.epochs\?",
    ):
        load_config("tiny", ["epochs=2"])
    with pytest.raises(
        ConfigError,
        match=r"tiny\.yaml with --set optimizer\.lr=abc: optimizer\.lr "
        r"must be a number; received 'abc'",
    ):
        load_config("tiny", ["optimizer.lr=abc"])


def test_an_empty_config_file_is_refused(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(
        ConfigError, match=r"empty\.yaml is empty; start from a copy of a shipped one"
    ):
        load_config(tmp_path / "empty.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config("tiny", ["augment.mixup=0.2"])
    path = save_config(config, tmp_path)
    data = yaml.safe_load(path.read_text())
    assert data["augment"]["crop_area"] == [0.85, 1.0] and data["augment"]["mixup"] == 0.2
    assert TrainConfig.from_dict(data) == config
