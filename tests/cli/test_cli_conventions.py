"""CLI conventions: -h, choices as usage errors, completion, exit codes, --debug anywhere."""

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from furrytag_cli.cli import conventions
from furrytag_cli.cli.options import Format


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "furrytag_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "command", [[], ["tag"], ["dataset"], ["dataset", "fetch"], ["evaluate"], ["train"]]
)
def test_dash_h_is_help(command):
    short, long = run_cli(*command, "-h"), run_cli(*command, "--help")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert short.stdout.startswith("Usage: furrytag")


def test_a_format_not_among_the_choices_is_a_usage_error_naming_them():
    result = run_cli("tag", "x.jpg", "--format", "xml")
    assert result.returncode == 2
    assert "'xml' is not one of 'jsonl', 'json', 'csv', 'txt'" in result.stderr


def test_help_lists_the_choices():
    text = run_cli("tag", "-h").stdout
    for choices in (
        "jsonl|json|csv|txt",
        "auto|cpu|gpu",
        "auto|keras|lite",
        "none|dynamic|float16",
    ):
        assert choices in text
    assert "score|head" in text
    assert "train|val|test" in run_cli("evaluate", "-h").stdout
    assert "train|val|test" in run_cli("dataset", "pack", "-h").stdout


def test_the_cli_choices_are_the_library_choices():
    from furrytag_cli.core import tfruntime
    from furrytag_cli.dataset.layout import SPLITS
    from furrytag_cli.engines import lite
    from furrytag_cli.engines.base import ENGINES
    from furrytag_cli.tagging.sinks import FORMATS

    assert typing.get_args(Format) == FORMATS
    assert typing.get_args(conventions.Engine) == ENGINES
    assert typing.get_args(conventions.Quantize) == lite.QUANTIZE
    assert typing.get_args(conventions.Device) == tfruntime._DEVICES
    assert typing.get_args(conventions.Split) == conventions.SPLITS == SPLITS


def complete(words: str) -> list[str]:
    """What bash completion offers after ``words`` (the real console script)."""
    script = Path(sys.executable).with_name("furrytag")
    result = subprocess.run(
        [script],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "_FURRYTAG_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_offers_commands_and_choices():
    assert {"tag", "train", "evaluate", "dataset"} <= set(complete("furrytag "))
    assert complete("furrytag tag x.jpg --format ") == ["jsonl", "json", "csv", "txt"]
    assert complete("furrytag tag x.jpg --engine l") == ["lite"]
    assert complete("furrytag dataset pack d --split ") == ["train", "val", "test"]


def test_completion_script_is_available():
    # The shell named, not detected from the process tree (which a CI runner may not show).
    result = run_cli(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert result.returncode == 0 and "_FURRYTAG_COMPLETE=complete_bash" in result.stdout


def test_help_documents_the_exit_codes():
    text = run_cli("--help").stdout
    lines = [line.split()[0] for line in text.split("Exit codes:")[1].splitlines() if line.strip()]
    assert [code for code in lines if code.isdigit()] == ["0", "1", "2", "3", "130", "143"]
    assert conventions.PARTIAL == 3 and conventions.INTERRUPTED == 130


def test_debug_may_follow_the_command(tmp_path):
    after = run_cli("tag", tmp_path, "--model", "no_such_model", "--debug")
    assert after.returncode == 1 and "Traceback" in after.stderr
    plain = run_cli("tag", tmp_path, "--model", "no_such_model")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr


def test_debug_after_a_double_dash_is_an_input():
    result = run_cli("tag", "--", "--debug")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--debug" in result.stderr
