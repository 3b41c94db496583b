"""The model store: install, integrity (pinned and trust-on-first-use), locking, Ctrl-C."""

import hashlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from furrytag_cli.core.errors import (
    ArchiveError,
    BundleError,
    DownloadError,
    IntegrityError,
    UsageError,
)
from furrytag_cli.store import layout as cache
from furrytag_cli.store.http import FetchPolicy
from furrytag_cli.store.install import (
    InstallSettings,
    ensure_model,
    install_from_file,
    install_from_url,
    install_model,
    verify_cached,
)
from furrytag_cli.store.registry import ModelEntry
from tests.archivefactory import model_zip, model_zip_bytes, zip_with_member
from tests.httpserver import FakeDrive, LocalServer, Reply, file_reply, serve_file

FAST = FetchPolicy(connect_timeout=2, read_timeout=5, retries=2, backoff=0.01, max_backoff=0.05)
BODY = model_zip_bytes()
SHA = hashlib.sha256(BODY).hexdigest()
INSTALL = (
    "import signal, sys\n"
    # Ctrl-C as in a terminal, even when this suite was started with SIGINT ignored.
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from furrytag_cli.store.install import InstallSettings, install_from_url\n"
    "print(install_from_url('m', sys.argv[1], InstallSettings(home=sys.argv[2])))\n"
)


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def quietly(home, **settings):
    """Install settings for the cache ``home``, without progress output."""
    return InstallSettings(home=home, progress=False, **settings)


def install(url, home, **settings):
    return install_from_url("m", url, quietly(home, **settings), policy=FAST)


def leftovers(home):
    """Anything in the cache besides installed models and the lock folder."""
    found = [p for p in (home / "downloads").glob("*")] if (home / "downloads").exists() else []
    models = home / "models"
    found += [p for p in models.glob(".*")] if models.exists() else []
    return found


def entry(url, sha256=None, name="m"):
    return ModelEntry(
        name=name,
        format="legacy",
        backbone="b",
        input_size=32,
        normalized=True,
        params="1",
        url=url,
        sha256=sha256,
    )


def test_install_records_what_it_fetched(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    bundle = install(url, furrytag_home)
    assert bundle == furrytag_home / "models" / "m" / "unpacked" / "tiny_model"
    assert (bundle / "saved_model.pb").is_file()
    manifest = cache.read_manifest("m", furrytag_home)
    assert manifest["source"] == url and manifest["sha256"] == SHA
    assert manifest["size"] == len(BODY) and manifest["pinned"] is False
    assert manifest["tree_sha256"] == cache.tree_digest(bundle.parent)
    assert manifest["installed"]
    assert leftovers(furrytag_home) == []


def test_cached_model_is_not_fetched_again(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    first = install(url, furrytag_home)
    assert install(url, furrytag_home) == first
    assert ensure_model(entry(url), home=furrytag_home, progress=False) == first
    assert len(server.hits("/m.zip")) == 1


def test_install_through_google_drive_confirm_form(server, furrytag_home):
    drive = FakeDrive(server, BODY)
    bundle = ensure_model(entry(drive.url), home=furrytag_home, progress=False, policy=FAST)
    assert (bundle / "saved_model.pb").is_file()
    assert cache.read_manifest("m", furrytag_home)["filename"] == "model.zip"


def test_pinned_sha256_match_installs(server, furrytag_home):
    install(serve_file(server, "/m.zip", BODY), furrytag_home, sha256=SHA.upper())
    assert cache.read_manifest("m", furrytag_home)["pinned"] is True


def test_sha256_mismatch_installs_nothing(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    with pytest.raises(IntegrityError, match=f"has sha256 {SHA}, but {'0' * 64} is pinned"):
        install(url, furrytag_home, sha256="0" * 64)
    assert not cache.model_dir("m", furrytag_home).exists()
    assert leftovers(furrytag_home) == []


def test_tampered_cache_is_refused_until_forced(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    bundle = install(url, furrytag_home)
    (bundle / "variables" / "variables.index").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="furrytag download m --force"):
        ensure_model(entry(url), home=furrytag_home, progress=False)
    with pytest.raises(IntegrityError):
        verify_cached("m", furrytag_home)
    assert install(url, furrytag_home, force=True) == bundle
    verify_cached("m", furrytag_home)


def test_file_added_to_the_cache_is_noticed(server, furrytag_home):
    bundle = install(serve_file(server, "/m.zip", BODY), furrytag_home)
    (bundle / "extra.py").write_text("import os")
    with pytest.raises(IntegrityError):
        verify_cached("m", furrytag_home)


def test_hash_pinned_later_must_match_the_cached_archive(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    install(url, furrytag_home)
    with pytest.raises(IntegrityError, match=f"installed from an archive with sha256 {SHA}"):
        ensure_model(entry(url, sha256="1" * 64), home=furrytag_home, progress=False)
    assert ensure_model(entry(url, sha256=SHA), home=furrytag_home, progress=False)


def test_truncated_body_without_length_is_caught_by_the_archive_check(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY, content_length=False, cuts=[len(BODY) - 500])
    with pytest.raises(ArchiveError, match="not a valid zip"):
        install(url, furrytag_home)
    assert not cache.model_dir("m", furrytag_home).exists()
    assert leftovers(furrytag_home) == []


def test_html_instead_of_a_zip_installs_nothing(server, furrytag_home):
    page = b"<html><head><title>Error</title></head><body>nope</body></html>"
    url = server.route("/m.zip", lambda r: Reply(200, page, {"Content-Type": "text/html"}))
    with pytest.raises(DownloadError, match="HTML page"):
        install(url, furrytag_home)
    assert not cache.model_dir("m", furrytag_home).exists()


def test_zip_slip_archive_installs_nothing(server, tmp_path, furrytag_home):
    evil = zip_with_member(tmp_path / "evil.zip", "tiny_model/../../../escaped.txt").read_bytes()
    with pytest.raises(ArchiveError, match=r"outside the archive's folder"):
        install(serve_file(server, "/m.zip", evil), furrytag_home)
    assert not cache.model_dir("m", furrytag_home).exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_corrupt_partial_from_an_earlier_run_is_fetched_again(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY)
    part = cache.partial_path("m", url, furrytag_home)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"PK\x03\x04" + bytes(5000))  # right start, wrong bytes
    assert (install(url, furrytag_home) / "saved_model.pb").is_file()
    assert [r.range_start for r in server.hits("/m.zip")] == [5004, None]
    assert cache.read_manifest("m", furrytag_home)["sha256"] == SHA


@pytest.mark.parametrize(
    "files, where",
    [
        ({"deep/er/saved_model.pb": b"pb", "deep/er/variables/v.index": b"v"}, "deep/er"),
        ({"furrytag.yaml": b"format: 1", "model.keras": b"k", "export/saved_model.pb": b"pb"}, ""),
    ],
)
def test_bundle_root_is_found_at_any_depth(tmp_path, furrytag_home, files, where):
    archive = model_zip(tmp_path / "m.zip", top="top", files=files)
    bundle = install_from_file("m", archive, quietly(furrytag_home))
    assert bundle == (furrytag_home / "models/m/unpacked/top" / where).resolve()


def test_archive_without_a_model_or_with_two_is_refused(tmp_path, furrytag_home):
    none = model_zip(tmp_path / "none.zip", files={"readme.txt": b"hi"})
    with pytest.raises(ArchiveError, match="holds no model"):
        install_from_file("m", none, quietly(furrytag_home))
    two = model_zip(tmp_path / "two.zip", files={"a/saved_model.pb": b"", "b/saved_model.pb": b""})
    with pytest.raises(ArchiveError, match="several models"):
        install_from_file("m", two, quietly(furrytag_home))
    assert not cache.model_dir("m", furrytag_home).exists()


def test_verify_callable_gates_the_install(tmp_path, furrytag_home):
    archive = model_zip(tmp_path / "m.zip")
    seen = []

    def refuse(bundle):
        seen.append((bundle / "saved_model.pb").is_file())
        raise BundleError("weights do not match the metadata")

    with pytest.raises(BundleError):
        install_from_file("m", archive, quietly(furrytag_home, verify=refuse))
    assert seen == [True]
    assert not cache.model_dir("m", furrytag_home).exists()
    assert leftovers(furrytag_home) == []
    bundle = install_from_file("m", archive, quietly(furrytag_home, verify=seen.append))
    assert seen[-1].name == bundle.name == "tiny_model"


def test_install_from_file_records_the_file_and_keeps_it(tmp_path, furrytag_home):
    archive = model_zip(tmp_path / "m.zip")
    install_from_file("m", archive, quietly(furrytag_home))
    manifest = cache.read_manifest("m", furrytag_home)
    assert manifest["source"] == archive.as_uri() and archive.is_file()


def test_install_model_takes_the_decisions_of_the_download_command(server, tmp_path, furrytag_home):
    archive = model_zip(tmp_path / "m.zip")
    local = install_model("m", from_file=archive, home=furrytag_home, progress=False)
    assert local.folder == cache.model_dir("m", furrytag_home)
    assert local.bundle.name == "tiny_model" and local.manifest["source"] == archive.as_uri()
    assert install_model("m", offline=True, home=furrytag_home).bundle == local.bundle

    url = serve_file(server, "/files/named-model.zip", BODY)
    fetched = install_model(url=url, home=furrytag_home, progress=False)
    assert fetched.name == "named-model" and fetched.manifest["source"] == url
    # A model installed from a URL is fetched again from there when forced.
    assert install_model("named-model", force=True, home=furrytag_home, progress=False).bundle
    assert len(server.hits("/files/named-model.zip")) == 2
    with pytest.raises(UsageError, match="to replace it, pass --url URL or --from-file"):
        install_model("m", force=True, home=furrytag_home)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"url": "https://x.org/m.zip", "from_file": "m.zip"}, "either --url or --from-file"),
        ({"name": "m", "offline": True, "force": True}, "--offline only checks a cached model"),
        ({"from_file": "m.zip"}, "--from-file needs the NAME"),
        ({"url": "ftp://x.org/m.zip"}, "--url takes an http:// or https:// address"),
        ({"url": "https://drive.google.com/uc"}, "cannot tell a model name from"),
        ({}, "give a model NAME"),
    ],
)
def test_install_model_refuses_arguments_that_do_not_fit(kwargs, message, furrytag_home):
    with pytest.raises(UsageError, match=message):
        install_model(home=furrytag_home, **kwargs)


def test_leftovers_of_a_crashed_install_are_cleared(tmp_path, furrytag_home):
    stale = furrytag_home / "models" / ".m~stage-123"
    stale.mkdir(parents=True)
    install_from_file("m", model_zip(tmp_path / "m.zip"), quietly(furrytag_home))
    assert not stale.exists()


def test_offline_says_what_is_cached_and_how_to_fetch(tmp_path, furrytag_home):
    install_from_file("other", model_zip(tmp_path / "o.zip"), quietly(furrytag_home))
    with pytest.raises(DownloadError) as caught:
        ensure_model(entry("https://example.org/m.zip"), home=furrytag_home, offline=True)
    message = str(caught.value)
    assert "not cached" in message and "cached there: other" in message
    assert "furrytag download m" in message and "--from-file ZIP m" in message
    assert ensure_model("other", home=furrytag_home, offline=True).name == "tiny_model"


def test_unknown_model_that_is_not_cached(furrytag_home):
    with pytest.raises(DownloadError, match="did you mean 'mobilenet_v3_224_2c'"):
        ensure_model("mobilenet_v3_224", home=furrytag_home)


def test_bad_names_and_hashes_are_refused(tmp_path, furrytag_home):
    archive = model_zip(tmp_path / "m.zip")
    for bad in ("../m", "m/x", ".hidden", ""):
        with pytest.raises(DownloadError, match="model name"):
            install_from_file(bad, archive, quietly(furrytag_home))
    with pytest.raises(DownloadError, match="64 hex digits"):
        install_from_file("m", archive, quietly(furrytag_home, sha256="abc"))


def test_two_processes_fetch_one_model_once(server, furrytag_home):
    url = serve_file(server, "/m.zip", BODY, chunk=16_384, delay=0.1)  # ~1.5 s
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INSTALL, url, str(furrytag_home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] != ""
    assert len(server.hits("/m.zip")) == 1
    assert sum("Waiting for another furrytag process" in err for _, err in outs) == 1
    verify_cached("m", furrytag_home)
    assert leftovers(furrytag_home) == []


def test_ctrl_c_leaves_no_model_and_a_resumable_partial(server, furrytag_home):
    release = threading.Event()

    def held_first_time(request):
        # The first answer stops after 40,960 bytes until the client has been stopped.
        held = 40_960 if request.range_start is None else None
        return file_reply(request, BODY, chunk=8192, hold_after=held, release=release)

    url = server.route("/m.zip", held_first_time)
    proc = subprocess.Popen(
        [sys.executable, "-c", INSTALL, url, str(furrytag_home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    part = cache.partial_path("m", url, furrytag_home)
    try:
        deadline = time.monotonic() + 60
        while (not part.exists() or part.stat().st_size < 40_000) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        release.set()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert not cache.model_dir("m", furrytag_home).exists()
    kept = part.stat().st_size
    assert 40_000 <= kept < len(BODY)

    install(url, furrytag_home)
    assert server.hits("/m.zip")[-1].range_start == kept
    assert cache.read_manifest("m", furrytag_home)["sha256"] == SHA
    assert not part.exists()
