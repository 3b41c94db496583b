"""Fetching a dataset's images from a real local HTTP server that misbehaves on purpose."""

import hashlib
import json
import shutil
import time

import pytest

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.images import FAILURES, FetchOptions, fetch_images
from furrytag_cli.dataset.layout import original_path, sample_path
from furrytag_cli.dataset.manifest import iter_manifest, local_image
from tests.datasetfactory import body, delay, failing_first, serve, status, synth_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """(dataset folder with a manifest and no images, site folder) of 40 synthetic posts."""
    data, site, _ = synth_dataset(tmp_path_factory.mktemp("synth"), posts=40)
    return data, site


@pytest.fixture
def data(synth, tmp_path):
    shutil.copytree(synth[0], tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def server(synth):
    with serve(synth[1]) as srv:
        yield srv


def fetch(data, server, **options):
    options = {
        "base_url": server.url,
        "rate": 0,
        "backoff": 0,
        "retries": 1,
        "timeout": 5,
        **options,
    }
    return fetch_images(data, FetchOptions(**options))


def url_path(entry, sample=False):
    md5 = entry.md5
    if sample:
        return f"/data/sample/{md5[:2]}/{md5[2:4]}/{md5}.jpg"
    return f"/data/{md5[:2]}/{md5[2:4]}/{md5}.{entry.ext}"


def failures(data):
    path = data / FAILURES
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def leftovers(data):
    return [p for p in data.rglob("*.part")]


def test_every_image_lands_verified_in_the_content_addressed_tree(data, server):
    entries = list(iter_manifest(data))
    report = fetch(data, server, user_agent="furrytag-tests/1 (by tester)")
    assert (report.downloaded, report.present, report.failed) == (len(entries), 0, 0)
    for entry in entries:
        path = original_path(data, entry.md5, entry.ext)
        assert path == data / "images" / entry.md5[:2] / entry.md5[2:4] / f"{entry.md5}.{entry.ext}"
        assert hashlib.md5(path.read_bytes()).hexdigest() == entry.md5
    assert report.bytes == sum(original_path(data, e.md5, e.ext).stat().st_size for e in entries)
    assert {agent for _, agent in server.requests} == {"furrytag-tests/1 (by tester)"}
    assert report.failures is None and not (data / FAILURES).exists()


def test_a_rerun_skips_stored_files(data, server):
    entries = list(iter_manifest(data))
    fetch(data, server)
    server.requests.clear()
    report = fetch(data, server)
    assert (report.downloaded, report.present) == (0, len(entries))
    assert server.requests == []


def test_a_wrong_file_is_rejected_and_listed(data, server):
    bad, good = list(iter_manifest(data))[:2]
    server.behaviours[url_path(bad)] = body(b"not the image you are looking for")
    report = fetch(data, server, retries=2)
    assert report.failed == 1 and report.failures == data / FAILURES
    (failure,) = failures(data)
    assert failure["id"] == bad.id and failure["md5"] == bad.md5
    assert failure["url"] == server.url + url_path(bad)
    assert (
        f"md5 mismatch: expected {bad.md5}" in failure["error"]
        and "after 3 attempts" in failure["error"]
    )
    assert [p for p, _ in server.requests].count(url_path(bad)) == 3
    assert not original_path(data, bad.md5, bad.ext).exists() and leftovers(data) == []
    assert original_path(data, good.md5, good.ext).is_file()


def test_an_unreachable_server_stops_the_run_early_and_keeps_the_failure_list(data):
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    with pytest.raises(
        DatasetError,
        match=r"stopped: 2\d images in a row got no answer .*"
        r"check that http://127\.0\.0\.1:9 is reachable",
    ):
        fetch_images(
            data,
            FetchOptions(base_url=closed, rate=0, backoff=0, retries=0, timeout=5, concurrency=1),
        )
    assert 25 <= len(failures(data)) < len(list(iter_manifest(data)))


def test_server_errors_are_retried_with_exponential_backoff(data, server):
    flaky, limited = list(iter_manifest(data))[:2]
    server.behaviours[url_path(flaky)] = failing_first(2, 500)
    server.behaviours[url_path(limited)] = failing_first(1, 429)
    started = time.perf_counter()
    report = fetch(data, server, retries=3, backoff=0.1, concurrency=2)
    # Two failures of one file wait 0.1 s, then 0.2 s.
    assert time.perf_counter() - started >= 0.3
    assert report.failed == 0 and local_image(data, flaky) and local_image(data, limited)
    paths = [p for p, _ in server.requests]
    assert paths.count(url_path(flaky)) == 3 and paths.count(url_path(limited)) == 2


def test_retry_after_is_honoured(data, server):
    entry = next(iter_manifest(data))
    calls = []

    def slow_down(handler):
        calls.append(time.perf_counter())
        if len(calls) > 1:
            return False
        handler.send_response(429)
        handler.send_header("Retry-After", "0.4")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    server.behaviours[url_path(entry)] = slow_down
    report = fetch(data, server, retries=1, backoff=0)
    assert report.failed == 0 and calls[1] - calls[0] >= 0.4


def test_missing_and_slow_files_fail_and_a_rerun_fetches_only_them(data, server):
    missing, slow, *rest = list(iter_manifest(data))
    server.behaviours[url_path(missing)] = status(404)
    server.behaviours[url_path(slow)] = delay(3)
    report = fetch(data, server, timeout=0.5, retries=0)
    assert (report.downloaded, report.failed) == (len(rest), 2)
    errors = {f["id"]: f["error"] for f in failures(data)}
    assert errors[missing.id] == "HTTP 404 Not Found"
    assert "Timeout" in errors[slow.id] and "gave up after 1 attempts" in errors[slow.id]
    assert leftovers(data) == []
    server.behaviours.clear()
    server.requests.clear()
    report = fetch(data, server)
    assert (report.downloaded, report.present, report.failed) == (2, len(rest), 0)
    assert sorted(p for p, _ in server.requests) == sorted([url_path(missing), url_path(slow)])
    assert not (data / FAILURES).exists()


def test_samples_are_fetched_where_e621_has_them_else_the_original(data, server, synth):
    site = synth[1]
    report = fetch(data, server, sample=True)
    assert report.failed == 0
    entries = list(iter_manifest(data))
    sampled = [e for e in entries if (site / url_path(e, sample=True)[1:]).is_file()]
    assert 0 < len(sampled) < len(entries)
    for entry in entries:
        stored = {original_path(data, entry.md5, entry.ext), sample_path(data, entry.md5)}
        expected = (
            sample_path(data, entry.md5)
            if entry in sampled
            else original_path(data, entry.md5, entry.ext)
        )
        assert {p for p in stored if p.exists()} == {expected}


def test_a_mirror_under_a_path_prefix(data, synth, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "e621-mirror").symlink_to(synth[1])
    with serve(root) as mirror:
        report = fetch(data, mirror, base_url=mirror.url + "/e621-mirror/")
    assert report.failed == 0 and report.downloaded > 0
    assert all(path.startswith("/e621-mirror/data/") for path, _ in mirror.requests)


def test_recheck_refetches_a_corrupted_file(data, server):
    fetch(data, server)
    entry = next(iter_manifest(data))
    stored = original_path(data, entry.md5, entry.ext)
    stored.write_bytes(b"bit rot")
    assert fetch(data, server).present == len(list(iter_manifest(data)))
    report = fetch(data, server, recheck=True)
    assert report.downloaded == 1
    assert hashlib.md5(stored.read_bytes()).hexdigest() == entry.md5


def test_only_the_chosen_splits_are_fetched(data, server):
    report = fetch(data, server, splits=("val",))
    val = [e for e in iter_manifest(data) if e.split == "val"]
    assert report.downloaded == len(val) and len(server.requests) == len(val)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"base_url": "ftp://mirror"},
            "--base-url must start with http:// or https://; received 'ftp://mirror'",
        ),
        ({"user_agent": "  "}, "--user-agent is empty"),
        ({"concurrency": 0}, "--concurrency is out of range; received 0"),
        ({"splits": ("train", "holdout")}, "unknown split\\(s\\) holdout"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        FetchOptions(**options)


def test_a_connection_dropped_mid_file_is_retried(data, server, synth):
    entry = next(iter_manifest(data))
    payload = (synth[1] / url_path(entry)[1:]).read_bytes()
    calls = []

    def drop_first(handler):
        calls.append(1)
        if len(calls) > 1:
            return False
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload[: len(payload) // 2])
        handler.close_connection = True
        return True

    server.behaviours[url_path(entry)] = drop_first
    report = fetch(data, server, retries=1)
    assert report.failed == 0 and len(calls) == 2
    assert hashlib.md5(local_image(data, entry).read_bytes()).hexdigest() == entry.md5
