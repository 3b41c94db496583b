"""furrytag evaluate: scoring packed splits and labels files, tuning, caches, reports."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from furrytag_cli.core.errors import DatasetError
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.scoring import read_labels
from furrytag_cli.model.categories import CategorySet
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.model.thresholds import Thresholds
from tests.clirunner import invoke
from tests.datasetfactory import store_images, synth_dataset
from tests.modelfactory import make_native_bundle


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A packed synthetic dataset (32 px) and two tiny bundles over its categories."""
    from furrytag_cli.dataset.pack import pack_dataset

    root = tmp_path_factory.mktemp("eval")
    data, site, categories = synth_dataset(root / "synth", posts=160, tags_per_head=3, seed=3)
    store_images(site, data)
    pack_dataset(data, 32, categories, shard_size=50)
    first = make_native_bundle(root / "model-a", categories=categories, seed=1)
    second = make_native_bundle(root / "model-b", categories=categories, seed=2)
    return data, categories, first, second


@pytest.fixture
def evaluate(capsys, monkeypatch):
    """Runs ``furrytag evaluate`` with the given arguments in this process."""
    return lambda *args: invoke(capsys, monkeypatch, "evaluate", *map(str, args))


def test_split_scores_match_the_model_and_labels(packed, evaluate, tmp_path):
    import keras

    from furrytag_cli.dataset.records import read_split
    from furrytag_cli.model.preprocess import preprocess_image

    data, categories, bundle, _ = packed
    result = evaluate(
        "--model",
        bundle,
        "--data",
        data,
        "--scores",
        tmp_path,
        "--tune-on",
        "none",
        "--json",
        "-q",
    )
    assert result.code == 0, result.stderr
    cached = ScoreSet.load(tmp_path / "tiny-test.test.npz")
    images, labels, ratings = [], {h: [] for h in categories.head_names}, []
    for image, label, rating in read_split(data, "test", categories):
        images.append(preprocess_image(image, load_bundle(bundle).preprocess))
        for head in categories.head_names:
            labels[head].append(label[head].numpy() > 0.5)
        ratings.append(float(rating))
    model = keras.saving.load_model(bundle / "model.keras")
    outputs = model.predict(np.stack(images), verbose=0)
    for head in categories.head_names:
        np.testing.assert_allclose(cached.scores[head], outputs[head], atol=1e-5)
        np.testing.assert_array_equal(cached.y_true[head], np.array(labels[head]))
    np.testing.assert_allclose(cached.rating_true, ratings)
    metrics = json.loads(result.stdout)["tiny-test"]
    assert metrics["images"] == len(images)
    assert list(metrics["settings"]) == ["fixed 0.5"]


def test_tuning_on_val_report_and_cached_rerun(packed, evaluate, tmp_path):
    data, _, bundle, _ = packed
    report, scores = tmp_path / "report", tmp_path / "scores"
    cached = ("--model", bundle, "--data", data, "--scores", scores)
    first = evaluate(*cached, "--report", report, "--json")
    assert first.code == 0, first.stderr
    settings = json.loads(first.stdout)["tiny-test"]["settings"]
    assert list(settings) == ["fixed 0.5", "global P=R", "global best F1", "per head", "per tag"]
    assert sorted(p.name for p in scores.iterdir()) == ["tiny-test.test.npz", "tiny-test.val.npz"]
    assert {
        "metrics.json",
        "per_tag.csv",
        "pr_curves.png",
        "f1_vs_threshold.png",
        "tag_f1_vs_support.png",
        "rating_confusion.png",
    } <= {p.name for p in report.iterdir()}
    assert (report / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Tag metrics" in first.stderr and "Rating" in first.stderr

    again = evaluate(*cached, "--threshold", "0.3", "--json", "-q")
    assert again.code == 0, again.stderr
    rerun = json.loads(again.stdout)["tiny-test"]["settings"]
    assert "fixed 0.3" in rerun
    assert rerun["per tag"] == settings["per tag"]


def test_cached_scores_of_another_model_are_refused(packed, evaluate, tmp_path):
    data, _, bundle, other = packed
    copy = tmp_path / "b" / "tiny-test"
    shutil.copytree(other, copy)
    cached = ("--data", data, "--scores", tmp_path / "s", "--tune-on", "none", "-q")
    assert evaluate("-m", bundle, *cached).code == 0
    refused = evaluate("-m", copy, *cached)
    assert refused.code == 1
    assert (
        "holds the scores of tiny-test@" in refused.stderr and "delete this one" in refused.stderr
    )


def test_written_thresholds_are_used_by_tag(packed, evaluate, capsys, monkeypatch, tmp_path):
    data, categories, bundle, _ = packed
    copy = tmp_path / "tuned-bundle"
    shutil.copytree(bundle, copy)
    saved = tmp_path / "thresholds.yaml"
    result = evaluate(
        "-m",
        copy,
        "--data",
        data,
        "--min-support",
        "1",
        "--write-thresholds",
        "--save-thresholds",
        saved,
        "-q",
    )
    assert result.code == 0, result.stderr
    stored = load_bundle(copy).thresholds
    in_file = yaml.safe_load(saved.read_text())
    assert in_file.pop("model") == load_bundle(bundle).model_id
    assert stored == in_file
    assert stored["per_tag"], "with min-support 1 some tags get their own threshold"
    thresholds = Thresholds.from_dict(stored)

    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(image)
    tagged = invoke(
        capsys,
        monkeypatch,
        "tag",
        image,
        "--model",
        copy,
        "--all-scores",
        "--format",
        "jsonl",
        "-q",
    )
    assert tagged.code == 0, tagged.stderr
    row = json.loads(tagged.stdout)
    for head in categories.head_names:
        vector = thresholds.vector(head, categories.tags(head))
        expected = {t for t, v in zip(categories.tags(head), vector) if row["scores"][head][t] > v}
        assert set(row["tags"][head]) == expected
    from_file = invoke(
        capsys,
        monkeypatch,
        "tag",
        image,
        "--model",
        bundle,
        "--thresholds",
        saved,
        "--format",
        "jsonl",
        "-q",
    )
    assert from_file.code == 0, from_file.stderr
    assert json.loads(from_file.stdout)["tags"] == row["tags"]


def test_write_thresholds_refuses_cached_downloads(packed, evaluate, furrytag_home):
    data, _, bundle, _ = packed
    inside = furrytag_home / "models" / "tiny" / "unpacked" / "tiny-test"
    shutil.copytree(bundle, inside)
    result = evaluate("-m", inside, "--data", data, "--write-thresholds", "-q")
    assert result.code == 1
    assert "cached download" in result.stderr and "--save-thresholds" in result.stderr


def test_compare_two_models(packed, evaluate, tmp_path):
    data, _, first, second = packed
    copy = tmp_path / "other"
    shutil.copytree(second, copy)
    (copy / "furrytag.yaml").write_text(
        (copy / "furrytag.yaml").read_text().replace("name: tiny-test", "name: tiny-other")
    )
    result = evaluate("-m", first, "-m", copy, "--data", data, "--report", tmp_path / "r")
    assert result.code == 0, result.stderr
    assert "Models compared (thresholds: per tag)" in result.stdout
    assert "tiny-test" in result.stdout and "tiny-other" in result.stdout
    assert (tmp_path / "r" / "tiny-other" / "metrics.json").is_file()


def test_quiet_means_silent_even_when_the_engine_converts(packed, evaluate, tmp_path):
    data, _, first, _ = packed
    fresh = tmp_path / "fresh"
    shutil.copytree(first, fresh)
    result = evaluate("-m", fresh, "--data", data, "-q")
    assert result.code == 0 and result.stderr == "" and result.stdout == ""
    assert (tmp_path / "fresh.lite").is_dir()


def test_models_that_share_a_name_are_told_apart(packed, evaluate, tmp_path):
    data, _, first, second = packed
    result = evaluate(
        "-m",
        first,
        "-m",
        second,
        "--data",
        data,
        "--scores",
        tmp_path / "scores",
        "--report",
        tmp_path / "r",
    )
    assert result.code == 0, result.stderr
    labels = [f"tiny-test@{load_bundle(b).fingerprint()[:8]}" for b in (first, second)]
    assert all(label in result.stdout for label in labels)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(labels)
    assert len(list((tmp_path / "scores").glob("tiny-test@*.test.npz"))) == 2
    twice = evaluate("-m", first, "-m", first, "--data", data)
    assert twice.code == 1 and "is the same model as --model" in twice.stderr


def write_images(folder, count):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (36, 48, 3), np.uint8)).save(folder / f"{i}.jpg")


def test_labels_file_with_a_broken_image(packed, evaluate, tmp_path):
    _, categories, bundle, _ = packed
    write_images(tmp_path / "art", 4)
    (tmp_path / "art" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    tags = [categories.tags(h)[0] for h in categories.head_names]
    lines = ["path,tags,rating"] + [f'art/{i}.jpg,"{", ".join(tags[: i + 1])}",s' for i in range(4)]
    lines.append("art/broken.jpg,,e")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    result = evaluate("-m", bundle, "--labels", labels, "--json")
    assert result.code == 3, result.stderr  # finished, some inputs failed
    metrics = json.loads(result.stdout)["tiny-test"]
    assert metrics["images"] == 4
    assert (
        "broken.jpg" in result.stderr
        and "not among the model" not in result.stderr
        and "1 image(s) of tiny-test could not be read" in result.stderr
    )
    assert metrics["rating"]["confusion"][0] and sum(map(sum, metrics["rating"]["confusion"])) == 4
    missing = evaluate("-m", bundle, "--labels", labels, "--tune-on", tmp_path / "nope.csv")
    assert (
        missing.code == 1 and f"--tune-on {tmp_path / 'nope.csv'} does not exist" in missing.stderr
    )


def test_reviewed_captions_are_labels_that_tune_thresholds_for_tag(
    packed, evaluate, capsys, monkeypatch, tmp_path
):
    _, categories, bundle, _ = packed
    art = tmp_path / "art"
    write_images(art, 12)
    (art / "no-caption.png").write_bytes((art / "0.jpg").read_bytes())
    tags = [t for h in categories.head_names for t in categories.tags(h)]
    for i in range(12):
        # What a reviewer leaves: any case, spaces for underscores, a trigger word, a rating.
        kept = [tags[j].replace("_", " ").upper() for j in range(len(tags)) if (i + j) % 3 == 0]
        (art / f"{i}.txt").write_text(", ".join(["my_trigger", *kept, "rating:safe"]) + "\n")
    saved = tmp_path / "mine.yaml"
    result = evaluate(
        "-m",
        bundle,
        "--labels-from-captions",
        art,
        "--min-support",
        "1",
        "--save-thresholds",
        saved,
        "--json",
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["tiny-test"]["images"] == 12
    assert "2 tag(s) in" in result.stderr and "my_trigger" in result.stderr
    assert "rating:safe" in result.stderr and "tuned on the evaluated images" in result.stderr
    fitted = yaml.safe_load(saved.read_text())
    assert fitted["model"] == load_bundle(bundle).model_id and fitted["per_tag"]
    image = art / "0.jpg"
    tagged = invoke(capsys, monkeypatch, "tag", image, "-m", bundle, "--thresholds", saved, "-q")
    assert tagged.code == 0, tagged.stderr
    other = invoke(capsys, monkeypatch, "tag", image, "-m", packed[3], "--thresholds", saved)
    assert other.code == 1 and "were tuned for model tiny-test@" in other.stderr
    for i in range(12):
        text = (art / f"{i}.txt").read_text().rstrip("\n")
        (art / f"{i}.caption").write_text(text.replace(", ", " | ") + "\n")
        (art / f"{i}.txt").unlink()
    other_files = evaluate("-m", bundle, "--labels-from-captions", art, "--min-support", "1",
        "--caption-ext", ".caption", "--separator", " | ", "--json",
    )  # fmt: skip
    assert other_files.code == 0, other_files.stderr
    assert other_files.stdout == result.stdout
    empty = tmp_path / "empty"
    write_images(empty, 1)
    none = evaluate("-m", bundle, "--labels-from-captions", empty)
    assert none.code == 1 and "no image in" in none.stderr


def test_read_labels_formats(tmp_path):
    categories = CategorySet.load()
    csv_file = tmp_path / "l.csv"
    csv_file.write_text(
        'path,tags\na.png,"anthro, looking at viewer, \\(unknown\\)"\nb.png,solo male\n'
    )
    labelled = read_labels(csv_file, categories)
    head, index = categories.index()["looking_at_viewer"]
    assert labelled.labels[head][0, index]
    head, index = categories.index()["male"]
    assert labelled.labels[head][1, index]
    assert labelled.unknown_tags == {"(unknown)": 1, "solo": 1}
    assert labelled.rating is None and labelled.paths[0] == tmp_path / "a.png"

    jsonl = tmp_path / "l.jsonl"
    jsonl.write_text(
        '{"path": "x.png", "tags": ["anthro"], "rating": "explicit"}\n\n'
        '{"path": "y.png", "tags": "solo", "rating": "q"}\n'
    )
    labelled = read_labels(jsonl, categories)
    assert labelled.rating.tolist() == [1.0, 0.5]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("l.csv", "file,tags\na.png,anthro\n", "needs a header with columns path and tags"),
        ("l.csv", "path,tags,rating\na.png,anthro,s\nb.png,anthro,\n", "l.csv:3: no rating"),
        ("l.csv", "path,tags,rating\na.png,anthro,x\n", "rating must be s, q, e"),
        ("l.jsonl", '{"path": "a.png"}\nnot json\n', "l.jsonl:2: not valid JSON"),
        ("l.jsonl", '{"tags": ["anthro"]}\n', 'needs an object with a "path"'),
        ("l.csv", "path,tags\n", "lists no images"),
    ],
)
def test_bad_labels_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        read_labels(path, CategorySet.load())


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give one of --data DATA (a packed dataset), --labels FILE or --labels-from"),
        (("--tune-on", "everything"), "--tune-on must be one of"),
        (("--batch-size", "-3"), "--batch-size must be at least 1; received -3"),
        (("--threshold", "2"), "--threshold must be from 0 to 1; received 2.0"),
        (("--min-support", "0"), "--min-support must be at least 1; received 0"),
        (("--shrinkage", "-5"), "--shrinkage must be 0 or more; received -5.0"),
        (("--compare-at", "per tag"), "--compare-at picks the thresholds of the table comparing"),
        (("--report", "/proc/version"), "--report /proc/version is a file; give a folder"),
        (
            ("--save-thresholds", "/proc/version/t.yaml"),
            "--save-thresholds /proc/version/t.yaml: cannot write in /proc/version",
        ),
    ],
)
def test_bad_options(packed, evaluate, args, message):
    data, _, bundle, _ = packed
    with_data = ("--data", data) if args else ()
    result = evaluate("-m", bundle, *with_data, *args)
    assert result.code == 1
    assert message in result.stderr


def test_caption_options_are_refused_where_they_cannot_apply(packed, evaluate, tmp_path):
    data, _, bundle, _ = packed
    loose = evaluate("-m", bundle, "--data", data, "--separator", " | ")
    assert loose.code == 2 and "say how --labels-from-captions are written" in loose.stderr
    empty = evaluate("-m", bundle, "--labels-from-captions", tmp_path, "--separator", "")
    assert empty.code == 2 and "--separator must not be empty" in empty.stderr


def test_a_split_not_among_the_choices_is_a_usage_error(packed, evaluate):
    data, _, bundle, _ = packed
    result = evaluate("-m", bundle, "--data", data, "--split", "dev")
    assert result.code == 2 and "'dev' is not one of 'train', 'val', 'test'" in result.stderr


def test_missing_split_says_how_to_get_it(packed, evaluate, tmp_path):
    data, categories, bundle, _ = packed
    from furrytag_cli.dataset.pack import pack_dataset

    only_train = tmp_path / "only-train"
    shutil.copytree(data, only_train, ignore=shutil.ignore_patterns("shards"))
    pack_dataset(only_train, 32, categories, splits=("train", "test"))
    result = evaluate("-m", bundle, "--data", only_train)
    assert result.code == 1
    assert "no examples in split 'val' to tune thresholds on" in result.stderr
    assert "--tune-on none" in result.stderr


def test_the_library_entry_point_writes_what_the_command_would(packed, tmp_path):
    from furrytag_cli.core.errors import ConfigError, FurrytagError
    from furrytag_cli.evaluation.job import EvalRequest, Outputs, Source, run_evaluation
    from furrytag_cli.model.thresholds import load_thresholds

    data, _, bundle, _ = packed
    request = EvalRequest(
        source=Source(data=data, split="test"), tune_on=Source(data=data, split="val")
    )
    saved = tmp_path / "thresholds.yaml"
    run = run_evaluation([bundle], request, outputs=Outputs(save_thresholds=saved), notify=None)
    (report,) = run.reports.values()
    assert list(run.reports) == ["tiny-test"]
    assert run.written == [f"Saved tuned thresholds of tiny-test to {saved}"]
    loaded = load_thresholds(saved)
    assert loaded.model == report.bundle.model_id
    assert loaded.to_dict() == dataclasses.replace(report.tuned, model=loaded.model).to_dict()

    untuned = EvalRequest(source=Source(data=data, split="test"))
    with pytest.raises(ConfigError, match="tuning thresholds needs --tune-on"):
        run_evaluation([bundle], untuned, outputs=Outputs(save_thresholds=saved))
    with pytest.raises(FurrytagError, match="is the same model as"):
        run_evaluation([bundle, bundle], untuned, notify=None)
