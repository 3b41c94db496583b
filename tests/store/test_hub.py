"""Models from the Hugging Face Hub (hf://OWNER/REPO[@REVISION][/SUBFOLDER]), fetched
by huggingface_hub from a local server answering the Hub's endpoints (HF_ENDPOINT)."""

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("huggingface_hub", reason="needs the hub extra: pip install -e '.[hub]'")

from furrytag_cli.store import layout as cache
from tests.clirunner import invoke
from tests.httpserver import LocalServer
from tests.hubserver import FakeHub


@pytest.fixture
def server(tmp_path, monkeypatch):
    with LocalServer() as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.base)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield srv


def image(tmp_path):
    path = tmp_path / "art.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(path)
    return path


def tag(capsys, monkeypatch, tmp_path, model, *extra):
    run = invoke(capsys, monkeypatch, "tag", image(tmp_path), "--model", model, "-q", *extra)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.slow
def test_tag_a_bundle_from_the_hub_then_offline_from_its_cache(
    server, native_bundle_dir, capsys, monkeypatch, tmp_path
):
    hub = FakeHub.of_folder(server, "someone/furry-tiny", native_bundle_dir)
    want = tag(capsys, monkeypatch, tmp_path, native_bundle_dir)
    assert tag(capsys, monkeypatch, tmp_path, "hf://someone/furry-tiny")["tags"] == want["tags"]
    assert hub.downloads() == len(hub.files)
    assert (tmp_path / "hf-home" / "hub" / "models--someone--furry-tiny").is_dir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    server.requests.clear()
    assert tag(capsys, monkeypatch, tmp_path, "hf://someone/furry-tiny")["tags"] == want["tags"]
    assert server.requests == []


def test_a_revision_and_a_subfolder_holding_an_onnx_export(
    server, native_bundle_dir, capsys, monkeypatch, tmp_path
):
    pytest.importorskip("onnxruntime")
    exported = tmp_path / "export"
    done = invoke(capsys, monkeypatch, "export", native_bundle_dir, "-o", exported)
    assert done.code == 0, done.stderr
    hub = FakeHub.of_folder(
        server, "someone/taggers", exported, under="onnx/tiny/", revisions=("v2",)
    )
    hub.files["README.md"] = b"# several models\n"
    run = invoke(
        capsys, monkeypatch, "tag", image(tmp_path), "--model", "hf://someone/taggers@v2/onnx/tiny"
    )
    assert run.code == 0, run.stderr
    assert "onnx engine" in run.stderr
    missing = invoke(capsys, monkeypatch, "tag", image(tmp_path), "-m", "hf://someone/taggers@v3")
    assert missing.code != 0 and "hf://someone/taggers@v3" in missing.stderr


@pytest.mark.slow
def test_an_unknown_legacy_model_installs_only_when_told_how_it_was_trained(
    server, legacy_dir, capsys, monkeypatch, tmp_path
):
    FakeHub.of_folder(server, "someone/mystery", legacy_dir)
    refused = invoke(capsys, monkeypatch, "download", "hf://someone/mystery")
    assert refused.code != 0
    assert "--normalized" in refused.stderr and "--not-normalized" in refused.stderr
    assert cache.cached_models() == []
    done = invoke(capsys, monkeypatch, "download", "hf://someone/mystery", "--not-normalized")
    assert done.code == 0, done.stderr
    manifest = cache.read_manifest("mystery")
    assert manifest["source"] == "hf://someone/mystery" and manifest["normalized"] is False
    plain = tag(capsys, monkeypatch, tmp_path, "mystery", "--offline", "--all-scores")
    told = tag(capsys, monkeypatch, tmp_path, str(legacy_dir), "--not-normalized", "--all-scores")
    assert plain["scores"] == told["scores"]
    normalized = tag(capsys, monkeypatch, tmp_path, "mystery", "--normalized", "--all-scores")
    assert normalized["scores"] != plain["scores"]


def test_a_repository_holding_an_archive(server, legacy_zip, capsys, monkeypatch, tmp_path):
    FakeHub(
        server, "someone/b3-release", {"efficientnet_v2_b3_300_2c.zip": legacy_zip.read_bytes()}
    )
    run = tag(capsys, monkeypatch, tmp_path, "hf://someone/b3-release")
    assert run["rating"] in ("safe", "questionable", "explicit")


def test_registry_sources_are_tried_in_order(
    server, native_bundle_dir, capsys, monkeypatch, tmp_path
):
    FakeHub.of_folder(server, "mirror/tiny", native_bundle_dir)
    registry = tmp_path / "models.yaml"
    entry = {
        "format": "native",
        "backbone": "tiny",
        "input_size": 32,
        "normalized": False,
        "params": "0.1M",
        "url": server.url("/gone/tiny.zip"),
        "sources": ["hf://mirror/tiny"],
    }
    registry.write_text(yaml.safe_dump({"default": "tiny", "models": {"tiny": entry}}))
    monkeypatch.setenv("FURRYTAG_REGISTRY", str(registry))
    done = invoke(capsys, monkeypatch, "download", "tiny")
    assert done.code == 0, done.stderr
    assert "trying the next source" in done.stderr
    assert cache.read_manifest("tiny")["source"] == "hf://mirror/tiny"
    shutil.rmtree(cache.model_dir("tiny"))
    entry["sources"] = ["hf://mirror/absent"]
    registry.write_text(yaml.safe_dump({"default": "tiny", "models": {"tiny": entry}}))
    failed = invoke(capsys, monkeypatch, "download", "tiny")
    assert failed.code != 0
    assert "any of its 2 sources" in failed.stderr and "hf://mirror/absent" in failed.stderr


def test_a_private_repository_needs_hf_token(
    server, native_bundle_dir, capsys, monkeypatch, tmp_path
):
    FakeHub.of_folder(server, "someone/private", native_bundle_dir, token="hf_secret")
    refused = invoke(capsys, monkeypatch, "tag", image(tmp_path), "-m", "hf://someone/private")
    assert refused.code != 0 and "HF_TOKEN" in refused.stderr
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    tag(capsys, monkeypatch, tmp_path, "hf://someone/private")


@pytest.mark.parametrize("ref", ["hf://someone", "hf://a/b/../c", "hf://"])
def test_a_malformed_reference_says_how_to_write_one(ref, capsys, monkeypatch, tmp_path):
    run = invoke(capsys, monkeypatch, "tag", image(tmp_path), "--model", ref)
    assert run.code != 0
    assert "hf://OWNER/REPO@REVISION/SUBFOLDER" in run.stderr


def test_a_forced_reinstall_from_the_hub_checks_a_given_sha256(
    server, native_bundle_dir, capsys, monkeypatch
):
    FakeHub.of_folder(server, "someone/pinned", native_bundle_dir)
    first = invoke(capsys, monkeypatch, "download", "hf://someone/pinned")
    assert first.code == 0, first.stderr
    digest = cache.read_manifest("pinned")["sha256"]
    wrong = invoke(capsys, monkeypatch, "download", "pinned", "--force", "--sha256", "0" * 64)
    assert wrong.code != 0 and "0" * 64 in wrong.stderr and "pinned" in wrong.stderr
    assert cache.read_manifest("pinned")["sha256"] == digest
    right = invoke(capsys, monkeypatch, "download", "pinned", "--force", "--sha256", digest)
    assert right.code == 0, right.stderr
    assert cache.read_manifest("pinned")["pinned"] is True
