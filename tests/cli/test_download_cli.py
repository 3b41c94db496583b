"""furrytag download and fetch-on-first-use from the CLI, against a local HTTP server."""

import hashlib
import json
import shutil
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from furrytag_cli.store import layout as cache
from tests.clirunner import invoke
from tests.httpserver import LocalServer, serve_file


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def native_zip(tmp_path_factory):
    """A tiny native bundle zipped in a top folder, as a published model would be."""
    from tests.modelfactory import make_native_bundle

    root = tmp_path_factory.mktemp("zip")
    make_native_bundle(root / "tiny-model")
    return shutil.make_archive(str(root / "tiny-model"), "zip", root, "tiny-model")


def image(tmp_path):
    path = tmp_path / "art.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(path)
    return path


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_download_url_then_tag_by_name_offline(
    server, native_zip, capsys, monkeypatch, tmp_path, furrytag_home
):
    body = read(native_zip)
    url = serve_file(server, "/files/tiny-model.zip", body)
    done = invoke(capsys, monkeypatch, "download", "--url", url)
    assert done.code == 0, done.stderr
    assert "Model   tiny-model" in done.stdout
    assert hashlib.sha256(body).hexdigest() in done.stdout
    assert "pin it with --sha256" in done.stdout
    assert cache.read_manifest("tiny-model")["source"] == url

    tagged = invoke(
        capsys, monkeypatch, "tag", image(tmp_path), "--model", "tiny-model", "--offline", "-q"
    )
    assert tagged.code == 0, tagged.stderr
    assert set(json.loads(tagged.stdout)["tags"]) == {
        "action",
        "body",
        "clothing",
        "identity",
        "species",
    }


def test_download_json_and_quiet(server, native_zip, capsys, monkeypatch, furrytag_home):
    body = read(native_zip)
    url = serve_file(server, "/files/tiny-model.zip", body)
    done = invoke(capsys, monkeypatch, "download", "--url", url, "--json", "-q")
    assert done.code == 0 and done.stderr == "", done.stderr
    summary = json.loads(done.stdout)
    assert summary["name"] == "tiny-model" and summary["source"] == url
    assert summary["sha256"] == hashlib.sha256(body).hexdigest() and summary["pinned"] is False
    assert summary["stored"] == str(cache.model_dir("tiny-model"))
    again = invoke(capsys, monkeypatch, "download", "tiny-model", "--offline", "--json")
    assert again.code == 0 and json.loads(again.stdout)["bundle"] == summary["bundle"]


def test_tag_fetches_a_registry_model_on_first_use(
    server, native_zip, capsys, monkeypatch, tmp_path, furrytag_home
):
    url = serve_file(server, "/mirror/tiny.zip", read(native_zip))
    registry = tmp_path / "models.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "default": "tiny",
                "models": {
                    "tiny": {
                        "format": "native",
                        "backbone": "tiny",
                        "input_size": 32,
                        "normalized": False,
                        "params": "0.1M",
                        "url": url,
                        "sha256": None,
                    }
                },
            }
        )
    )
    monkeypatch.setenv("FURRYTAG_REGISTRY", str(registry))
    tagged = invoke(capsys, monkeypatch, "tag", image(tmp_path))
    assert tagged.code == 0, tagged.stderr
    assert f"Downloading tiny from {url} into {furrytag_home / 'models' / 'tiny'}" in tagged.stderr
    assert "Installed tiny" in tagged.stderr
    assert json.loads(tagged.stdout)["path"].endswith("art.png")
    listed = invoke(capsys, monkeypatch, "models", "--json")
    assert json.loads(listed.stdout)[0]["cached"] is True


def test_a_model_that_does_not_load_is_not_installed(
    server, native_zip, capsys, monkeypatch, tmp_path, furrytag_home
):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(native_zip) as source, zipfile.ZipFile(broken, "w") as target:
        for member in source.namelist():
            data = source.read(member)
            target.writestr(member, b"not a keras file" if member.endswith("model.keras") else data)
    url = serve_file(server, "/broken.zip", read(broken))
    result = invoke(capsys, monkeypatch, "download", "--url", url, "--name", "broken")
    assert result.code == 1
    assert "Error: cannot load" in result.stderr
    assert cache.read_manifest("broken") is None
    assert not (furrytag_home / "models" / "broken").exists()


def test_from_file_installs_a_legacy_release(legacy_zip, capsys, monkeypatch, tmp_path):
    name = "efficientnet_v2_b3_300_2c"
    done = invoke(capsys, monkeypatch, "download", "--from-file", legacy_zip, name)
    assert done.code == 0, done.stderr
    tagged = invoke(
        capsys, monkeypatch, "tag", image(tmp_path), "--model", name, "--offline", "-q", "-f", "csv"
    )
    assert tagged.code == 0, tagged.stderr
    assert tagged.stdout.splitlines()[0].startswith("path,")


def test_offline_without_the_model_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    result = invoke(capsys, monkeypatch, "tag", image(tmp_path), "--offline")
    assert result.code == 1
    assert "offline mode forbids downloading it" in result.stderr
    assert "furrytag download --from-file ZIP efficientnet_v2_b3_300_2c" in result.stderr


def test_unknown_name_suggests_the_close_one(capsys, monkeypatch, tmp_path):
    result = invoke(
        capsys, monkeypatch, "tag", image(tmp_path), "--model", "efficientnet_v2_b3_300"
    )
    assert result.code == 1
    assert "did you mean" in result.stderr and "--url URL" in result.stderr


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.org/m.zip", "http:///m.zip"])
def test_a_url_that_is_not_http_is_refused(capsys, monkeypatch, url):
    result = invoke(capsys, monkeypatch, "download", "--url", url)
    assert result.code == 2 and "--url takes an http:// or https:// address" in result.stderr


def test_cache_dir_without_furrytag_home_keeps_the_installed_files_intact(
    native_zip, capsys, monkeypatch, tmp_path
):
    # Only --cache-dir names the cache: the conversion the lite engine caches must go
    # there too, never into the verified model folder nor the user's own cache.
    monkeypatch.delenv("FURRYTAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user" / ".cache"))
    store = tmp_path / "store"
    done = invoke(
        capsys, monkeypatch, "download", "--from-file", native_zip, "tiny", "--cache-dir", store
    )
    assert done.code == 0, done.stderr
    picture = image(tmp_path)
    for _ in range(2):
        tagged = invoke(
            capsys, monkeypatch, "tag", picture, "--model", "tiny", "--engine", "lite",
            "--cache-dir", store, "-q",
        )  # fmt: skip
        assert tagged.code == 0, tagged.stderr
    assert list((store / "lite").rglob("*.tflite"))
    assert not list((store / "models").rglob("*.tflite"))
    assert not (tmp_path / "user").exists()


def test_a_forced_reinstall_from_a_url_checks_a_given_sha256(
    server, native_zip, capsys, monkeypatch, furrytag_home
):
    body = read(native_zip)
    url = serve_file(server, "/files/tiny-model.zip", body)
    assert invoke(capsys, monkeypatch, "download", "--url", url).code == 0
    wrong = invoke(capsys, monkeypatch, "download", "tiny-model", "--force", "--sha256", "0" * 64)
    assert wrong.code != 0 and "0" * 64 in wrong.stderr
    digest = hashlib.sha256(body).hexdigest()
    right = invoke(capsys, monkeypatch, "download", "tiny-model", "--force", "--sha256", digest)
    assert right.code == 0, right.stderr
    assert cache.read_manifest("tiny-model")["pinned"] is True
