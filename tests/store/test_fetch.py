"""HTTP download against a real local server: resume, Range quirks, Drive pages, errors."""

import pytest

from furrytag_cli.core.errors import DownloadError
from furrytag_cli.store import gdrive
from furrytag_cli.store.archive import MAGIC
from furrytag_cli.store.http import FetchPolicy, download
from tests.archivefactory import model_zip_bytes
from tests.httpserver import QUOTA_TEXT, FakeDrive, LocalServer, Reply, file_reply, serve_file

FAST = FetchPolicy(connect_timeout=2, read_timeout=2, retries=3, backoff=0.01, max_backoff=0.05)
BODY = model_zip_bytes()


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def fetch(url, dest, **kwargs):
    return download(url, dest, progress=False, policy=FAST, magic=MAGIC, **kwargs)


def test_direct_download_with_a_file_name(server, tmp_path):
    url = serve_file(
        server,
        "/m.zip",
        BODY,
        headers={"Content-Disposition": 'attachment; filename="tiny model.zip"'},
    )
    got = fetch(url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY
    assert (got.filename, got.size, got.resumed_from) == ("tiny model.zip", len(BODY), 0)


def test_progress_bar_and_retry_notes_go_to_stderr(server, tmp_path, capsys):
    url = serve_file(server, "/m.zip", BODY, cuts=[10_000])
    download(url, tmp_path / "m.part", progress=True, label="tiny", policy=FAST)
    err = capsys.readouterr().err
    assert "tiny" in err and "retrying" in err


def test_connection_cut_mid_body_is_resumed_with_range(server, tmp_path):
    url = serve_file(server, "/m.zip", BODY, cuts=[100_000])
    got = fetch(url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY
    first, second = server.hits("/m.zip")
    assert first.range_start is None
    assert second.range_start == 100_000
    assert second.headers["if-range"] == '"v1"'


def test_retry_budget_resets_while_bytes_keep_coming(server, tmp_path):
    url = serve_file(server, "/m.zip", BODY, cuts=[30_000] * 6)
    policy = FetchPolicy(retries=1, backoff=0.01, max_backoff=0.01)
    got = download(url, tmp_path / "m.part", progress=False, policy=policy)
    assert got.path.read_bytes() == BODY
    assert len(server.hits("/m.zip")) == 7


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url = serve_file(server, "/m.zip", BODY, ranges=False, cuts=[100_000])
    got = fetch(url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY  # not 100_000 bytes too many
    assert server.hits("/m.zip")[1].range_start == 100_000


def test_content_range_from_elsewhere_restarts_from_zero(server, tmp_path):
    url = serve_file(server, "/m.zip", BODY, range_offset=-10, cuts=[100_000])
    got = fetch(url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY
    assert [r.range_start for r in server.hits("/m.zip")] == [None, 100_000, None]


def test_partial_that_is_already_complete_is_accepted(server, tmp_path):
    url = serve_file(server, "/m.zip", BODY)
    part = tmp_path / "m.part"
    part.write_bytes(BODY)
    got = fetch(url, part)
    assert got.path.read_bytes() == BODY and got.resumed_from == len(BODY)


def test_truncated_body_without_content_length_is_not_detected_here(server, tmp_path):
    # Nothing in HTTP says the body was cut; the archive checks in the store catch it.
    url = serve_file(server, "/m.zip", BODY, content_length=False, cuts=[len(BODY) // 2])
    got = fetch(url, tmp_path / "m.part")
    assert got.size == len(BODY) // 2


def test_no_network_gives_up_after_bounded_retries(tmp_path):
    with LocalServer() as gone:
        url = gone.url("/m.zip")
    with pytest.raises(
        DownloadError, match="4 failed attempts.*cannot reach 127.0.0.1: Connection refused"
    ):
        fetch(url, tmp_path / "m.part")


def test_read_timeout_is_retried(server, tmp_path):
    calls = []

    def slow_then_fast(request):
        calls.append(request)
        return file_reply(request, BODY, delay=1.0 if len(calls) == 1 else 0.0)

    url = server.route("/m.zip", slow_then_fast)
    policy = FetchPolicy(read_timeout=0.2, retries=2, backoff=0.01)
    got = download(url, tmp_path / "m.part", progress=False, policy=policy)
    assert got.path.read_bytes() == BODY and len(calls) == 2


def test_rate_limit_backs_off_then_succeeds(server, tmp_path):
    calls = []

    def limited(request):
        calls.append(request)
        if len(calls) <= 2:
            return Reply(429, b"slow down", {"Retry-After": "0"})
        return file_reply(request, BODY)

    url = server.route("/m.zip", limited)
    assert fetch(url, tmp_path / "m.part").path.read_bytes() == BODY


def test_rate_limit_that_persists_suggests_a_mirror(server, tmp_path):
    url = server.route("/m.zip", lambda r: Reply(503, b"busy"))
    with pytest.raises(DownloadError, match=r"HTTP 503.*--url` to a mirror"):
        fetch(url, tmp_path / "m.part")
    assert len(server.hits("/m.zip")) == FAST.retries + 1


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("/missing.zip"), tmp_path / "m.part")
    assert len(server.hits("/missing.zip")) == 1


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_never_stored(server, tmp_path, content_type):
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in</body></html>"
    url = server.route("/m.zip", lambda r: Reply(200, page, {"Content-Type": content_type}))
    with pytest.raises(DownloadError, match=r"HTML page titled 'Sign in'.*" + url):
        fetch(url, tmp_path / "m.part")
    assert not (tmp_path / "m.part").exists()
    assert len(server.hits("/m.zip")) == 1  # a changed page is no reason to retry


def test_file_that_is_not_an_archive_is_refused_before_writing(server, tmp_path):
    url = serve_file(server, "/m.zip", b"GIF89a" + bytes(5000), content_type="image/gif")
    with pytest.raises(DownloadError, match="did not send the expected archive"):
        fetch(url, tmp_path / "m.part")
    assert not (tmp_path / "m.part").exists()


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../.bashrc"',
        'attachment; filename="/etc/passwd"',
        "attachment; filename*=UTF-8''..%2F..%2Fevil.zip",
        'attachment; filename="..%2Fevil.zip"',
        'attachment; filename=".."',
    ],
)
def test_hostile_content_disposition_is_refused(server, tmp_path, disposition):
    url = serve_file(server, "/m.zip", BODY, headers={"Content-Disposition": disposition})
    with pytest.raises(DownloadError, match="unsafe file name"):
        fetch(url, tmp_path / "m.part")
    assert not (tmp_path / "m.part").exists()
    assert not list(tmp_path.parent.glob("*evil*"))


def test_disk_too_small_is_caught_up_front(server, tmp_path):
    url = server.route(
        "/m.zip",
        lambda r: Reply(
            200,
            BODY,
            {"Content-Type": "application/zip", "Content-Length": str(1 << 60)},
            content_length=False,
        ),
    )
    with pytest.raises(DownloadError, match="not enough free space"):
        fetch(url, tmp_path / "m.part")
    assert not (tmp_path / "m.part").exists()


def test_drive_confirm_form_with_fresh_uuid(server, tmp_path):
    drive = FakeDrive(server, BODY)
    got = fetch(drive.url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY and got.filename == "model.zip"
    assert got.url.startswith(server.url("/download?"))
    assert len(server.hits("/uc")) == 1
    assert server.hits("/download")[0].query["uuid"] == drive.uuids[0]


def test_drive_download_cut_mid_body_resumes_at_the_confirmed_url(server, tmp_path):
    drive = FakeDrive(server, BODY, cuts=[70_000])
    got = fetch(drive.url, tmp_path / "m.part")
    assert got.path.read_bytes() == BODY
    assert [r.range_start for r in server.hits("/download")] == [None, 70_000]


@pytest.mark.parametrize("mode", ["link", "cookie"])
def test_drive_older_confirm_pages(server, tmp_path, mode):
    drive = FakeDrive(server, BODY, mode=mode)
    assert fetch(drive.url, tmp_path / "m.part").path.read_bytes() == BODY
    assert len(server.hits("/uc")) == 2


def test_drive_quota_page_shows_googles_words_without_retrying(server, tmp_path):
    drive = FakeDrive(server, BODY, mode="quota")
    with pytest.raises(DownloadError) as caught:
        fetch(drive.url, tmp_path / "m.part")
    assert QUOTA_TEXT in str(caught.value) and "--url" in str(caught.value)
    assert len(server.hits("/uc")) == 1
    assert not (tmp_path / "m.part").exists()


def test_drive_links_become_download_urls():
    file_id = FakeDrive.FILE_ID
    want = f"https://drive.google.com/uc?export=download&id={file_id}"
    assert (
        gdrive.normalize_url(f"https://drive.google.com/file/d/{file_id}/view?usp=sharing") == want
    )
    assert gdrive.normalize_url(f"https://drive.google.com/open?id={file_id}") == want
    assert (
        gdrive.normalize_url("https://example.org/file/d/x/view")
        == "https://example.org/file/d/x/view"
    )


def test_drive_form_pointing_to_plain_http_from_https_is_refused():
    page = (
        '<form id="download-form" action="http://evil.example/download">'
        '<input type="hidden" name="id" value="x"></form>'
    )
    with pytest.raises(DownloadError, match="not a safe HTTPS link"):
        gdrive.next_url(page, "https://drive.google.com/uc?id=x", [])
