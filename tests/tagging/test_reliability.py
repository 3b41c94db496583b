"""Faults from RELIABILITY.md that no other test module covers (see docs/reliability.md)."""

import ctypes
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.core.errors import DownloadError
from furrytag_cli.store import gdrive
from furrytag_cli.store.http import FetchPolicy, download
from tests.clirunner import invoke, spawn
from tests.httpserver import FakeDrive, LocalServer, Reply
from tests.imagefactory import write_good_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


@pytest.fixture(scope="module")
def tagger(native_bundle_dir):
    from furrytag_cli import Tagger

    return Tagger(native_bundle_dir, notify=None)


def scores_of(tagger, paths):
    """Each file's raw score rows (heads and rating) in one array, or its failure reason."""
    outcomes = [s for batch in tagger.score_batches(paths) for s in batch]
    return [
        np.concatenate(
            [
                *(s.scores.heads[h][s.row] for h in sorted(s.scores.heads)),
                np.ravel(s.scores.rating[s.row]),
            ]
        )
        if s.ok
        else s.reason
        for s in outcomes
    ]


def reference_scores(tagger, pixels):
    scores = tagger.scores([pixels])
    return np.concatenate(
        [*(scores.heads[h][0] for h in sorted(scores.heads)), np.ravel(scores.rating[0])]
    )


def pixels(seed, h=40, w=56, c=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --- 2: Drive page markup changed --------------------------------------------------------


def test_drive_page_with_unknown_markup_names_the_url_and_is_not_retried(tmp_path):
    page = b"<html><head><title>Google Drive</title></head><body><div>New look!</div></body></html>"
    with LocalServer() as server:
        server.route("/uc", lambda r: Reply(200, page, {"Content-Type": "text/html"}))
        url = gdrive.drive_url(FakeDrive.FILE_ID, base=server.url("/uc"))
        with pytest.raises(DownloadError) as caught:
            download(
                url,
                tmp_path / "m.part",
                progress=False,
                policy=FetchPolicy(retries=3, backoff=0.01),
            )
        assert len(server.hits("/uc")) == 1
    message = str(caught.value)
    assert url in message and "markup changed" in message and "--url" in message
    assert not (tmp_path / "m.part").exists()


# --- 18, 21, 23, 24, 26: images ------------------------------------------------------------


def test_wrong_extensions_are_judged_by_content(run, native_bundle_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(pixels(1)).save(folder / "really-a-png.jpg", "PNG")
    Image.fromarray(pixels(2)).save(folder / "really-a-jpeg.png", "JPEG")
    Image.fromarray(pixels(3)).save(folder / "really-a-gif.webp", "GIF")
    (folder / "really-text.bmp").write_text("hello\n")
    result = run("tag", folder, "-m", native_bundle_dir, "-o", tmp_path / "out.jsonl")
    assert result.code == 3
    assert sorted(Path(r["path"]).name for r in records(tmp_path / "out.jsonl")) == [
        "really-a-gif.webp",
        "really-a-jpeg.png",
        "really-a-png.jpg",
    ]
    assert re.search(
        r"really-text\.bmp\tnot a supported image",
        (tmp_path / "out.jsonl.failures.tsv").read_text(),
    )


def test_animated_png_and_webp_give_their_first_frame(tagger, tmp_path):
    first, second = Image.fromarray(pixels(4)), Image.fromarray(pixels(5))
    first.save(tmp_path / "anim.png", save_all=True, append_images=[second], duration=40)
    first.save(tmp_path / "anim.webp", save_all=True, append_images=[second], lossless=True)
    first.save(tmp_path / "still.png")
    assert (
        Image.open(tmp_path / "anim.png").n_frames
        == Image.open(tmp_path / "anim.webp").n_frames
        == 2
    )
    apng, webp, still = scores_of(
        tagger, [tmp_path / "anim.png", tmp_path / "anim.webp", tmp_path / "still.png"]
    )
    np.testing.assert_allclose(apng, still, atol=1e-6)
    np.testing.assert_allclose(webp, still, atol=1e-6)


def test_modes_tensorflow_cannot_decode_come_out_as_the_right_rgb(tagger, tmp_path):
    rgb = pixels(6)
    gray = rgb[..., 0]
    cases = {
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), {"quality": 100}),
        "deep16.png": (Image.fromarray(gray.astype(np.uint16) * 257), {}),
        "gray.png": (Image.fromarray(gray, "L"), {}),
        "gray-alpha.png": (Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA"), {}),
        "bgra32.bmp": (Image.fromarray(np.dstack([rgb, np.full_like(gray, 255)]), "RGBA"), {}),
        "palette8.bmp": (Image.fromarray(rgb).convert("P"), {}),
        "mono1.bmp": (Image.fromarray(gray > 127), {}),
    }
    for name, (image, options) in cases.items():
        image.save(tmp_path / name, **options)
    got = scores_of(tagger, [tmp_path / name for name in cases])
    for name, scores in zip(cases, got):
        with Image.open(tmp_path / name) as image:
            expected = (
                (np.asarray(image, np.uint16) >> 8).astype(np.uint8)
                if name == "deep16.png"
                else np.asarray(image.convert("RGB"))
            )
        if expected.ndim == 2:
            expected = np.repeat(expected[..., None], 3, axis=2)
        assert not isinstance(scores, str), f"{name}: {scores}"
        np.testing.assert_allclose(
            scores, reference_scores(tagger, expected), atol=2e-3, err_msg=name
        )


def test_exif_orientation_is_applied_for_native_bundles(tagger, tmp_path):
    plain = pixels(7, h=32, w=64)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    Image.fromarray(plain).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    with Image.open(tmp_path / "rotated.jpg") as image:
        stored = np.asarray(image.convert("RGB"))
    (got,) = scores_of(tagger, [tmp_path / "rotated.jpg"])
    np.testing.assert_allclose(got, reference_scores(tagger, np.rot90(stored, k=-1)), atol=1e-5)
    assert not np.allclose(got, reference_scores(tagger, stored), atol=1e-5)


def test_symlink_loops_odd_files_and_non_utf8_names(run, native_bundle_dir, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.fromarray(pixels(8)).save(folder / "fine.png")
    Image.fromarray(pixels(9)).save(os.fsencode(folder) + b"/caf\xe9.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a folder that holds itself
    (folder / "a.png").symlink_to(folder / "b.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "folder.png").mkdir()
    result = run("tag", folder, "-m", native_bundle_dir, "-o", tmp_path / "out.jsonl")
    assert result.code == 3
    assert sorted(r["path"] for r in records(tmp_path / "out.jsonl")) == [
        f"{folder}/caf\\xe9.png",
        f"{folder}/fine.png",
    ]
    report = (tmp_path / "out.jsonl.failures.tsv").read_text()
    assert re.search(r"a\.png\tcannot read: Too many levels of symbolic links", report)
    assert re.search(r"pipe\.jpg\tnot a regular file \(a FIFO\)", report)
    again = run("tag", folder, "-m", native_bundle_dir, "-o", tmp_path / "out.jsonl", "--resume")
    assert "skipped 2 already done" in again.stderr  # the odd name keys resume too


def _without_root_file_access():
    # Root reads any file; dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    # bounding set makes the exec'd furrytag obey file permissions like anyone else.
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


@pytest.mark.slow
def test_unreadable_file_is_reported(native_bundle_dir, tmp_path):
    folder = tmp_path / "perm"
    folder.mkdir()
    Image.fromarray(pixels(10)).save(folder / "fine.png")
    Image.fromarray(pixels(11)).save(folder / "secret.png")
    (folder / "secret.png").chmod(0)
    proc = spawn(
        "tag",
        folder,
        "-m",
        native_bundle_dir,
        "-o",
        tmp_path / "out.jsonl",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_without_root_file_access,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "secret.png: cannot read: Permission denied" in err
    assert [Path(r["path"]).name for r in records(tmp_path / "out.jsonl")] == ["fine.png"]


# --- 27: safe mode ------------------------------------------------------------------------


def test_nothing_in_the_package_turns_keras_safe_mode_off():
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "furrytag_cli").rglob("*.py"))
    assert "safe_mode=True" in source
    assert not re.search(r"safe_mode\s*=\s*(False|not\b)|enable_unsafe_deserialization", source)


# --- 32: a second Ctrl-C ------------------------------------------------------------------

SECOND_CTRL_C = """
import time
from furrytag_cli.core.interrupt import graceful_interrupt
with graceful_interrupt() as stop:
    print("ready", flush=True)
    while True:  # a batch that never ends
        time.sleep(0.01)
"""


def test_second_ctrl_c_exits_at_once_with_130():
    proc = subprocess.Popen(
        [sys.executable, "-c", SECOND_CTRL_C],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # the first asks to stop after the batch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "press Ctrl-C again to quit at once" in err


# --- 33: disk full ------------------------------------------------------------------------


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_disk_full_is_a_clear_error_and_keeps_what_was_written(native_bundle_dir, tmp_path, fmt):
    folder = tmp_path / "art"
    for i in range(4):
        write_good_images(folder / f"part{i}")
    out = tmp_path / f"out.{fmt}"
    if fmt == "json":
        out.write_text('[{"earlier": "run"}]\n')
    proc = spawn(
        "tag",
        folder,
        "-m",
        native_bundle_dir,
        "--engine",
        "keras",
        "-f",
        fmt,
        "-o",
        out,
        "--batch-size",
        "2",
        "--overwrite",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_file_size_limit(12_000),
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert re.search(rf"^Error: cannot write {re.escape(str(out))}: File too large; ", err, re.M)
    if fmt == "json":
        assert json.loads(out.read_text()) == [{"earlier": "run"}]
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
        return
    text = out.read_text()
    assert text.endswith("\n") and 0 < len(text) <= 12_000
    kept = [json.loads(line)["path"] for line in text.splitlines()]
    assert len(kept) % 2 == 0  # whole batches only
    proc = spawn(
        "tag",
        folder,
        "-m",
        native_bundle_dir,
        "--engine",
        "keras",
        "-o",
        out,
        "--resume",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"skipped {len(kept)} already done" in err
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 40 and paths[: len(kept)] == kept


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_behind_standard_output_is_one_error_line(native_bundle_dir, tmp_path):
    write_good_images(tmp_path / "art")
    with open("/dev/full", "w") as full:
        proc = spawn(
            "tag",
            tmp_path / "art",
            "-m",
            native_bundle_dir,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert err.splitlines()[-1].startswith("Error: No space left on device")
    assert "Traceback" not in err


# --- 18-20: the fuzz run, short ---------------------------------------------------------


@pytest.mark.slow
def test_short_fuzz_run_loses_nothing_and_crashes_never(native_bundle_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "fuzz_images.py"),
            "--count",
            "200",
            "--big",
            "2",
            "--bundle",
            str(native_bundle_dir),
            "--workdir",
            str(tmp_path / "fuzz"),
            "--max-rss-mb",
            "3000",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "files fuzzed      202" in proc.stdout
    assert re.search(r"crashes +0 ", proc.stdout) and re.search(r"silent drops +0\n", proc.stdout)


# --- the table in docs/reliability.md ------------------------------------------------------


def test_the_table_names_real_tests():
    table = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(\w+/test_\w+\.py)::(test_\w+)`", table))
    assert len(named) > 60
    missing = [
        f"{file}::{name}"
        for file, name in sorted(named)
        if not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
    ]
    assert missing == []
    rows = re.findall(r"^\| (\d+) \|", table, re.M)
    assert rows == [str(n) for n in range(1, 39)]
