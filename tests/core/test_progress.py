"""Progress renderers: a live bar on a terminal, plain lines in a log, tqdm, or nothing."""

import io
import os
from types import SimpleNamespace

import pytest

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.core.progress import Progress, choose_renderer


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_log_gets_a_line_per_interval_and_one_at_the_end():
    log = io.StringIO()
    with Progress(4, "fetch", "img", stream=log, interval=0.0, failures=True) as bar:
        assert bar.renderer == "lines"
        bar.advance()
        bar.set(2, failed=1)
        bar.set(status="validating")  # no new count: no new line
    lines = lines_of(log)
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0].startswith("fetch: 25% 1/4 img, ") and "img/s, 0 failed, about " in lines[0]
    assert lines[1].startswith("fetch: 50% 2/4 img, ") and ", 1 failed" in lines[1]
    assert lines[2].startswith("fetch: 50% 2/4 img in ") and "validating" in lines[2]


def test_a_long_interval_leaves_only_the_final_line():
    log = io.StringIO()
    with Progress(3, "pack", "img", stream=log, interval=3600.0) as bar:
        for _ in range(3):
            bar.advance()
    (line,) = lines_of(log)
    assert line.startswith("pack: 100% 3/3 img in ")


def test_bytes_show_sizes_and_an_unknown_total_shows_no_percent():
    log = io.StringIO()
    with Progress(None, "tiny", "B", stream=log, interval=3600.0) as bar:
        bar.restart(4 << 20, completed=1 << 20)
        bar.advance(1 << 20)
    (line,) = lines_of(log)
    assert line.startswith("tiny: 50% 2.0 MB/4.0 MB in ") and "/s" in line
    log = io.StringIO()
    with Progress(None, "labels", "img", stream=log, interval=3600.0) as bar:
        bar.advance(5)
    assert lines_of(log)[0].startswith("labels: 5 img in ")


def test_failed_items_of_a_batch_are_noted_and_counted():
    log = io.StringIO()
    items = [
        SimpleNamespace(ok=True, path="a.jpg", reason=None),
        SimpleNamespace(ok=False, path="b.jpg", reason="truncated"),
    ]
    with Progress(2, "Tagging", "img", enabled=False, stream=log, failures=True) as bar:
        bar.batch(items)
    assert bar.renderer == "off" and (bar.completed, bar.failed) == (2, 1)
    assert lines_of(log) == ["furrytag: skipped b.jpg: truncated"]


def test_the_live_bar_draws_on_a_terminal_with_notes_above():
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with Progress(
        10, "Scoring test", "img", renderer="live", console=console, failures=True
    ) as bar:
        bar.advance(4)
        bar.note("a note")
        bar.end("the end")
    text = screen.getvalue()
    assert "Scoring test" in text and "4/10" in text and "0 failed" in text
    assert "a note" in text and "the end" in text


def test_the_notebook_renderer_is_a_tqdm_bar():
    out = io.StringIO()
    with Progress(5, "thumbnails", "img", renderer="notebook", stream=out) as bar:
        bar.advance(5)
        bar.note("made")
    assert "thumbnails" in out.getvalue() and "5/5" in out.getvalue() and "made" in out.getvalue()


def test_the_renderer_follows_where_stderr_goes():
    assert choose_renderer(io.StringIO()) == "lines"
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert choose_renderer(terminal) == "live"
    finally:
        os.close(leader)
        os.close(follower)
    with pytest.raises(ConfigError, match="renderer must be one of live, lines, notebook, off"):
        Progress(1, renderer="fancy")
