"""The wheel carries its data files and works from any folder, outside the checkout."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheel = next(dist.glob("furrytag-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env_python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [env_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Dependencies come from this environment (a path line: its .pth files, such as an
    # editable install of furrytag itself, are not processed); furrytag from the wheel.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [env_python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "FURRYTAG_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        [
            env_python,
            "-c",
            "import furrytag_cli, furrytag_cli.model.categories as c; "
            "print(furrytag_cli.__file__); print(c.CategorySet.load().num_tags)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == "228"
    listed = subprocess.run(
        [venv / "bin" / "furrytag", "models"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert "efficientnet_v2_b3_300_2c" in listed.stdout
    results = elsewhere / "results.jsonl"
    results.write_text(
        '{"path": "gone.png", "tags": {"species": {"wolf": 0.9}}, "rating": "safe"}\n'
    )
    gallery = subprocess.run(
        [venv / "bin" / "furrytag", "gallery", results, "-o", "g", "-q"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert gallery.returncode == 0, gallery.stderr
    assert {p.name for p in (elsewhere / "g").iterdir()} >= {"index.html", "gallery.js", "data"}
