import pytest

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.store.registry import load_registry


def test_shipped_registry_lists_the_four_released_models():
    registry = load_registry()
    assert set(registry.models) == {
        "efficientnet_v2_m_384_3",
        "convnext_tiny_224_5",
        "efficientnet_v2_b3_300_2c",
        "mobilenet_v3_224_2c",
    }
    b3 = registry.get(registry.default)
    assert (b3.name, b3.input_size, b3.normalized, b3.sha256) == (
        "efficientnet_v2_b3_300_2c",
        300,
        True,
        None,
    )
    assert b3.sources[0].endswith("id=1n-qEMXU86G8A_UEpZ9_CmAPWdBkMO_zY")
    assert registry.get("mobilenet_v3_224_2c").normalized is False
    assert b3.metrics == {"f1": 0.50, "recall": 0.37, "precision": 0.74, "rating_accuracy": 0.728}


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'convnext_tiny_224_5'"):
        load_registry().get("convnext_tiny_224")


def _write(tmp_path, body):
    path = tmp_path / "models.yaml"
    path.write_text(body)
    return path


GOOD = """default: m
models:
  m:
    format: legacy
    backbone: tiny
    input_size: 32
    normalized: true
    params: 1M
    url: http://127.0.0.1/m.zip
"""


def test_custom_registry_loads(tmp_path):
    assert load_registry(_write(tmp_path, GOOD)).get("m").sources[0] == "http://127.0.0.1/m.zip"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("    params: 1M\n", "    params: 1M\n    normalised: true\n"),
            "unknown key 'normalised' \\(did you mean 'normalized'",
        ),
        (("default: m", "default: x"), "default model 'x'"),
        (("format: legacy", "format: onnx"), "format must be one of"),
        (("    url: http://127.0.0.1/m.zip\n", ""), "google_drive_id"),
        (("input_size: 32", "input_size: big"), "input_size must be a positive integer"),
        (("    params: 1M\n", "    params: 1M\n    sha256: abc\n"), "sha256 must be 64 hex"),
        (("    url: http", "    url: [http"), r"models\.yaml is not valid YAML at line \d+"),
    ],
)
def test_bad_registries_are_rejected_clearly(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message):
        load_registry(_write(tmp_path, GOOD.replace(*edit)))


def test_a_registry_named_by_the_environment_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("FURRYTAG_REGISTRY", str(tmp_path / "mine.yaml"))
    with pytest.raises(
        ConfigError, match=r"model registry .*mine\.yaml does not exist; unset FURRYTAG_REGISTRY"
    ):
        load_registry()
