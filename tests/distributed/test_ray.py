"""Tagging on a local Ray cluster: the same results as ``furrytag tag``, resumable, and
exactly once when a model worker is killed."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from furrytag_cli.cli.conventions import PARTIAL
from tests.clirunner import invoke
from tests.imagefactory import write_bad_images, write_good_images

pytestmark = pytest.mark.slow

WORKER_TITLE = "ray::MapWorker(MapBatches(ModelWorker))"


class Stop(Exception):
    """Stops a run from its shard callback, as Ctrl-C or a lost driver would."""


def model_worker_pids() -> set[int]:
    """The live processes of this session's model workers (descendants of this process,
    which started the cluster; Ray names them by their class)."""
    parents, titles = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
            titles[int(entry.name)] = title

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return {pid for pid, title in titles.items() if title.startswith(WORKER_TITLE) and ours(pid)}


def test_same_tags_and_scores_as_tag_on_one_machine(
    ray_cluster, native_bundle_dir, tmp_path, capsys, monkeypatch
):
    # Relative paths, as people type them: the workers, elsewhere, still find the files.
    monkeypatch.chdir(tmp_path)
    folder = Path("art")
    write_good_images(folder)
    write_bad_images(folder / "bad")
    single = invoke(
        capsys,
        monkeypatch,
        "tag",
        folder,
        "--model",
        native_bundle_dir,
        "--all-scores",
        "--device",
        "cpu",
        "-o",
        tmp_path / "one.jsonl",
    )
    assert single.code == PARTIAL  # the bad images
    on_ray = invoke(
        capsys,
        monkeypatch,
        "tag",
        folder,
        "--model",
        native_bundle_dir,
        "--ray",
        "--batch-size",
        "4",
        "--shard-rows",
        "5",
        "-o",
        tmp_path / "shards",
    )
    assert on_ray.code == PARTIAL, on_ray.stderr
    assert "Tagged 10, skipped 0 already done, failed 5 of 15 files" in on_ray.stderr

    from furrytag_cli.distributed.shards import read_results

    expected = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    records, failures = read_results(tmp_path / "shards")
    assert sorted(r["path"] for r in records) == sorted(r["path"] for r in expected)
    # The same decoder, engine and predictor: the very same records, to the last digit.
    by_path = {r["path"]: r for r in records}
    for theirs in expected:
        assert by_path[theirs["path"]] == theirs
    report = (tmp_path / "one.jsonl.failures.tsv").read_text().splitlines()[1:]
    assert sorted((f["path"], f["reason"]) for f in failures) == sorted(
        tuple(line.split("\t")) for line in report
    )
    assert len(list((tmp_path / "shards").glob("part-*.parquet"))) >= 2
    assert not list((tmp_path / "shards").rglob(".part-*"))

    # pandas reads the folder: the results alone (the failures are in _failures/).
    import pandas

    table = pandas.read_parquet(tmp_path / "shards")
    assert len(table) == 10 and set(table.columns) >= {"path", "tags", "scores", "model"}


def test_resume_finishes_a_stopped_run_without_duplicates(
    ray_cluster, native_bundle_dir, ray_images, tmp_path
):
    from furrytag_cli.distributed.run import RayJob, RaySettings, run_on_ray, tag_on_ray
    from furrytag_cli.distributed.shards import read_results

    source = ray_images.resolve().as_uri()  # file:///...: read through pyarrow's file systems
    out = tmp_path / "out"
    job = RayJob(
        model=native_bundle_dir, fmt="jsonl", settings=RaySettings(batch_size=3, shard_rows=3)
    )

    def stop(summary):
        raise Stop

    with pytest.raises(Stop):
        run_on_ray([source], out, job, on_shard=stop)
    first, _ = read_results(out)
    assert 3 <= len(first) < 24
    with pytest.raises(Exception, match="--resume"):
        run_on_ray([source], out, job)

    summary = run_on_ray([source], out, dataclasses.replace(job, resume=True))
    assert summary.skipped == len(first)
    records, failures = read_results(out)
    paths = Counter(r["path"] for r in records)
    assert failures == []
    assert sorted(paths) == sorted(
        f"{source}/img{i:02d}.{'png' if i % 3 == 0 else 'jpg'}" for i in range(24)
    )
    assert max(paths.values()) == 1
    assert all(r in records for r in first)  # the first run's shards are kept as they were
    # The Python API takes RayJob's fields as keywords; with nothing left, it writes nothing.
    again = tag_on_ray([source], out, model=native_bundle_dir, fmt="jsonl", resume=True)
    assert again == out and read_results(out)[0] == records


def test_images_in_a_bucket_tag_into_a_bucket_and_resume_from_it(
    ray_cluster, s3_bucket, native_bundle_dir, ray_images, tmp_path, capsys, monkeypatch
):
    import boto3

    from furrytag_cli.distributed.shards import read_results

    client = boto3.client("s3")
    for image in sorted(ray_images.iterdir()):
        client.upload_file(str(image), s3_bucket, f"art/{image.name}")
    source, uri = f"s3://{s3_bucket}/art", f"s3://{s3_bucket}/tags"
    local = ["tag", ray_images, "--model", native_bundle_dir, "--all-scores", "--device", "cpu"]
    assert invoke(capsys, monkeypatch, *local, "-o", tmp_path / "one.jsonl").code == 0
    ray = ["tag", source, "--model", native_bundle_dir, "--ray", "--batch-size", "4"]
    first = invoke(capsys, monkeypatch, *ray, "--shard-rows", "10", "-o", uri)
    assert first.code == 0, first.stderr
    assert f"shards in {uri}" in first.stderr
    records, failures = read_results(uri)
    assert failures == [] and len(records) == 24
    # Read from the bucket, the same bytes give the same records but for path and mtime.
    expected = {
        Path(r["path"]).name: r
        for r in map(json.loads, (tmp_path / "one.jsonl").read_text().splitlines())
    }
    for record in records:
        name = record["path"].rpartition("/")[2]
        assert record["path"] == f"{source}/{name}"
        mine, theirs = dict(record), dict(expected[name])
        assert mine.pop("file")["size"] == theirs.pop("file")["size"]
        mine.pop("path"), theirs.pop("path")
        assert mine == theirs
    again = invoke(capsys, monkeypatch, *ray, "--resume", "-o", uri, "--json")
    assert again.code == 0 and json.loads(again.stdout)["skipped"] == 24
    assert read_results(uri)[0] == records


def test_a_killed_model_worker_is_replaced_and_nothing_is_lost(
    ray_cluster, native_bundle_dir, ray_images, tmp_path
):
    from furrytag_cli.distributed.run import RayJob, RaySettings, run_on_ray
    from furrytag_cli.distributed.shards import read_results

    seen: list[set[int]] = []
    killed = []

    def kill_once(summary):
        pids = model_worker_pids()
        seen.append(pids)
        if killed:
            return
        # A batch went through the worker (its shard is written): kill it mid-run.
        (pid,) = pids
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        while pid in model_worker_pids():
            time.sleep(0.05)

    run_on_ray(
        [ray_images],
        tmp_path / "out",
        RayJob(model=native_bundle_dir, settings=RaySettings(batch_size=2, shard_rows=2)),
        on_shard=kill_once,
    )
    records, failures = read_results(tmp_path / "out")
    paths = Counter(r["path"] for r in records)
    assert failures == []
    assert len(paths) == 24 and max(paths.values()) == 1
    later = set().union(*seen[1:])
    assert later and killed[0] not in later  # a new worker did the rest


def test_without_ray_installed_the_error_says_what_to_install(native_bundle_dir, tmp_path):
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    write_good_images(tmp_path / "art")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "furrytag_cli",
            "tag",
            str(tmp_path / "art"),
            "--ray",
            "-o",
            str(tmp_path / "out"),
        ],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "no-ray")},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert 'pip install "furrytag[ray]"' in run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
