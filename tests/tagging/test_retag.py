"""``furrytag retag``: tags chosen again from saved scores equal a tagging run's, byte for byte."""

import gzip
import json
import subprocess
import sys

import pytest
import yaml

from tests.clirunner import invoke
from tests.imagefactory import write_good_images


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    root = tmp_path_factory.mktemp("retag")
    write_good_images(root / "art")
    write_good_images(root / "art" / "sub")
    return root


@pytest.fixture
def scored(run, art, native_bundle_dir, monkeypatch):
    """The folder, with ``all.jsonl``: every image tagged with --all-scores."""
    monkeypatch.chdir(art)
    if not (art / "all.jsonl").exists():
        result = run("tag", "art", "-m", native_bundle_dir, "--all-scores", "-o", "all.jsonl", "-q")
        assert result.code == 0, result.stderr
    return art


def kept_tags(folder):
    """Tags kept at threshold 0.3 in the first image, best first."""
    record = json.loads((folder / "all.jsonl").read_text().splitlines()[0])
    pairs = [(t, s) for scores in record["scores"].values() for t, s in scores.items() if s > 0.3]
    return [t for t, _ in sorted(pairs, key=lambda p: -p[1])]


def implications_export(path, pairs):
    """e621's tag_implications export (gzipped when ``path`` ends in .gz)."""
    lines = ["id,antecedent_name,consequent_name,created_at,status"]
    lines += [f"{i},{a},{c},2024-01-01,active" for i, (a, c) in enumerate(pairs)]
    lines.append(f"{len(pairs)},{pairs[0][0]},{pairs[0][1]}_gone,2024-01-01,deleted")
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def caption_files(folder, suffix):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob(f"*{suffix}"))}


def test_retag_writes_what_tag_writes_byte_for_byte(run, scored, native_bundle_dir, tmp_path):
    tags = kept_tags(scored)
    implications = implications_export(
        tmp_path / "tag_implications-2024-01-01.csv",
        [(tags[0], "middle_tag"), ("middle_tag", tags[1]), (tags[2], tags[3])],
    )
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(
        yaml.safe_dump({"global": 0.45, "per_head": {"body": 0.55}, "per_tag": {}})
    )
    combinations = [
        ["-o", "{out}.jsonl"],
        [
            "-o",
            "{out}.json",
            "--all-scores",
            "--threshold",
            "0.3",
            "--top-k",
            "3",
            "--heads",
            "species",
            "--heads",
            "body,action",
        ],
        [
            "-o",
            "{out}.csv",
            "--head-threshold",
            "species=0.4,body=0.45",
            "--exclude-tags",
            tags[0].replace("_", " ").upper(),
            "--max-tags",
            "5",
            "--rating-cuts",
            "0.2,0.8",
        ],
        [
            "-f",
            "csv",
            "-o",
            "{out}.long",
            "--long",
            "--thresholds",
            str(thresholds),
            "--max-tags",
            "4",
        ],
        [
            "-f",
            "txt",
            "--output-dir",
            "{out}",
            "--threshold",
            "0.3",
            "--max-tags",
            "12",
            "--replace",
            f"{tags[4]}=renamed_tag",
            "--replace",
            f"{tags[5].upper()}=",
            "--first",
            f"{tags[6]},{tags[3]}",
            "--rating-tag",
            "rating:{{}}",
            "--rating-at",
            "end",
            "--caption-ext",
            ".caption",
            "--separator",
            " | ",
            "--implied",
            "drop",
            "--implications",
            str(implications),
            "--prefix",
            "trigger",
            "--no-underscores",
            "--escape-parens",
            "--order",
            "head",
        ],
        [
            "-f",
            "txt",
            "--output-dir",
            "{out}",
            "--threshold",
            "0.35",
            "--implied",
            "add",
            "--implications",
            str(implications),
            "--rating-tag",
            "{{}}",
            "--suffix",
            "end_word",
        ],
    ]
    for number, combination in enumerate(combinations):
        outputs = []
        for command in ("tag", "retag"):
            out = tmp_path / f"{command}{number}"
            args = [a.format(out=out) for a in combination]
            source = "art" if command == "tag" else "all.jsonl"
            result = run(command, source, "-m", native_bundle_dir, "-q", *args)
            assert result.code == 0, (command, combination, result.stderr)
            if "txt" in combination:
                outputs.append(caption_files(out, ".caption" if ".caption" in args else ".txt"))
            else:
                outputs.append(next(tmp_path.glob(f"{command}{number}.*")).read_bytes())
        assert outputs[0] == outputs[1], combination
        assert outputs[0], combination
    captions = caption_files(tmp_path / "retag4", ".caption")
    assert len(captions) == 20
    first = captions[next(iter(captions))].decode()
    assert first.startswith("trigger | ") and " | rating:" in first
    assert "renamed tag" in first and tags[5].replace("_", " ") not in first.split(" | ")
    added = caption_files(tmp_path / "retag5", ".txt")
    assert all(b"end_word\n" in text for text in added.values())


def test_caption_rules_in_one_caption(run, scored, native_bundle_dir, tmp_path):
    tags = kept_tags(scored)
    implications = implications_export(
        tmp_path / "tag_implications-2024-01-01.csv.gz",
        [(tags[0], "x_parent"), ("x_parent", tags[1])],
    )
    out = tmp_path / "captions"
    result = run(
        "retag",
        "all.jsonl",
        "-m",
        native_bundle_dir,
        "-q",
        "-f",
        "txt",
        "--output-dir",
        out,
        "--threshold",
        "0.3",
        "--implied",
        "drop",
        "--implications",
        implications,
        "--first",
        tags[2].replace("_", " ").title(),
        "--replace",
        f"{tags[3]}=swapped",
        "--rating-tag",
        "{}",
        "--max-tags",
        "6",
    )
    assert result.code == 0, result.stderr
    words = (out / "alpha.txt").read_text().rstrip("\n").split(", ")
    record = json.loads((scored / "all.jsonl").read_text().splitlines()[0])
    assert record["path"] == "art/alpha.png"
    assert words[0] == record["rating"]
    assert words[1] == tags[2]
    assert tags[1] not in words and tags[0] in words  # tags[0] implies tags[1]
    assert "swapped" in words and tags[3] not in words
    assert len(words) == 1 + 6 - 1  # the rating, six tags less the implied one


def test_retag_never_imports_tensorflow(scored, native_bundle_dir, tmp_path):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['furrytag', 'retag', 'all.jsonl', '-m', {str(native_bundle_dir)!r}, "
        f"'-f', 'csv', '-o', {str(tmp_path / 'out.csv')!r}]\n"
        "try:\n    runpy.run_module('furrytag_cli', run_name='__main__')\n"
        "except SystemExit as exc:\n    print('EXIT', exc.code)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=scored
    )
    assert "EXIT 0" in result.stdout and "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "out.csv").read_text().startswith("path,action,body")


def test_bad_input_is_refused_clearly(run, scored, native_bundle_dir, tmp_path):
    def refused(*args):
        result = run("retag", *args, "-m", native_bundle_dir, "-q")
        assert result.code != 0 and result.stderr.startswith("Error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        return result

    plain = tmp_path / "plain.jsonl"
    assert run("tag", "art", "-m", native_bundle_dir, "-o", plain, "-q").code == 0
    assert "--all-scores" in refused(plain).stderr
    lines = (scored / "all.jsonl").read_text().splitlines(keepends=True)
    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(lines[:3]) + lines[3][:40])
    assert "cut short" in refused(torn).stderr
    other = tmp_path / "other.jsonl"
    other.write_text("".join(line.replace("tiny-test@", "tiny-test@0") for line in lines))
    assert "holds the scores of model tiny-test@0" in refused(other).stderr
    assert "does not exist" in refused(tmp_path / "none.jsonl").stderr
    species_only = tmp_path / "species.jsonl"
    assert (
        run(
            "tag",
            "art",
            "-m",
            native_bundle_dir,
            "--all-scores",
            "--heads",
            "species",
            "-o",
            species_only,
            "-q",
        ).code
        == 0
    )
    assert "it has scores of: species" in refused(species_only).stderr
    assert run("retag", species_only, "-m", native_bundle_dir, "--heads", "species", "-q").code == 0
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump({"model": "tiny-test@0123", "global": 0.4}))
    assert (
        "tuned for model tiny-test@0123" in refused("all.jsonl", "--thresholds", thresholds).stderr
    )
    lines = (scored / "all.jsonl").read_text().splitlines(keepends=True)
    middle = json.loads(lines[10])
    del middle["scores"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:10]) + json.dumps(middle) + "\n" + "".join(lines[11:]))
    out = tmp_path / "captions"
    assert (
        f"{broken}:11 holds only the kept tags"
        in refused(broken, "-f", "txt", "--output-dir", out).stderr
    )
    assert not out.exists()
    missing = run("retag", "all.jsonl", "-q")
    assert missing.code == 1 and "all.jsonl was tagged by tiny-test@" in missing.stderr
    assert "give the bundle that tagged it with --model" in missing.stderr


def test_the_model_the_results_name_is_found_in_the_cache(run, scored, native_bundle_dir, tmp_path):
    import shutil

    archive = shutil.make_archive(
        str(tmp_path / "tiny-test"), "zip", native_bundle_dir.parent, native_bundle_dir.name
    )
    assert run("download", "--from-file", archive, "tiny-test").code == 0
    by_name = run("retag", "all.jsonl", "-f", "csv")
    assert by_name.code == 0, by_name.stderr
    assert by_name.stdout == run("retag", "all.jsonl", "-m", native_bundle_dir, "-f", "csv").stdout


def test_nothing_is_replaced_without_overwrite(run, scored, native_bundle_dir, tmp_path):
    import shutil

    out = tmp_path / "out.jsonl"
    out.write_text("mine\n")
    result = run("retag", "all.jsonl", "-m", native_bundle_dir, "-o", out, "-q")
    assert result.code == 1 and "already exists" in result.stderr
    assert out.read_text() == "mine\n"
    same = run("retag", "all.jsonl", "-m", native_bundle_dir, "-o", "all.jsonl", "--overwrite")
    assert same.code == 2 and "is the results file" in same.stderr
    # An image whose name is its caption's (photo.txt, a JPEG by content) is never replaced.
    image = tmp_path / "pictures" / "photo.txt"
    image.parent.mkdir()
    shutil.copy(scored / "art" / "photo.jpg", image)
    record = json.loads((scored / "all.jsonl").read_text().splitlines()[0])
    record["path"] = str(image)
    listed = tmp_path / "listed.jsonl"
    listed.write_text(json.dumps(record) + "\n")
    clash = run("retag", listed, "-m", native_bundle_dir, "-f", "txt", "--overwrite")
    assert clash.code == 1 and "never replaces" in clash.stderr, clash.stderr
    assert image.read_bytes() == (scored / "art" / "photo.jpg").read_bytes()
    caption = scored / "art" / "photo.txt"
    caption.write_text("hand edited\n")
    try:
        refused = run("retag", "all.jsonl", "-m", native_bundle_dir, "-f", "txt", "-q")
        assert refused.code == 1 and "already have a caption file" in refused.stderr
        assert caption.read_text() == "hand edited\n"
        assert not (scored / "art" / "alpha.txt").exists()
        kept = run("retag", "all.jsonl", "-m", native_bundle_dir, "-f", "txt", "--skip-existing")
        assert kept.code == 0 and "kept 1 existing captions" in kept.stderr
        assert caption.read_text() == "hand edited\n" and (scored / "art" / "alpha.txt").exists()
        again = run("retag", "all.jsonl", "-m", native_bundle_dir, "-f", "txt", "--overwrite")
        assert again.code == 0 and caption.read_text() != "hand edited\n"
    finally:
        for written in (scored / "art").rglob("*.txt"):
            written.unlink()


def test_json_results_are_read_too(run, scored, native_bundle_dir, tmp_path):
    source = tmp_path / "all.json"
    assert run("tag", "art", "-m", native_bundle_dir, "--all-scores", "-o", source, "-q").code == 0
    from_json = run("retag", source, "-m", native_bundle_dir, "-q")
    from_jsonl = run("retag", "all.jsonl", "-m", native_bundle_dir, "-q")
    assert from_json.code == 0 and from_json.stdout == from_jsonl.stdout
    assert len(from_json.stdout.splitlines()) == 20
    summary = run("retag", source, "-m", native_bundle_dir, "-o", tmp_path / "x.csv", "--json")
    assert summary.code == 0 and json.loads(summary.stdout)["written"] == 20
    assert run("retag", source, "-m", native_bundle_dir, "--json").code == 2


def test_a_profile_holds_options_and_flags_win(run, scored, native_bundle_dir, tmp_path):
    tags = kept_tags(scored)
    folder = tmp_path / "dataset"
    folder.mkdir()
    profile = folder / "lora.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "format": "txt",
                "output_dir": "captions",
                "prefix": "my_trigger",
                "exclude-tags": [tags[0].upper()],
                "replace": {tags[1]: "renamed", tags[2]: None},
                "threshold": 0.3,
                "max_tags": 5,
                "rating_tag": "rating:{}",
                "separator": "; ",
            }
        )
    )
    result = run("retag", "all.jsonl", "-m", native_bundle_dir, "--profile", profile, "-q")
    assert result.code == 0, result.stderr
    words = (folder / "captions" / "alpha.txt").read_text().rstrip("\n").split("; ")
    assert words[0] == "my_trigger" and words[1].startswith("rating:")
    assert tags[0] not in words and tags[2] not in words and "renamed" in words
    assert len(words) <= 2 + 5
    flags = run(
        "retag",
        "all.jsonl",
        "-m",
        native_bundle_dir,
        "--profile",
        profile,
        "-q",
        "--separator",
        ", ",
        "--prefix",
        "other",
        "--overwrite",
    )
    assert flags.code == 0, flags.stderr
    assert (folder / "captions" / "alpha.txt").read_text().startswith("other, rating:")
    with_tag = run(
        "tag",
        "art/alpha.png",
        "-m",
        native_bundle_dir,
        "--profile",
        profile,
        "-q",
        "--output-dir",
        tmp_path / "tagged",
    )
    assert with_tag.code == 0, with_tag.stderr
    assert (tmp_path / "tagged" / "alpha.txt").read_bytes() == (
        folder / "captions" / "alpha.txt"
    ).read_bytes().replace(b"other, ", b"my_trigger; ").replace(b", ", b"; ")


@pytest.mark.parametrize("command", ["tag", "retag"])
def test_every_option_is_checked_before_work_starts(
    run, scored, native_bundle_dir, tmp_path, command
):
    profile = tmp_path / "typo.yaml"
    profile.write_text("exclude_tag: [wolf]\n")
    source = "art" if command == "tag" else "all.jsonl"
    cases = [
        (["--replace", "wolf"], "--replace takes OLD=NEW"),
        (["--first", "wolff"], "--first names unknown tag 'wolff' (did you mean 'wolf'?)"),
        (["--profile", profile], "unknown key 'exclude_tag' (did you mean 'exclude_tags'?)"),
        (["--implied", "drop", "--implications", tmp_path / "none.csv"], "does not exist"),
        (["--implied", "drop"], "needs an implication table"),
        (["--rating-tag", "rating"], "{} stands for the rating"),
        (["--max-tags", "0"], "--max-tags must be at least 1"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        result = run(
            command, source, "-m", native_bundle_dir, "-f", "txt", "--output-dir", out, *args
        )
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert message in result.stderr, result.stderr
        assert not out.exists()


def test_the_readme_recipe_runs(run, scored, native_bundle_dir, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    recipe = readme.split("with `dataset/lora.yaml` beside the images:\n\n```yaml\n")[1]
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "lora.yaml").write_text(recipe.split("```")[0])
    implications = implications_export(
        tmp_path / "tag_implications.csv", [("pantherine", "felid"), ("felid", "feline")]
    )
    result = run(
        "retag", "all.jsonl", "-m", native_bundle_dir, "--profile", folder / "lora.yaml",
        "--implications", implications, "--output-dir", tmp_path / "captions", "-q",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    caption = (tmp_path / "captions" / "alpha.txt").read_text()
    assert caption.startswith("mytrigger, ") and "_" not in caption


def test_the_bundles_implication_table_serves_implied(run, scored, native_bundle_dir, tmp_path):
    import shutil

    from furrytag_cli.model.bundle import write_metadata
    from furrytag_cli.model.loading import load_bundle

    tags = kept_tags(scored)
    copy = tmp_path / "bundle"
    shutil.copytree(native_bundle_dir, copy)
    bundle = load_bundle(copy)
    bundle.implications = {tags[0]: [tags[1]]}
    write_metadata(bundle)
    common = ["-m", copy, "-q", "-f", "txt", "--threshold", "0.3", "--output-dir"]
    kept = run("tag", "art/alpha.png", *common, tmp_path / "kept")
    dropped = run("tag", "art/alpha.png", *common, tmp_path / "dropped", "--implied", "drop")
    assert kept.code == 0 and dropped.code == 0, kept.stderr + dropped.stderr
    with_parent = (tmp_path / "kept" / "alpha.txt").read_text().rstrip("\n").split(", ")
    without = (tmp_path / "dropped" / "alpha.txt").read_text().rstrip("\n").split(", ")
    assert tags[1] in with_parent and without == [t for t in with_parent if t != tags[1]]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_the_shards_of_a_ray_run_retag_as_their_records_do(
    fmt, run, scored, native_bundle_dir, tmp_path
):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    from furrytag_cli.distributed.shards import ShardFolder, result_schema

    lines = (scored / "all.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    schema = result_schema({h: list(v) for h, v in first["scores"].items()})
    (tmp_path / "ray").mkdir()
    shards = ShardFolder(tmp_path / "ray", fmt)
    for part in (lines[:7], lines[7:]):
        shards.add(part, [], schema)
        shards.flush()
    selection = ["--threshold", "0.3", "--max-tags", "6"]
    from_shards = run("retag", tmp_path / "ray", "-m", native_bundle_dir, *selection, "-q")
    from_file = run("retag", "all.jsonl", "-m", native_bundle_dir, *selection, "-q")
    assert from_shards.code == 0, from_shards.stderr
    assert from_shards.stdout == from_file.stdout and len(from_shards.stdout.splitlines()) == 20
    for source, out in ((tmp_path / "ray", "a"), ("all.jsonl", "b")):
        captions = ["-f", "txt", "--output-dir", tmp_path / out, "--rating-tag", "rating_{}"]
        captions += selection
        assert run("retag", source, "-m", native_bundle_dir, *captions, "-q").code == 0
    assert caption_files(tmp_path / "a", ".txt") == caption_files(tmp_path / "b", ".txt")
    # The model the shards name is found as it is for a results file.
    named = run("retag", tmp_path / "ray", "-q")
    assert named.code == 1 and "no model named" in named.stderr


def test_a_folder_without_shards_is_refused(run, scored, native_bundle_dir, tmp_path):
    result = run("retag", tmp_path, "-m", native_bundle_dir)
    assert result.code == 2
    assert "without the results shards of tag --ray" in result.stderr


def test_a_ray_folder_holding_only_failures_says_so(run, tmp_path):
    from furrytag_cli.distributed.shards import ShardFolder

    (tmp_path / "ray").mkdir()
    shards = ShardFolder(tmp_path / "ray", "jsonl")
    shards.add([], [{"path": "art/bad.png", "reason": "cannot decode"}], None)
    shards.flush()
    result = run("retag", tmp_path / "ray")
    assert result.code == 2
    assert "holds only failures (in _failures/)" in result.stderr and "--resume" in result.stderr


@pytest.mark.parametrize("command", ["retag", "gallery"])
def test_shards_in_a_bucket_are_refused_with_how_to_copy_them_down(command, run, tmp_path):
    result = run(command, "s3://bucket/tags", "-o", tmp_path / "out")
    assert result.code == 2
    assert "reads a local file or folder; received s3://bucket/tags" in result.stderr
    assert "aws s3 cp --recursive" in result.stderr
