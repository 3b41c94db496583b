"""Where ``furrytag tag`` writes: never over an input, never two outputs in one file, never
through a link out of --output-dir, never beside another live run; what is left after an
error, and messages that name what is wrong."""

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.clirunner import invoke, spawn
from tests.imagefactory import write_good_images


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


def leftovers(folder: Path) -> list[str]:
    """Temporary, partial and lock files under ``folder``."""
    ends = (".tmp", ".part", ".lock", ".rows")
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith(ends))


def test_outputs_that_are_one_file_are_refused_whatever_overwrite_says(
    run, native_bundle_dir, tmp_path
):
    good = write_good_images(tmp_path / "imgs")
    folder = tmp_path / "imgs"
    cases = [
        (("-o", tmp_path / "s.jsonl", "--embeddings", tmp_path / "s.jsonl"), "--embeddings"),
        (("-o", tmp_path / "f.jsonl", "--failures", tmp_path / "f.jsonl"), "the failure report"),
        (("-o", tmp_path / "t.paths.txt", "--embeddings", tmp_path / "t.npy"), "the paths file"),
        (("--embeddings", tmp_path / "e.npy", "--failures", tmp_path / "e.paths.txt"), "paths"),
    ]
    for args, named in cases:
        for extra in ((), ("--overwrite",)):
            result = run("tag", folder, "-m", native_bundle_dir, *args, *extra)
            assert result.code == 1, (args, result.stderr)
            line = result.stderr.strip().splitlines()[-1]
            assert line.startswith("Error: ") and " are one file; " in line and named in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # nothing written
    # One file reached two ways (a link to the folder) is one file too.
    (tmp_path / "same").symlink_to(tmp_path, target_is_directory=True)
    result = run(
        "tag", good["photo.jpg"], "-m", native_bundle_dir, "-o", tmp_path / "a.jsonl",
        "--failures", tmp_path / "same" / "a.jsonl",
    )  # fmt: skip
    assert result.code == 1 and "are one file" in result.stderr


def test_an_output_never_replaces_an_input(run, native_bundle_dir, tmp_path):
    good = write_good_images(tmp_path / "dir")
    image = good["photo.jpg"]
    before = image.read_bytes()
    (tmp_path / "link.jpg").symlink_to(image)
    os.link(image, tmp_path / "hard.jpg")
    for output in (image, tmp_path / "link.jpg", tmp_path / "hard.jpg"):
        for option in ("-o", "--embeddings", "--failures"):
            result = run(
                "tag", tmp_path / "dir", "-m", native_bundle_dir, option, output, "--overwrite"
            )
            assert result.code == 1, (option, output, result.stderr)
            assert f"is the input image {image}; an output never replaces an input" in (
                result.stderr
            )
    assert image.read_bytes() == before

    # An image named like a caption is never replaced by its own caption.
    pic = tmp_path / "cap" / "pic.txt"
    pic.parent.mkdir()
    shutil.copy(image, pic)
    result = run("tag", pic, "-m", native_bundle_dir, "-f", "txt", "--overwrite")
    assert result.code == 1 and "would replace the input image" in result.stderr
    assert pic.read_bytes() == before


def test_a_caption_that_cannot_be_written_fails_only_its_image(run, native_bundle_dir, tmp_path):
    good = write_good_images(tmp_path / "cap")
    (tmp_path / "cap" / "photo.txt").mkdir()
    result = run("tag", tmp_path / "cap", "-m", native_bundle_dir, "-f", "txt", "--overwrite")
    assert result.code == 3, result.stderr  # some inputs failed
    assert f"cannot write caption {tmp_path / 'cap' / 'photo.txt'}: Is a directory" in result.stderr
    captions = sorted(p.name for p in (tmp_path / "cap").glob("*.txt") if p.is_file())
    assert len(captions) == len(good) - 1 and "photo.txt" not in captions
    assert f"failed 1 of {len(good)} files" in result.stderr
    assert leftovers(tmp_path / "cap") == []


def test_a_caption_run_removes_what_a_killed_one_left_half_written(
    run, native_bundle_dir, tmp_path
):
    write_good_images(tmp_path / "cap")
    folder = tmp_path / "cap"
    stale = folder / ".photo.txt.0badf00d.tmp"  # a caption write killed before its rename
    live = folder / ".alpha.txt.1234abcd.tmp"  # another run's write, under way
    other = folder / ".notes.md.0badf00d.tmp"
    for path in (stale, live, other):
        path.write_text("fox, wol")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(live, (time.time() + 3600, time.time() + 3600))
    result = run("tag", folder, "-m", native_bundle_dir, "-f", "txt")
    assert result.code == 0, result.stderr
    assert not stale.exists() and live.exists() and other.exists()
    assert (folder / "photo.txt").read_text() != "fox, wol"


def test_captions_are_never_written_through_a_link_out_of_the_output_folder(
    run, native_bundle_dir, tmp_path
):
    write_good_images(tmp_path / "set" / "sub")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.txt").write_text("not yours\n")
    outd = tmp_path / "outd"
    outd.mkdir()
    (outd / "sub").symlink_to(elsewhere, target_is_directory=True)
    args = ("tag", tmp_path / "set", "-m", native_bundle_dir, "-f", "txt", "--output-dir", outd)
    result = run(*args, "--overwrite")
    assert result.code == 1
    assert f"{outd / 'sub'} is a symbolic link to {elsewhere}, outside --output-dir" in (
        result.stderr
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["photo.txt"]
    assert (elsewhere / "photo.txt").read_text() == "not yours\n"
    # A link that stays inside the output folder is fine.
    (outd / "sub").unlink()
    (outd / "real").mkdir()
    (outd / "sub").symlink_to(outd / "real", target_is_directory=True)
    assert run(*args, "-q").code == 0
    assert (outd / "real" / "photo.txt").is_file() and leftovers(outd) == []


def test_a_second_live_run_on_one_output_is_refused(run, native_bundle_dir, tmp_path):
    for i in range(60):
        write_good_images(tmp_path / "pile" / f"s{i}")
    out = tmp_path / "same.jsonl"
    first = spawn(
        "tag", tmp_path / "pile", "-m", native_bundle_dir, "-o", out, "--batch-size", "1",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while not (out.exists() and out.stat().st_size) and first.poll() is None:
            time.sleep(0.02)
        second = run("tag", tmp_path / "pile", "-m", native_bundle_dir, "-o", out, "--overwrite")
        if first.poll() is None:  # it was still writing when the second run started
            assert second.code == 1
            assert f"{out} is being written by another furrytag run" in second.stderr
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    lines = out.read_text().splitlines()
    assert len(lines) == 600 and len({json.loads(line)["path"] for line in lines}) == 600
    assert leftovers(tmp_path) == []


def test_the_failure_report_escapes_paths_like_the_jsonl(run, native_bundle_dir, tmp_path):
    folder = tmp_path / "odd"
    write_good_images(folder)
    names = [b"new\nline.png", b"tab\there.png", b"caf\xe9.png", b"fine\xff.jpg"]
    for name in names:
        Path(os.fsdecode(os.fsencode(folder) + b"/" + name)).write_bytes(b"not an image")
    out = tmp_path / "out.jsonl"
    result = run("tag", folder, "-m", native_bundle_dir, "-o", out)
    assert result.code == 3
    report = (tmp_path / "out.jsonl.failures.tsv").read_text(encoding="utf-8").splitlines()
    assert report[0] == "path\treason" and len(report) == 1 + len(names)
    shown = [f"{folder}/new\\nline.png", f"{folder}/tab\\there.png", f"{folder}/caf\\xe9.png"]
    rows = [row.split("\t") for row in report[1:]]
    assert all(len(row) == 2 for row in rows)
    assert sorted(path for path, _ in rows) == sorted([*shown, f"{folder}/fine\\xff.jpg"])
    for path, reason in rows:
        assert f"furrytag: skipped {path}: {reason}" in result.stderr
    assert "\\udc" not in result.stderr


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("output", ["stdout", "out.jsonl", "out.json", "out.csv"])
def test_errors_leave_no_temporary_files(native_bundle_dir, tmp_path, output):
    for i in range(4):
        write_good_images(tmp_path / "art" / f"part{i}")
    folder = tmp_path / "out"
    folder.mkdir()
    # To standard output only the embeddings fill up; to a file, the file fills up first.
    bulky = "--long" if output.endswith(".csv") else "--all-scores"
    where = () if output == "stdout" else ("-o", folder / output, bulky)
    proc = spawn(
        "tag", tmp_path / "art", "-m", native_bundle_dir, *where, "--batch-size", "2",
        "--embeddings", folder / "e.npy",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=_file_size_limit(6_000),
    )  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "File too large" in err, err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["keras", "renamed-zip"])
def test_a_model_that_fails_to_load_leaves_nothing_in_the_cache(run, tmp_path, furrytag_home, kind):
    image = write_good_images(tmp_path / "imgs")["photo.jpg"]
    model = tmp_path / ("x.keras" if kind == "keras" else "weights.zip")
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\0" * 64)
    result = run("tag", image, "-m", model)
    assert result.code == 1 and f"no model found in {model}" in result.stderr
    unpacked = furrytag_home / "unpacked"
    assert not unpacked.exists() or list(unpacked.iterdir()) == []


def test_a_cache_home_that_is_a_file_or_read_only_names_the_variable(
    run, native_bundle_dir, tmp_path, monkeypatch
):
    image = write_good_images(tmp_path / "imgs")["photo.jpg"]
    zipped = Path(shutil.make_archive(str(tmp_path / "b"), "zip", native_bundle_dir.parent))
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("FURRYTAG_HOME", str(home))
    result = run("tag", image, "-m", zipped)
    assert result.code == 1
    assert f"the model cache {home} (FURRYTAG_HOME) is a file, not a folder" in result.stderr
    result = run("download", "--url", "http://127.0.0.1:9/tiny.zip")
    assert result.code == 1 and "(FURRYTAG_HOME) is a file, not a folder" in result.stderr

    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    proc = spawn(
        "tag", image, "-m", zipped, env={"FURRYTAG_HOME": str(readonly)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_without_root_file_access,
    )  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert f"the model cache {readonly} (FURRYTAG_HOME) cannot be written (Permission" in err


def _without_root_file_access():
    # As root every folder is writable; dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    # makes the exec'd furrytag obey permissions like anyone else.
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


def test_devices_and_fifos_are_not_regular_files_and_dev_null_is_an_output(
    run, native_bundle_dir, tmp_path
):
    good = write_good_images(tmp_path / "imgs")
    os.mkfifo(tmp_path / "pipe.png")
    result = run(
        "tag", "/dev/zero", tmp_path / "pipe.png", good["photo.jpg"], "-m", native_bundle_dir
    )
    assert result.code == 3
    assert "/dev/zero: not a regular file (a character device)" in result.stderr
    assert "pipe.png: not a regular file (a FIFO)" in result.stderr
    for fmt in ("jsonl", "json", "csv"):
        result = run(
            "tag", good["photo.jpg"], "-m", native_bundle_dir, "-f", fmt, "-o", "/dev/null"
        )
        assert result.code == 0, (fmt, result.stderr)
    assert not Path("/dev/.null.lock").exists() and not Path("/dev/null.failures.tsv").exists()
