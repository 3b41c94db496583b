"""A legacy SavedModel furrytag does not know: every command that runs a model says which
option tells how it was trained, and runs it once told."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.model.categories import CategorySet
from tests.clirunner import invoke


@pytest.fixture
def mystery(legacy_dir, tmp_path):
    folder = tmp_path / "my-own-model"
    shutil.copytree(legacy_dir, folder)
    return folder


@pytest.fixture
def labels(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "art").mkdir()
    tags = [CategorySet.load().tags(h)[0] for h in CategorySet.load().head_names]
    lines = ["path,tags,rating"]
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / f"art/{i}.png")
        lines.append(f'art/{i}.png,"{" ".join(tags[: i + 2])}",{"sqe"[i]}')
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_each_command_names_the_option_then_runs(mystery, labels, tmp_path, capsys, monkeypatch):
    commands = {
        "tag": ("tag", tmp_path / "art", "-m", mystery, "-q"),
        "evaluate": ("evaluate", "-m", mystery, "--labels", labels, "--json", "-q"),
        "export": ("export", mystery, "-o", tmp_path / "out"),
        "download": ("download", "--from-file", mystery, "mine"),
    }
    for name, args in commands.items():
        refused = invoke(capsys, monkeypatch, *args)
        assert refused.code == 1, name
        assert "pass --normalized" in refused.stderr and "--not-normalized" in refused.stderr, name
    assert not (tmp_path / "out").exists()
    tagged = invoke(capsys, monkeypatch, *commands["tag"], "--normalized")
    assert tagged.code == 0, tagged.stderr
    measured = invoke(capsys, monkeypatch, *commands["evaluate"], "--not-normalized")
    assert measured.code == 0, measured.stderr
    assert json.loads(measured.stdout)["my-own-model"]["images"] == 3
    installed = invoke(capsys, monkeypatch, *commands["download"], "--normalized")
    assert installed.code == 0, installed.stderr
    by_name = invoke(capsys, monkeypatch, "tag", tmp_path / "art", "-m", "mine", "-q", "--offline")
    assert by_name.code == 0, by_name.stderr
    assert by_name.stdout == tagged.stdout
