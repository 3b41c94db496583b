"""Run the real ``furrytag`` entry point in-process or as a subprocess, capturing output."""

import io
import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def invoke(capsys, monkeypatch, *args, stdin: str | None = None) -> Run:
    """Call ``furrytag_cli.cli.app.main`` with ``args`` as if from a shell."""
    from furrytag_cli.cli.app import main

    monkeypatch.setattr(sys, "argv", ["furrytag", *map(str, args)])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return Run(code, out.out, out.err)


def spawn(*args, **kwargs) -> subprocess.Popen:
    """Start ``furrytag ARGS`` as a subprocess."""
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "furrytag_cli", *map(str, args)], env=env, **kwargs
    )
