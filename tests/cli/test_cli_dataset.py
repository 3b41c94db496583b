"""``furrytag dataset`` end to end: synth → build → fetch → pack → stats, and bad input."""

import json
import re
import shutil

import pytest

from furrytag_cli.dataset.manifest import iter_manifest
from furrytag_cli.dataset.records import read_split
from furrytag_cli.model.categories import CategorySet
from tests.clirunner import invoke
from tests.datasetfactory import FIXTURE_EXPORT, serve, status, store_images, synth_dataset


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """(data dir with a manifest, site dir, categories) of 30 synthetic posts."""
    return synth_dataset(tmp_path_factory.mktemp("cli"), posts=30)


def one_error_line(result):
    assert result.code == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_synth_build_fetch_pack_stats_round_trip(run, tmp_path):
    out = tmp_path / "s"
    result = run("dataset", "synth", "-o", out, "--posts", "30", "--tags-per-head", "2")
    assert result.code == 0 and "Wrote 30 posts" in result.stdout
    data, cats = out / "data", out / "categories"
    result = run(
        "dataset", "build", "--export", out / "export", "--data", data, "--categories", cats, "-q"
    )
    assert result.code == 0 and result.stderr == ""
    assert (
        f"next: furrytag dataset fetch --data {data}" in result.stdout
        and "posts: train" in result.stdout
    )
    with serve(out / "site") as server:
        result = run(
            "dataset",
            "fetch",
            "--data",
            data,
            "--split",
            "train,val",
            "--split",
            "test",
            "--base-url",
            server.url,
            "--rate",
            "0",
            "--user-agent",
            "furrytag-tests (cli)",
            "-q",
        )
    assert result.code == 0 and result.stderr == ""
    assert (
        f"from {server.url} into {data / 'images'} (User-Agent: furrytag-tests (cli))"
        in result.stdout
    )
    assert "; 0 failed" in result.stdout
    assert {agent for _, agent in server.requests} == {"furrytag-tests (cli)"}
    result = run(
        "dataset",
        "pack",
        "-d",
        data,
        "--size",
        "32",
        "--shard-size",
        "10",
        "--categories",
        cats,
        "--workers",
        "2",
        "-q",
    )
    assert result.code == 0 and result.stderr == "", result.stderr
    assert "train-00000-of-" in "".join(p.name for p in (data / "shards").iterdir())
    assert "Packed " in result.stdout and "images/s" in result.stdout
    train = sum(1 for e in iter_manifest(data) if e.split == "train")
    assert sum(1 for _ in read_split(data, "train", CategorySet.load(cats))) == train
    result = run("dataset", "stats", "-d", data, "--head", "species,action")
    assert result.code == 0 and f"{train}" in result.stdout and "species" in result.stdout
    assert "action" in result.stdout and "body" not in result.stdout
    stats = json.loads(run("dataset", "stats", "-d", data, "--json").stdout)
    assert stats["posts"]["train"] == train


def test_build_shows_progress_and_a_summary(run, tmp_path):
    result = run(
        "dataset",
        "build",
        "--export",
        FIXTURE_EXPORT,
        "--data",
        tmp_path / "d",
        "--splits",
        "0.5,0.25,0.25",
        "--min-score",
        "0",
    )
    assert result.code == 0
    assert "posts-2024-01-15.csv" in result.stderr and "100%" in result.stderr
    assert "23 posts: train" in result.stdout and "Collapsed 1 duplicate md5s" in result.stdout
    assert "score 1" in result.stdout


def test_fetch_progress_in_a_log_is_a_few_lines(run, synth, tmp_path):
    data, site, _ = synth
    shutil.copytree(data, tmp_path / "d")
    with serve(site) as server:
        result = run(
            "dataset", "fetch", "-d", tmp_path / "d", "--base-url", server.url, "--rate", "0"
        )
    assert result.code == 0
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and 1 <= len(lines) <= 3
    assert lines[-1].startswith("fetch: 100%")


def test_fetch_failures_exit_3_and_name_the_list(run, synth, tmp_path):
    data, site, _ = synth
    shutil.copytree(data, tmp_path / "d")
    entry = next(iter_manifest(tmp_path / "d"))
    with serve(site) as server:
        server.behaviours[f"/data/{entry.md5[:2]}/{entry.md5[2:4]}/{entry.md5}.{entry.ext}"] = (
            status(404)
        )
        result = run(
            "dataset", "fetch", "-d", tmp_path / "d", "--base-url", server.url, "--rate", "0", "-q"
        )
    assert result.code == 3 and "; 1 failed" in result.stdout
    assert f"Failures are listed in {tmp_path / 'd' / 'fetch-failures.jsonl'}" in result.stderr


def test_fetch_and_pack_with_every_image_failing_exit_1(run, tmp_path):
    data, site, _ = synth_dataset(tmp_path, posts=12)
    entries = list(iter_manifest(data))
    with serve(site) as server:
        for entry in entries:
            path = f"/data/{entry.md5[:2]}/{entry.md5[2:4]}/{entry.md5}.{entry.ext}"
            server.behaviours[path] = status(404)
        fetched = run("dataset", "fetch", "-d", data, "--base-url", server.url, "--rate", "0", "-q")
    line = one_error_line(fetched)
    assert f"none of the {len(entries)} images could be fetched" in line
    assert str(data / "fetch-failures.jsonl") in line
    for entry in entries:
        image = data / "images" / entry.md5[:2] / entry.md5[2:4] / f"{entry.md5}.{entry.ext}"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"not an image")
    packed = run(
        "dataset", "pack", "-d", data, "--size", "32", "--categories", tmp_path / "categories"
    )
    assert packed.code == 1 and "Error: none of the images could be decoded" in packed.stderr


def test_pack_with_undecodable_images_exits_3(run, tmp_path):
    data, site, _ = synth_dataset(tmp_path, posts=12)
    store_images(site, data)
    broken = next(iter_manifest(data))
    (data / "images" / broken.md5[:2] / broken.md5[2:4] / f"{broken.md5}.{broken.ext}").write_bytes(
        b"not an image"
    )
    cats = tmp_path / "categories"
    result = run("dataset", "pack", "-d", data, "--size", "32", "--categories", cats, "-q")
    assert result.code == 3, result.stderr
    assert "1 images could not be decoded and were left out" in result.stderr


@pytest.mark.parametrize("command", [["fetch"], ["pack", "--size", "32"]])
def test_a_split_not_among_the_choices_is_a_usage_error(run, synth, command):
    result = run("dataset", command[0], "-d", synth[0], *command[1:], "--split", "train,holdout")
    assert result.code == 2
    assert "'holdout' is not one of 'train', 'val', 'test'" in result.stderr


def test_old_option_names_still_work(run, tmp_path):
    result = run("dataset", "synth", "--out", tmp_path / "s", "--posts", "20", "--no-images")
    assert result.code == 0, result.stderr
    result = run("dataset", "build", "--export", tmp_path / "s" / "export", "--out", tmp_path / "d")
    assert result.code == 0 and (tmp_path / "d" / "manifest.jsonl").is_file()
    both = run("dataset", "build", "--export", FIXTURE_EXPORT, "--out", "a", "--data", "b")
    assert both.code == 2 and "it disagrees with --out" in both.stderr


def test_stats_without_stats_json_recounts(run, synth, tmp_path):
    shutil.copytree(synth[0], tmp_path / "d")
    (tmp_path / "d" / "stats.json").unlink()
    result = run(
        "dataset", "stats", "-d", tmp_path / "d", "--categories", synth[0].parent / "categories"
    )
    assert result.code == 0 and "Positives per tag" in result.stdout


def test_synth_help_says_what_it_is_for(run):
    result = run("dataset", "synth", "--help")
    assert result.code == 0 and "for tests, demos and offline trials" in " ".join(
        result.stdout.split()
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["build", "--export", "{tmp}", "--data", "{tmp}/d"],
            r"has no posts-\*\.csv\[\.gz\], tag_aliases-",
        ),
        (["build", "--export", "{tmp}/missing", "--data", "{tmp}/d"], "export path not found"),
        (
            ["build", "--export", FIXTURE_EXPORT, "--data", "{tmp}/d", "--splits", "0.8,0.1"],
            "split ratios must look like 0.9,0.05,0.05 .*received '0.8,0.1'",
        ),
        (
            ["build", "--export", FIXTURE_EXPORT, "--data", "{tmp}/d", "--splits", "0.8,0.3,0.1"],
            "summing to 1; received 0.8,0.3,0.1",
        ),
        (
            ["build", "--export", FIXTURE_EXPORT, "--data", "{tmp}/d", "--since", "yesterday"],
            "--since must be a date",
        ),
        (["fetch", "-d", "{tmp}/none"], "no manifest.jsonl in"),
        (
            ["fetch", "-d", "{data}", "--base-url", "static1.e621.net"],
            "--base-url must start with http",
        ),
        (["pack", "-d", "{tmp}/none", "--size", "32"], "no manifest.jsonl in"),
        (
            ["pack", "-d", "{data}", "--size", "32"],
            "none of the 24 images of .* run `furrytag dataset fetch",
        ),
        (["stats", "-d", "{tmp}/none"], "no manifest.jsonl in"),
        (["stats", "-d", "{data}", "--head", "mood"], "unknown head\\(s\\) mood; heads are action"),
        (
            ["synth", "-o", "{tmp}/s", "--posts", "0"],
            "--posts and --tags-per-head must be positive",
        ),
    ],
)
def test_bad_input_is_one_error_line(run, synth, tmp_path, args, message):
    data = tmp_path / "data"
    shutil.copytree(synth[0], data)
    args = [str(a).format(tmp=tmp_path, data=data) for a in args]
    line = one_error_line(run("dataset", *args))
    assert re.search(message, line), line
