"""``furrytag tag`` end to end on real files with a tiny real model."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from furrytag_cli.engines.lite import LiteEngine
from furrytag_cli.model.loading import load_bundle
from tests.clirunner import invoke, spawn
from tests.imagefactory import write_bad_images, write_good_images


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    good = write_good_images(root / "art")
    write_good_images(root / "art" / "sub")
    return root, good


def records(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_good_kind_is_tagged_and_every_bad_file_reported(run, native_bundle_dir, tmp_path):
    good = write_good_images(tmp_path / "mix")
    bad = write_bad_images(tmp_path / "mix")
    (tmp_path / "mix" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    result = run("tag", tmp_path / "mix", "-m", native_bundle_dir, "-o", tmp_path / "out.jsonl")
    assert result.code == 3  # finished, some inputs failed
    done = {os.path.basename(r["path"]) for r in records((tmp_path / "out.jsonl").read_text())}
    assert done == set(good)
    report = (tmp_path / "out.jsonl.failures.tsv").read_text()
    for name in [*bad, "dangling.png"]:
        assert name in result.stderr and name in report
    assert "decompression bomb" in report and "empty file" in report and "truncated" in report
    assert "Tagged 10," in result.stderr and "failed 6 of 16" in result.stderr


def test_exit_codes_tell_some_failed_from_all_failed_and_strict(run, native_bundle_dir, tmp_path):
    write_good_images(tmp_path / "good")
    bad = write_bad_images(tmp_path / "bad")
    only_bad = run("tag", tmp_path / "bad", "-m", native_bundle_dir, "-o", tmp_path / "a.jsonl")
    assert only_bad.code == 1
    assert only_bad.stderr.splitlines()[-1].startswith(
        f"Error: none of the {len(bad)} files could be tagged; the reasons are in "
    )
    strict = run(
        "tag", tmp_path, "-m", native_bundle_dir, "-o", tmp_path / "s.jsonl", "--strict", "-q"
    )
    assert strict.code == 1
    assert "Error: stopped at the first file that failed (--strict): " in strict.stderr
    some = run("tag", tmp_path, "-m", native_bundle_dir, "-o", tmp_path / "b.jsonl", "-q")
    assert some.code == 3


def test_json_summary(run, native_bundle_dir, tmp_path):
    write_good_images(tmp_path / "good")
    (tmp_path / "good" / "empty.png").write_bytes(b"")
    out = tmp_path / "out.jsonl"
    LiteEngine(load_bundle(native_bundle_dir))  # converted: auto means the lite engine
    result = run("tag", tmp_path / "good", "-m", native_bundle_dir, "-o", out, "--json", "-q")
    assert result.code == 3 and "Tagged" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["total"] == summary["tagged"] + 1 and summary["skipped"] == 0
    assert [Path(f["path"]).name for f in summary["failed"]] == ["empty.png"]
    assert summary["output"] == str(out) and summary["model"] == "tiny-test"
    assert summary["failures_file"] == f"{out}.failures.tsv" and summary["engine"] == "lite"
    refused = run("tag", tmp_path / "good", "-m", native_bundle_dir, "--json")
    assert refused.code == 1 and "--json prints the summary on stdout" in refused.stderr


def test_lists_are_repeatable_and_take_commas(run, native_bundle_dir, gallery):
    _, good = gallery
    args = ("tag", good["photo.jpg"], "-m", native_bundle_dir, "-q", "--threshold", "0")
    both = records(run(*args, "--heads", "species,body", "--heads", "action").stdout)[0]
    assert set(both["tags"]) == {"species", "body", "action"}
    first, second, *rest = both["tags"]["species"]
    dropped = records(
        run(*args, "--heads", "species", "--exclude-tags", f"{first},{second}").stdout
    )[0]
    assert list(dropped["tags"]["species"]) == rest


def test_record_fields_and_tags_follow_the_scores(run, native_bundle_dir, gallery):
    root, good = gallery
    out = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--all-scores", "-q")
    assert out.code == 0 and out.stderr == ""
    (record,) = records(out.stdout)
    assert record["path"] == str(good["photo.jpg"])
    assert set(record["tags"]) == {"action", "body", "clothing", "identity", "species"}
    for head, kept in record["tags"].items():
        scores = record["scores"][head]
        # Scores are written rounded to 4 decimals: a kept 0.50004 reads 0.5.
        assert {t for t, s in scores.items() if s > 0.5} <= set(kept)
        assert all(scores[t] >= 0.5 for t in kept)
        assert list(kept.values()) == sorted(kept.values(), reverse=True)
    assert record["rating"] in ("safe", "questionable", "explicit")
    assert record["model"].startswith("tiny-test@")
    assert record["file"]["size"] == good["photo.jpg"].stat().st_size


def test_thresholds_top_k_heads_and_rating_cuts(run, native_bundle_dir, gallery):
    _, good = gallery
    base = records(
        run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--all-scores", "-q").stdout
    )[0]
    species = base["scores"]["species"]
    cut = sorted(species.values())[-4]
    out = records(
        run(
            "tag",
            good["photo.jpg"],
            "-m",
            native_bundle_dir,
            "-q",
            "--threshold",
            "0",
            "--head-threshold",
            f"species={cut}",
            "--top-k",
            "2",
            "--heads",
            "species,body",
            "--rating-cuts",
            "0,0",
            "--exclude-tags",
            "feet",
        ).stdout
    )[0]
    assert set(out["tags"]) == {"species", "body"}
    expected = sorted((s for s in species.values() if s > cut), reverse=True)[:2]
    assert list(out["tags"]["species"].values()) == expected
    assert len(out["tags"]["body"]) == 2 and "feet" not in out["tags"]["body"]
    assert out["rating"] == "explicit"
    bad = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--head-threshold", "specie=0.3")
    assert bad.code == 2 and "did you mean 'species'" in bad.stderr
    bad = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--heads", "speciess")
    assert bad.code == 2 and "unknown head 'speciess'" in bad.stderr
    bad = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--heads", "rating")
    assert bad.code == 2 and "the rating is always given" in bad.stderr
    bad = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "--exclude-tags", "foxx")
    assert bad.code == 2 and "unknown tag 'foxx' (did you mean 'fox'?)" in bad.stderr


def test_tuned_thresholds_in_the_bundle_are_used_unless_disabled(
    run, native_bundle_dir, gallery, tmp_path
):
    from furrytag_cli.model.bundle import write_metadata

    _, good = gallery
    copy = tmp_path / "tuned"
    shutil.copytree(native_bundle_dir, copy)
    bundle = load_bundle(copy)
    bundle.thresholds = {
        "global": 0.0,
        "per_head": {"body": 1.0},
        "per_tag": {"species": {"wolf": 1.0}},
    }
    write_metadata(bundle)
    out = records(run("tag", good["photo.jpg"], "-m", copy, "-q").stdout)[0]
    assert len(out["tags"]["action"]) == 71 and out["tags"]["body"] == {}
    assert len(out["tags"]["species"]) == 49 and "wolf" not in out["tags"]["species"]
    plain = records(
        run("tag", good["photo.jpg"], "-m", copy, "-q", "--no-tuned-thresholds").stdout
    )[0]
    assert len(plain["tags"]["action"]) < 71


def test_a_thresholds_file_replaces_the_bundles_and_bad_ones_are_clear(
    run, native_bundle_dir, gallery, tmp_path
):
    _, good = gallery
    image = good["photo.jpg"]
    saved = tmp_path / "thresholds.yaml"
    saved.write_text(
        yaml.safe_dump(
            {"global": 0.0, "per_head": {"body": 1.0}, "per_tag": {"species": {"wolf": 1.0}}}
        )
    )
    out = records(run("tag", image, "-m", native_bundle_dir, "-q", "--thresholds", saved).stdout)[0]
    assert len(out["tags"]["action"]) == 71 and out["tags"]["body"] == {}
    assert len(out["tags"]["species"]) == 49 and "wolf" not in out["tags"]["species"]
    over = records(
        run(
            "tag", image, "-m", native_bundle_dir, "-q", "--thresholds", saved, "--threshold", "1"
        ).stdout
    )[0]
    assert all(tags == {} for tags in over["tags"].values())

    for text, message in [
        (None, "does not exist; write one with furrytag evaluate"),
        ("global: [0.5", "is not valid YAML or JSON at line"),
        (
            "global: 0.5\nper_tag: {species: {wolff: 0.3}}",
            "bad.yaml name tag 'wolff' of head 'species'",
        ),
        ("global: 0.5\nper_head: {speces: 0.3}", "did you mean 'species'"),
        ("per_head: {body: 0.3}", "global"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.unlink(missing_ok=True)
        if text is not None:
            bad.write_text(text)
        result = run("tag", image, "-m", native_bundle_dir, "-q", "--thresholds", bad)
        assert result.code == 1 and result.stderr.startswith("Error: "), result.stderr
        assert message in result.stderr, result.stderr


def test_input_forms_stdin_list_glob_and_recursion(run, native_bundle_dir, gallery, tmp_path):
    root, good = gallery
    art = root / "art"

    def names(result):
        assert result.code == 0, result.stderr
        return [os.path.relpath(r["path"], art) for r in records(result.stdout)]

    everything = names(run("tag", art, "-m", native_bundle_dir, "-q"))
    assert len(everything) == 20 and everything == sorted(everything)
    assert len(names(run("tag", art, "-m", native_bundle_dir, "-q", "--no-recursive"))) == 10
    assert names(
        run("tag", art, "-m", native_bundle_dir, "-q", "--glob", "*.png", "--exclude", "sub/*")
    ) == ["alpha.png", "deep16.png", "gray.png", "palette.png"]
    listed = f"{good['anim.gif']}\n{good['photo.jpg']}\n{good['anim.gif']}\n"
    assert names(run("tag", "-", "-m", native_bundle_dir, "-q", stdin=listed)) == [
        "anim.gif",
        "photo.jpg",
    ]
    assert names(
        run(
            "tag",
            "-",
            "-0",
            "-m",
            native_bundle_dir,
            "-q",
            stdin=f"{good['bitmap.bmp']}\0{good['still.webp']}\0",
        )
    ) == ["bitmap.bmp", "still.webp"]
    (tmp_path / "list.txt").write_text(f"{good['gray.png']}\n")
    assert names(run("tag", f"@{tmp_path / 'list.txt'}", "-m", native_bundle_dir, "-q")) == [
        "gray.png"
    ]
    missing = run("tag", f"@{tmp_path / 'nope.txt'}", "-m", native_bundle_dir)
    assert missing.code == 1 and "cannot read the list file" in missing.stderr
    nothing = tmp_path / "empty"
    nothing.mkdir()
    result = run("tag", nothing, "-m", native_bundle_dir)
    assert result.code == 1 and "no images found" in result.stderr
    result = run("tag", art, "-m", native_bundle_dir, "--glob", "*.tiff")
    assert (
        result.code == 1
        and "no images found" in result.stderr
        and "matching '*.tiff'" in result.stderr
    )
    result = run("tag", tmp_path / "nope", "-m", "no-such-model-is-loaded")
    assert (
        result.code == 1
        and f"nothing to tag: {tmp_path / 'nope'}: no such file or folder" in result.stderr
    )
    result = run(
        "tag",
        good["photo.jpg"],
        "-m",
        native_bundle_dir,
        "--engine",
        "keras",
        "--quantize",
        "dynamic",
    )
    assert result.code == 1 and "--quantize applies to the lite engine" in result.stderr


def test_image_without_extension_is_found_by_content(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    folder = tmp_path / "noext"
    folder.mkdir()
    shutil.copy(good["photo.jpg"], folder / "download")
    (folder / "readme").write_text("not an image")
    out = run("tag", folder, "-m", native_bundle_dir, "-q")
    assert [os.path.basename(r["path"]) for r in records(out.stdout)] == ["download"]


def test_json_and_csv_outputs(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    files = [good["photo.jpg"], good["alpha.png"]]
    assert (
        run(
            "tag", *files, "-m", native_bundle_dir, "-f", "json", "-o", tmp_path / "o.json", "-q"
        ).code
        == 0
    )
    data = json.loads((tmp_path / "o.json").read_text())
    assert [r["path"] for r in data] == sorted(map(str, files))
    assert (
        run(
            "tag", *files, "-m", native_bundle_dir, "-f", "csv", "-o", tmp_path / "o.csv", "-q"
        ).code
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert list(rows[0]) == [
        "path",
        "action",
        "body",
        "clothing",
        "identity",
        "species",
        "rating",
        "rating_score",
    ]
    for row, record in zip(rows, data):
        assert row["species"].split() == list(record["tags"]["species"])
        assert row["rating"] == record["rating"]
    assert (
        run(
            "tag",
            *files,
            "-m",
            native_bundle_dir,
            "-f",
            "csv",
            "--long",
            "-o",
            tmp_path / "l.csv",
            "-q",
        ).code
        == 0
    )
    long_rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert list(long_rows[0]) == ["path", "head", "tag", "score"]
    assert len(long_rows) == sum(len(t) for r in data for t in r["tags"].values()) + 2
    again = run("tag", *files, "-m", native_bundle_dir, "-f", "csv", "-o", tmp_path / "o.csv")
    assert again.code == 1 and "already exists" in again.stderr


def test_captions_beside_images_and_mirrored(run, native_bundle_dir, tmp_path):
    good = write_good_images(tmp_path / "set" / "a")
    shutil.copy(good["photo.jpg"], tmp_path / "set" / "a" / "alpha.jpg")
    result = run(
        "tag",
        tmp_path / "set",
        "-m",
        native_bundle_dir,
        "-f",
        "txt",
        "--threshold",
        "0.5",
        "--prefix",
        "my_trigger",
        "--no-underscores",
        "--escape-parens",
        "--top-k",
        "3",
        "-q",
    )
    assert result.code == 0, result.stderr
    folder = tmp_path / "set" / "a"
    assert (folder / "alpha.png.txt").is_file() and (folder / "alpha.jpg.txt").is_file()
    assert not (folder / "alpha.txt").exists() and (folder / "photo.txt").is_file()
    caption = (folder / "photo.txt").read_text().strip().split(", ")
    assert caption[0] == "my trigger" and all("_" not in word for word in caption)
    mirrored = run(
        "tag",
        tmp_path / "set",
        "-m",
        native_bundle_dir,
        "-f",
        "txt",
        "--output-dir",
        tmp_path / "captions",
        "-q",
    )
    assert mirrored.code == 0 and (tmp_path / "captions" / "a" / "photo.txt").is_file()
    (folder / "photo.txt").write_text("hand written\n")
    refused = run("tag", tmp_path / "set", "-m", native_bundle_dir, "-f", "txt", "-q")
    assert refused.code == 1 and "already have a caption file" in refused.stderr
    assert "--skip-existing" in refused.stderr and "--overwrite" in refused.stderr
    assert (folder / "photo.txt").read_text() == "hand written\n"
    kept = run(
        "tag", tmp_path / "set", "-m", native_bundle_dir, "-f", "txt", "--skip-existing", "-q"
    )
    assert kept.code == 0 and (folder / "photo.txt").read_text() == "hand written\n"
    replaced = run(
        "tag", tmp_path / "set", "-m", native_bundle_dir, "-f", "txt", "--overwrite", "-q"
    )
    assert replaced.code == 0 and (folder / "photo.txt").read_text() != "hand written\n"


def test_caption_order_and_underscores(native_bundle_dir):
    from furrytag_cli.captions.style import CaptionStyle
    from furrytag_cli.tagging.predict import Tagging

    tagging = Tagging(
        tags={
            "body": [("long_tail", 0.6)],
            "species": [("canid", 0.9), ("pokemon_(species)", 0.7)],
        },
        rating="safe",
        rating_score=0.1,
    )
    assert CaptionStyle().format(tagging.tags, "safe") == "canid, pokemon_(species), long_tail"
    assert (
        CaptionStyle(order="head", underscores=False, escape_parens=True, suffix=("x",)).format(
            tagging.tags, "safe"
        )
        == "long tail, canid, pokemon \\(species\\), x"
    )


def test_resume_after_a_torn_line_tags_only_what_is_missing(
    run, native_bundle_dir, gallery, tmp_path
):
    root, _ = gallery
    out = tmp_path / "run.jsonl"
    assert run("tag", root / "art", "-m", native_bundle_dir, "-o", out, "-q").code == 0
    full = out.read_text().splitlines(keepends=True)
    # A run killed mid-write: 7 complete lines and half of the 8th.
    out.write_text("".join(full[:7]) + full[7][: len(full[7]) // 2])
    result = run("tag", root / "art", "-m", native_bundle_dir, "-o", out, "--resume")
    assert result.code == 0 and "skipped 7 already done" in result.stderr
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in resumed] == [json.loads(line)["path"] for line in full]
    assert run("tag", root / "art", "-m", native_bundle_dir, "-o", out, "--resume", "-q").code == 0
    assert len(out.read_text().splitlines()) == 20


def test_resume_refuses_files_it_cannot_continue(run, native_bundle_dir, gallery, tmp_path):
    root, _ = gallery
    art = root / "art"
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    result = run("tag", art, "-m", native_bundle_dir, "-o", notes, "--resume")
    assert result.code == 1 and "is not furrytag jsonl output" in result.stderr
    assert notes.read_text() == "my own notes\n"

    package = tmp_path / "package.json"
    package.write_text('{"name": "x"}\n')
    result = run("tag", art, "-m", native_bundle_dir, "-o", package, "--resume")
    assert result.code == 1 and "is not furrytag json output" in result.stderr
    assert package.read_text() == '{"name": "x"}\n'

    earlier = tmp_path / "earlier.json"  # the format follows the name: JSON
    assert run("tag", art, "-m", native_bundle_dir, "-o", earlier, "-q").code == 0
    before = earlier.read_text()
    assert len(json.loads(before)) == 20
    result = run("tag", art, "-m", native_bundle_dir, "-o", earlier, "-f", "jsonl", "--resume")
    assert result.code == 1 and "check --format" in result.stderr and earlier.read_text() == before


def test_resume_refuses_an_output_of_another_model(run, native_bundle_dir, gallery, tmp_path):
    from tests.modelfactory import make_native_bundle

    root, _ = gallery
    out = tmp_path / "out.jsonl"
    assert run("tag", root / "art", "-m", native_bundle_dir, "-o", out, "-q").code == 0
    before = out.read_text()
    other = make_native_bundle(tmp_path / "other", seed=11)
    result = run("tag", root / "art", "-m", other, "-o", out, "--resume")
    assert result.code == 1 and "holds tags from another model (tiny-test@" in result.stderr
    assert out.read_text() == before


def test_the_output_name_picks_the_format(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    dash = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "-o", "-", "-f", "csv", "-q")
    assert dash.code == 0 and dash.stdout.startswith("path,") and not os.path.exists("-")
    result = run(
        "tag", good["photo.jpg"], "-m", native_bundle_dir, "-o", tmp_path / "tags.csv", "-q"
    )
    assert result.code == 0
    assert (tmp_path / "tags.csv").read_text().startswith("path,")


def test_resumed_embeddings_keep_the_earlier_rows(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    files = [good["photo.jpg"], good["gray.png"], good["anim.gif"]]
    out, emb = tmp_path / "o.jsonl", tmp_path / "emb.npy"
    assert (
        run("tag", *files[:2], "-m", native_bundle_dir, "-o", out, "--embeddings", emb, "-q").code
        == 0
    )
    first = np.load(emb)
    again = run("tag", *files, "-m", native_bundle_dir, "--embeddings", emb)
    assert again.code == 1 and f"{emb} already exists" in again.stderr
    assert (
        run(
            "tag", *files, "-m", native_bundle_dir, "-o", out, "--embeddings", emb, "--resume", "-q"
        ).code
        == 0
    )
    vectors = np.load(emb)
    assert vectors.shape == (3, 64) and np.array_equal(vectors[:2], first)
    paths = (tmp_path / "emb.paths.txt").read_text().splitlines()
    assert paths == sorted(map(str, files[:2])) + [str(files[2])]
    assert len(out.read_text().splitlines()) == 3

    # A killed run leaves records but no embeddings: those files are run again for their
    # embeddings only, and the output gets no second record of them.
    emb.unlink()
    (tmp_path / "emb.paths.txt").unlink()
    assert (
        run(
            "tag", *files, "-m", native_bundle_dir, "-o", out, "--embeddings", emb, "--resume", "-q"
        ).code
        == 0
    )
    assert np.load(emb).shape == (3, 64) and len(out.read_text().splitlines()) == 3

    # Another output beside the same embeddings: every file is tagged again, and its old
    # row is replaced rather than doubled.
    again = run(
        "tag",
        *files,
        "-m",
        native_bundle_dir,
        "-o",
        tmp_path / "new.jsonl",
        "--embeddings",
        emb,
        "--resume",
        "-q",
    )
    assert again.code == 0 and np.load(emb).shape == (3, 64)
    assert sorted((tmp_path / "emb.paths.txt").read_text().splitlines()) == sorted(map(str, files))


def test_a_caption_run_resumed_fills_in_missing_embeddings(run, native_bundle_dir, tmp_path):
    good = write_good_images(tmp_path / "set")
    emb = tmp_path / "emb.npy"
    assert run("tag", tmp_path / "set", "-m", native_bundle_dir, "-f", "txt", "-q").code == 0
    caption = tmp_path / "set" / "photo.txt"
    caption.write_text("hand edited\n")
    # The captions exist but no embeddings were saved (as after a kill): resuming embeds
    # every image and leaves the captions alone.
    result = run(
        "tag",
        tmp_path / "set",
        "-m",
        native_bundle_dir,
        "-f",
        "txt",
        "--resume",
        "--embeddings",
        emb,
        "-q",
    )
    assert result.code == 0, result.stderr
    assert np.load(emb).shape == (len(good), 64) and caption.read_text() == "hand edited\n"


def test_resume_reads_paths_with_unusual_line_breaks(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    odd = tmp_path / "art" / "odd\u2028name\x85.png"
    odd.parent.mkdir()
    shutil.copy(good["alpha.png"], odd)
    args = ("tag", odd.parent, "-m", native_bundle_dir, "-o", tmp_path / "out.jsonl")
    assert run(*args, "--embeddings", tmp_path / "e.npy", "-q").code == 0
    again = run(*args, "--embeddings", tmp_path / "e.npy", "--resume")
    assert again.code == 0 and "skipped 1 already done" in again.stderr, again.stderr


@pytest.mark.parametrize("model", ["./no-bundle", "no-bundle.zip", "models/no-bundle"])
def test_a_model_path_that_does_not_exist_is_named(run, gallery, model):
    _, good = gallery
    result = run("tag", good["photo.jpg"], "-m", model)
    assert result.code == 1 and f"model {model} does not exist" in result.stderr


def test_output_options_that_do_not_fit_are_refused(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    photo = good["photo.jpg"]
    for args, message in [
        (("-o", tmp_path), "is a folder; give a file name"),
        (("--embeddings", tmp_path), "is a folder; give a file name"),
        (("--failures", tmp_path), "is a folder; give a file name"),
        (
            ("-f", "txt", "-o", tmp_path / "caps.txt"),
            "-f txt writes a caption file beside each image",
        ),
        (("--output-dir", tmp_path / "caps"), "--output-dir is where -f txt writes captions"),
        (("--prefix", "trigger"), "shape caption files (-f txt), not jsonl output"),
        (("-f", "json", "--skip-existing"), "shape caption files (-f txt), not json output"),
        (("--long",), "--long is a CSV layout"),
    ]:
        result = run("tag", photo, "-m", native_bundle_dir, *args)
        assert result.code == 1 and message in result.stderr, (args, result.stderr)


def test_embeddings_are_row_aligned_with_paths(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    files = [good["photo.jpg"], good["gray.png"], good["anim.gif"]]
    result = run("tag", *files, "-m", native_bundle_dir, "--embeddings", tmp_path / "emb.npy", "-q")
    assert result.code == 0
    vectors = np.load(tmp_path / "emb.npy")
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert (tmp_path / "emb.paths.txt").read_text().splitlines() == sorted(map(str, files))


def test_engine_choices_give_the_same_scores(run, native_bundle_dir, gallery):
    _, good = gallery
    files = [good["photo.jpg"], good["alpha.png"]]
    outcomes = {}
    for engine in ("keras", "lite", "auto"):
        result = run("tag", *files, "-m", native_bundle_dir, "--all-scores", "--engine", engine)
        assert result.code == 0, result.stderr
        assert f"({'lite' if engine == 'auto' else engine} engine)" in result.stderr
        outcomes[engine] = records(result.stdout)
    for keras_record, lite_record in zip(outcomes["keras"], outcomes["lite"]):
        for head, scores in keras_record["scores"].items():
            lite_scores = lite_record["scores"][head]
            assert max(abs(scores[t] - lite_scores[t]) for t in scores) <= 2e-4
        assert abs(keras_record["rating_score"] - lite_record["rating_score"]) <= 2e-4
    bad = run("tag", files[0], "-m", native_bundle_dir, "--engine", "fast")
    assert bad.code == 2 and "'fast' is not one of 'auto', 'keras', 'lite'" in bad.stderr
    bad = run("tag", files[0], "-m", native_bundle_dir, "--engine", "lite", "--quantize", "int4")
    assert bad.code == 2 and "'int4' is not one of 'none', 'dynamic', 'float16'" in bad.stderr


def test_output_problems_are_reported_before_work(run, native_bundle_dir, gallery, tmp_path):
    _, good = gallery
    result = run(
        "tag", good["photo.jpg"], "-m", native_bundle_dir, "-o", tmp_path / "no" / "out.jsonl"
    )
    assert result.code == 1 and "does not exist" in result.stderr
    result = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "-f", "xml")
    assert result.code == 2 and "'xml' is not one of 'jsonl', 'json', 'csv', 'txt'" in result.stderr
    result = run("tag", good["photo.jpg"], "-m", native_bundle_dir, "-o", "s3://bucket/t.jsonl")
    assert result.code == 2 and "-o s3://bucket/t.jsonl: only tag --ray writes" in result.stderr


def test_python_api(native_bundle_dir, gallery):
    from furrytag_cli import Tagger

    _, good = gallery
    tagger = Tagger(native_bundle_dir, embeddings=True)
    items = list(tagger.tag([good["photo.jpg"], good["cmyk.jpg"]]))
    assert [i.ok for i in items] == [True, True]
    assert dict(tagger.embed([good["photo.jpg"]]))[good["photo.jpg"]].shape == (64,)
    decoded = np.zeros((40, 50, 3), np.uint8)
    assert tagger.scores([decoded, decoded]).heads["species"].shape == (2, 50)


def test_alpha_is_composited_on_white_for_native_bundles(native_bundle_dir, tmp_path):
    from PIL import Image

    from furrytag_cli import Tagger

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(tmp_path / "white.png")
    tagger = Tagger(native_bundle_dir)
    batches = [
        i for b in tagger.tag_batches([tmp_path / "clear.png", tmp_path / "white.png"]) for i in b
    ]
    assert batches[0].tagging.rating_score == batches[1].tagging.rating_score


def test_the_tagging_api_shows_progress_when_asked(native_bundle_dir, tmp_path, capsys):
    from PIL import Image

    from furrytag_cli import Tagger

    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    tagger = Tagger(native_bundle_dir, notify=None)
    capsys.readouterr()
    assert len(list(tagger.tag([tmp_path]))) == 2 and capsys.readouterr().err == ""
    items = list(tagger.tag([tmp_path], progress=True))
    assert [item.ok for item in items] == [True, False]
    # stderr is not a terminal here: one plain line when the run ends.
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("Tagging: 100% 2/2 img in ") and line.endswith(", 1 failed")


def test_large_jpegs_are_decoded_at_a_reduced_scale_for_native_bundles(tmp_path):
    import tensorflow as tf
    from PIL import Image

    from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_image
    from furrytag_cli.tagging.decode import JPEG_SCALES, inspect, jpeg_scale
    from furrytag_cli.tagging.pipeline import inference_dataset

    native, legacy = PreprocessSpec(size=32), PreprocessSpec.legacy(32, normalized=True)
    assert [jpeg_scale(w, 900, native) for w in (127, 128, 256, 600)] == [0, 1, 2, 3]
    assert jpeg_scale(2000, 2000, legacy) == 0
    assert jpeg_scale(2000, 2000, PreprocessSpec(size=32, antialias=False)) == 0
    ramp = np.linspace(0, 255, 300, dtype=np.float32)
    pixels = np.stack(
        [
            ramp[None, :] * np.ones((280, 1)),
            ramp[:280, None] * np.ones((1, 300)),
            np.full((280, 300), 90.0),
        ],
        -1,
    ).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    assert inspect(tmp_path / "big.jpg", native) == (0, 2) and JPEG_SCALES[2] == 4
    ((_, fast),) = list(
        inference_dataset([tmp_path / "big.jpg"], native, batch_size=1, rejected={})
    )
    full = preprocess_image(
        tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "big.jpg")), channels=3), native
    )
    assert float(tf.reduce_mean(tf.abs(fast[0] - full))) < 1.0


def test_decoding_waits_for_a_model_on_the_cpu_and_runs_ahead_of_one_on_a_gpu(tmp_path):
    from PIL import Image

    from furrytag_cli.model.preprocess import PreprocessSpec
    from furrytag_cli.tagging.pipeline import inference_dataset

    # Four good images, then good and text files in turn: the generator's header check
    # records each text file in `rejected` when the pipeline gets that far.
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i:02d}.png")
        if i >= 4 and i % 2:
            paths[-1].write_text("not an image")
        else:
            Image.new("RGB", (40, 40), (i * 5, 0, 0)).save(paths[-1])

    def reached(overlap: bool, wait: float, enough: int) -> int:
        """How far the pipeline read while its consumer held one batch for ``wait`` s."""
        rejected = {}
        batches = iter(
            inference_dataset(
                paths, PreprocessSpec(size=32), batch_size=4, rejected=rejected, overlap=overlap
            )
        )
        next(batches)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and max(rejected, default=0) < enough:
            time.sleep(0.05)
        return max(rejected, default=0)

    # On the CPU the next batch (4-7) is not decoded until asked for; a few images at most.
    assert reached(overlap=False, wait=1.5, enough=40) <= 7
    assert reached(overlap=True, wait=10.0, enough=9) >= 9


def test_closed_pipe_ends_quietly(native_bundle_dir, gallery):
    root, _ = gallery
    tagger = spawn(
        "tag",
        root / "art",
        "-m",
        native_bundle_dir,
        "--batch-size",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = tagger.stdout.readline()
    assert json.loads(first)["path"]
    tagger.stdout.close()
    _, err = tagger.communicate(timeout=120)
    assert tagger.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.slow
def test_ctrl_c_flushes_what_is_done_and_exits_130(native_bundle_dir, tmp_path):
    many = tmp_path / "many"
    write_good_images(many)
    copies = 600
    for i in range(copies):
        shutil.copytree(many, tmp_path / "pile" / f"c{i}", ignore=shutil.ignore_patterns("c*"))
    total = sum(1 for path in (tmp_path / "pile").rglob("*") if path.is_file())
    out = tmp_path / "out.json"
    proc = spawn(
        "tag",
        tmp_path / "pile",
        "-m",
        native_bundle_dir,
        "--batch-size",
        "2",
        "-f",
        "json",
        "-o",
        out,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def first_batch_written() -> bool:
        partial = tmp_path / ".out.json.part"
        return partial.exists() and partial.stat().st_size > 0

    deadline = time.time() + 120
    while not first_batch_written() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    data = json.loads(out.read_text())
    assert 0 < len(data) < total
    assert "Stopping after the current batch" in err.decode()
