"""The options of ``furrytag tag --ray``, refused before any cluster starts when they cannot apply."""

import pytest

from tests.clirunner import invoke


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--workers", "2"], "--workers applies to runs on Ray; add --ray", 2),
        (["--gpus-per-worker", "1"], "--gpus-per-worker applies to runs on Ray", 2),
        (["--ray"], "--ray writes a folder of shards: give it with -o FOLDER", 2),
        (
            ["--ray", "-o", "out", "--embeddings", "e.npy"],
            "--embeddings does not apply with --ray",
            2,
        ),
        (["--ray", "-o", "out", "--prefix", "me"], "--prefix does not apply with --ray", 2),
        (["--ray", "-o", "out", "-f", "csv"], "-f csv does not apply with --ray", 2),
        (["--ray", "-o", "out", "--workers", "0"], "--workers must be at least 1; received 0", 1),
    ],
)
def test_options_that_cannot_apply_are_refused(args, message, code, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = invoke(capsys, monkeypatch, "tag", tmp_path, *args)
    assert run.code == code, run.stderr
    assert message in run.stderr
