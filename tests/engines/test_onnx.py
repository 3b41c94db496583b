"""The onnx engine: which bundles it runs, how auto picks it, what it refuses."""

import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("tf2onnx", reason="needs the onnx extra: pip install -e '.[onnx]'")

from furrytag_cli.core.errors import BundleError, ConfigError
from furrytag_cli.engines.choose import load_engine
from furrytag_cli.export.folder import export_model
from furrytag_cli.model.loading import load_bundle


@pytest.fixture(scope="module")
def exported(native_bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-engine") / "bundle"
    return export_model(load_bundle(native_bundle_dir), folder).folder


def test_auto_runs_an_exported_bundle_with_onnx_runtime(exported):
    bundle = load_bundle(exported)
    engine = load_engine(bundle, engine="auto", device="cpu", notify=None)
    assert engine.name == "onnx" and engine.device == "cpu"
    assert load_engine(bundle, engine="onnx").name == "onnx"
    scores = engine(np.zeros((3, 32, 32, 3), np.float32))
    assert len(scores) == 3 and scores.embedding is None
    assert scores.heads["species"].shape == (3, len(bundle.categories.tags("species")))


def test_other_engines_refuse_an_onnx_bundle_and_say_which_runs_it(exported):
    bundle = load_bundle(exported)
    for engine in ("keras", "lite"):
        with pytest.raises(ConfigError, match="holds model.onnx only.*use --engine onnx"):
            load_engine(bundle, engine=engine)
    with pytest.raises(ConfigError, match="--quantize applies to the lite engine"):
        load_engine(bundle, engine="onnx", quantize="dynamic")


def test_onnx_engine_needs_a_model_onnx(native_bundle_dir):
    with pytest.raises(BundleError, match="has no model.onnx; export one with `furrytag export"):
        load_engine(load_bundle(native_bundle_dir), engine="onnx")


def test_an_onnx_file_in_another_layout_is_refused(native_bundle_dir, exported, tmp_path):
    from furrytag_cli.export.onnx import to_onnx
    from furrytag_cli.export.wd14 import wd14_model

    folder = tmp_path / "mixed"
    shutil.copytree(exported, folder)
    source = load_bundle(native_bundle_dir)
    wd14 = wd14_model(to_onnx(source), source, 64)
    (folder / "model.onnx").write_bytes(wd14.SerializeToString())
    with pytest.raises(BundleError, match="not in furrytag's layout"):
        load_engine(load_bundle(folder), engine="onnx")
