"""kill -9 at random points, then run again: nothing lost, nothing twice, all verified.

Each test kills a real ``furrytag`` subprocess with SIGKILL several times (at seeded
random moments: during start-up and mid-work), reruns it, and compares the end state with
a clean run. The numbers of each test (cycles, outputs lost) are printed (``pytest -s``).
"""

import csv
import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from furrytag_cli.dataset.manifest import iter_manifest, local_image
from furrytag_cli.store import layout as cache
from furrytag_cli.store.install import verify_cached
from tests.clirunner import invoke, spawn
from tests.datasetfactory import delay, serve, synth_dataset
from tests.httpserver import LocalServer, file_reply
from tests.imagefactory import write_good_images

pytestmark = pytest.mark.slow


def kill_when(
    proc: subprocess.Popen, ready, seconds: float, limit: float = 120, signum=signal.SIGKILL
) -> bool:
    """Send ``signum`` to ``proc`` ``seconds`` after ``ready()`` holds and wait for it to
    end; False when it ended first."""
    deadline = time.monotonic() + limit
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)
    if proc.poll() is not None:
        return False
    proc.send_signal(signum)
    proc.wait(timeout=120)
    return True


def finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def lines_in(folder: Path, pattern: str) -> int:
    """The most lines any file matching ``pattern`` in ``folder`` holds (gone files: 0)."""
    counts = [0]
    for path in folder.glob(pattern):
        try:
            counts.append(path.read_bytes().count(b"\n"))
        except FileNotFoundError:
            continue
    return max(counts)


def test_tag_killed_again_and_again_then_resumed_equals_a_clean_run(
    native_bundle_dir, tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "art"
    for i in range(10):
        write_good_images(folder / f"set{i}")
    clean = tmp_path / "clean.jsonl"
    done = invoke(
        capsys,
        monkeypatch,
        "tag",
        folder,
        "-m",
        native_bundle_dir,
        "-o",
        clean,
        "--all-scores",
        "--batch-size",
        "1",
        "--engine",
        "keras",
        "-q",
    )
    assert done.code == 0, done.stderr
    expected = {r["path"]: r for r in map(json.loads, clean.read_text().splitlines())}
    assert len(expected) == 100

    out = tmp_path / "killed.jsonl"
    command = (
        "tag",
        folder,
        "-m",
        native_bundle_dir,
        "-o",
        out,
        "--all-scores",
        "--batch-size",
        "1",
        "--resume",
        # The keras engine imports TensorFlow (seconds) and runs one image a call: a run
        # lasts long enough for the kills below to land at start-up and mid-run. A
        # converted model on the CPU path tags these 100 images faster than the poll.
        "--engine",
        "keras",
        "-q",
    )
    rng = random.Random(9)
    kills, counts = 0, []
    for cycle in range(6):
        proc = spawn(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if cycle == 0:  # during start-up, before anything is written
            killed = kill_when(proc, lambda: True, rng.uniform(0.5, 3))
        else:  # mid-run, once this run has written a random number of records
            goal = lines(out) + rng.randint(3, 15)
            killed = kill_when(proc, lambda: lines(out) >= goal, 0)
        kills += killed
        counts.append(lines(out))
        if not killed:
            assert proc.returncode == 0
            break
    finish(spawn(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    got = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [r["path"] for r in got]
    assert len(paths) == len(set(paths)), "a file was written twice"
    assert set(paths) == set(expected), "a file is missing"
    assert all(r == expected[r["path"]] for r in got), "scores differ from the clean run"
    print(f"\ntag: {kills} kills, lines after each: {counts}; outputs lost: 0 of {len(expected)}")
    assert kills >= 4


def pile(folder: Path, sets: int) -> Path:
    """``sets`` × 10 images under ``folder``."""
    first = write_good_images(folder / "s0")
    for i in range(1, sets):
        shutil.copytree(first["photo.jpg"].parent, folder / f"s{i}")
    return folder


def leftovers(folder: Path) -> list[str]:
    ends = (".tmp", ".part", ".lock", ".rows")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(ends))


def embeddings_of(target: Path) -> dict[str, np.ndarray]:
    paths = target.with_suffix(".paths.txt").read_text().split("\n")[:-1]
    rows = np.load(target)
    assert len(paths) == len(set(paths)) == len(rows), "embeddings rows and paths disagree"
    return dict(zip(paths, rows))


def read_output(path: Path, fmt: str) -> dict[str, object]:
    """Path → the record (JSON, JSONL) or the rows (CSV) of an output; no path twice."""
    if fmt == "csv":
        rows = list(csv.reader(path.read_text().splitlines()))[1:]
        paths = [row[0] for row in rows]
        assert len(paths) == len(set(paths)), "an image was written twice"
        return {row[0]: row for row in rows}
    text = path.read_text()
    records = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
    assert len(records) == len({r["path"] for r in records}), "an image was written twice"
    return {r["path"]: r for r in records}


@pytest.mark.parametrize(
    ("signum", "code", "fmt"), [(signal.SIGTERM, 143, "json"), (signal.SIGHUP, 129, "jsonl")]
)
def test_sigterm_and_sighup_stop_after_the_batch_like_ctrl_c(
    native_bundle_dir, tmp_path, signum, code, fmt
):
    images = pile(tmp_path / "pile", 80)
    out, emb = tmp_path / f"t.{fmt}", tmp_path / "t.npy"
    proc = spawn(
        "tag", images, "-m", native_bundle_dir, "-f", fmt, "-o", out, "--embeddings", emb,
        "--batch-size", "2", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # The first batch is in the output, or in a hidden file beside it (JSON).
    sent = kill_when(proc, lambda: lines_in(tmp_path, f"*t.{fmt}*") >= 2, 0, signum=signum)
    _, err = proc.communicate(timeout=120)
    if not sent:
        pytest.skip("the run ended before the signal could be sent")
    assert proc.returncode == code, err
    name = signal.Signals(signum).name
    assert f"Stopping after the current batch ({name})" in err and "Tagged " in err
    records = read_output(out, fmt)
    assert 2 <= len(records) < 800
    assert set(embeddings_of(emb)) == set(records)  # every output closed at the same batch
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_a_killed_run_resumes_every_output_kind(
    native_bundle_dir, tmp_path, capsys, monkeypatch, fmt
):
    images = pile(tmp_path / "pile", 10)
    options = ("-m", native_bundle_dir, "-f", fmt, "--batch-size", "1", "-q")
    clean_out, clean_emb = tmp_path / "clean" / f"c.{fmt}", tmp_path / "clean" / "c.npy"
    clean_out.parent.mkdir()
    done = invoke(
        capsys, monkeypatch, "tag", images, *options, "-o", clean_out, "--embeddings", clean_emb
    )
    assert done.code == 0, done.stderr

    out, emb = tmp_path / f"k.{fmt}", tmp_path / "k.npy"
    command = ("tag", images, *options, "-o", out, "--embeddings", emb)
    written = out if fmt == "jsonl" else out.with_name(f".{out.name}.part")
    proc = spawn(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = lambda: lines_in(tmp_path, f"*k.{fmt}*") >= 5  # noqa: E731
    assert kill_when(proc, ready, 0), "the run ended before the kill"
    kept = lines(written)
    assert emb.with_name(".k.npy.part").stat().st_size > 0 and not emb.exists()

    resumed = invoke(capsys, monkeypatch, *command, "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "recovered the embeddings of a stopped run from" in resumed.stderr
    if fmt != "jsonl":
        assert f"recovered {kept} results of a stopped run from {written}" in resumed.stderr
    assert leftovers(tmp_path) == []
    expected, got = read_output(clean_out, fmt), read_output(out, fmt)
    assert set(got) == set(expected) and len(got) == 100
    assert all(got[path] == expected[path] for path in got), "results differ from a clean run"
    vectors, reference = embeddings_of(emb), embeddings_of(clean_emb)
    assert set(vectors) == set(reference)
    assert all(np.allclose(vectors[p], reference[p], atol=1e-6) for p in vectors)


def test_download_killed_mid_body_resumes_to_a_verified_model(tmp_path, furrytag_home):
    from tests.modelfactory import make_native_bundle

    bundle = make_native_bundle(tmp_path / "build" / "tiny-model")
    body = Path(
        shutil.make_archive(str(tmp_path / "tiny-model"), "zip", bundle.parent, "tiny-model")
    ).read_bytes()
    rng = random.Random(4)
    with LocalServer() as server:
        url = server.route("/tiny-model.zip", lambda r: file_reply(r, body, chunk=4096, delay=0.03))
        part = cache.partial_path("tiny-model", url, furrytag_home)
        kills, kept = 0, []
        for _ in range(3):
            proc = spawn("download", "--url", url, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            grown = part.stat().st_size if part.exists() else 0
            target = grown + rng.uniform(0.1, 0.3) * len(body)
            kills += kill_when(proc, lambda: part.exists() and part.stat().st_size >= target, 0)
            kept.append(part.stat().st_size)
            assert not (cache.model_dir("tiny-model", furrytag_home) / "unpacked").exists()
        finish(spawn("download", "--url", url, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        starts = [r.range_start for r in server.hits("/tiny-model.zip")]
    assert kills == 3 and kept == sorted(kept) and kept[-1] < len(body)
    assert starts[0] is None and all(s and s > 0 for s in starts[1:])  # every rerun resumed
    assert (
        cache.read_manifest("tiny-model", furrytag_home)["sha256"]
        == hashlib.sha256(body).hexdigest()
    )
    verify_cached("tiny-model", furrytag_home)
    assert not part.exists()
    print(f"\ndownload: {kills} kills at {kept} of {len(body)} bytes; resumed from {starts[1:]}")


def test_dataset_fetch_killed_then_rerun_has_every_image_verified(tmp_path):
    data, site, _ = synth_dataset(tmp_path / "synth", posts=40)
    entries = list(iter_manifest(data))
    rng = random.Random(2)
    with serve(site) as server:
        for entry in entries:  # slow enough to be caught mid-run
            server.behaviours[f"/data/{entry.md5[:2]}/{entry.md5[2:4]}/{entry.md5}.{entry.ext}"] = (
                delay(0.15)
            )
        command = (
            "dataset",
            "fetch",
            "--data",
            data,
            "--base-url",
            server.url,
            "--rate",
            "0",
            "--concurrency",
            "2",
            "--retries",
            "0",
            "-q",
        )
        stored = lambda: sum(local_image(data, e) is not None for e in entries)  # noqa: E731
        kills, counts = 0, []
        for _ in range(3):
            proc = spawn(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            start = stored()
            kills += kill_when(proc, lambda: stored() > start, rng.uniform(0, 0.5))
            counts.append(stored())
        server.behaviours.clear()
        err = finish(spawn(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert kills == 3 and 0 < counts[0] <= counts[-1] < len(entries), (counts, err)
    for entry in entries:
        path = local_image(data, entry)
        assert path is not None and hashlib.md5(path.read_bytes()).hexdigest() == entry.md5
    leftovers = [p for p in (data / "images").rglob("*") if p.is_file() and p.suffix == ".part"]
    assert leftovers == []
    print(f"\ndataset fetch: {kills} kills with {counts} of {len(entries)} stored; none lost")
