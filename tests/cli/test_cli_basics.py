"""The CLI shell: help without TensorFlow, version, models, error and exit-code conventions."""

import json
import os
import statistics
import subprocess
import sys
import time

from furrytag_cli import __version__


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "furrytag_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_help_never_imports_tensorflow_and_is_fast():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['furrytag', '--help']\n"
        "try:\n    runpy.run_module('furrytag_cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    times = []
    for _ in range(3):
        start = time.perf_counter()
        assert run_cli("--help").returncode == 0
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 3.0


def test_every_command_module_is_free_of_top_level_tensorflow_imports():
    import ast
    from pathlib import Path

    import furrytag_cli.cli as cli

    for path in Path(cli.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in ("tensorflow", "keras", "tf_keras"), (path, name)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"furrytag {__version__}"


def test_models_json_lists_cache_state(tmp_path):
    env = {**os.environ, "FURRYTAG_HOME": str(tmp_path)}
    cached = tmp_path / "models" / "mobilenet_v3_224_2c"
    cached.mkdir(parents=True)
    (cached / "manifest.json").write_text(json.dumps({"sha256": "ab" * 32}))
    mine = tmp_path / "models" / "my-finetune"
    mine.mkdir()
    (mine / "manifest.json").write_text(
        json.dumps({"sha256": "cd" * 32, "source": "file:///m.zip"})
    )
    result = run_cli("models", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["mobilenet_v3_224_2c"]["cached"] is True
    assert rows["mobilenet_v3_224_2c"]["sha256"] == "ab" * 32
    assert rows["efficientnet_v2_b3_300_2c"]["cached"] is False
    assert rows["efficientnet_v2_b3_300_2c"]["default"] is True
    assert (
        rows["my-finetune"]["cached"] is True and rows["my-finetune"]["source"] == "file:///m.zip"
    )
    table = run_cli("models", env=env)
    assert "efficientnet_v2_b3_300_2c" in table.stdout and table.returncode == 0
    assert "my-finetune" in table.stdout


def test_usage_error_exits_2():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_library_error_is_one_line_and_exit_1(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    result = run_cli("tag", str(tmp_path / "one.png"), "--model", "no_such_model", "-q")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: model 'no_such_model' is neither a known model")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "tag", str(tmp_path), "--model", "no_such_model")
    assert result.returncode == 1 and "Traceback" in result.stderr
