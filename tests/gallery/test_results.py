"""Reading what a gallery shows: tag output, caption folders, failure reports, bad input."""

import json

import numpy as np
import pytest

from furrytag_cli.captions.files import CaptionFiles
from furrytag_cli.core.errors import DatasetError
from furrytag_cli.gallery.results import OTHER_HEAD, read_results
from tests.gallery.conftest import record, write_results


def test_jsonl_results_with_every_score(tmp_path):
    results = read_results(write_results(tmp_path, 6), base=tmp_path)
    assert len(results.items) == 6 and results.has_scores
    first = results.items[0]
    assert first.file == tmp_path / "imgs" / "img000.png"
    assert first.tags["species"] == [("fox", 0.9)]
    assert first.rating == "safe" and first.rating_score == 0.1
    assert len(results.vocabulary["species"]) == 50 and "wolf" in results.vocabulary["species"]
    assert results.model == "tiny-test@0123456789ab"
    assert results.failures == [("imgs/gone.png", "cannot decode <script>alert(2)</script>")]


def test_json_array_results_and_relative_paths_found_beside_the_file(tmp_path, monkeypatch):
    lines = write_results(tmp_path, 3).read_text().splitlines()
    target = tmp_path / "results.json"
    target.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    monkeypatch.chdir(tmp_path.parent)
    results = read_results(target)
    assert [i.file for i in results.items][0] == (tmp_path / "imgs" / "img000.png").resolve()
    assert results.failures == []


def test_results_without_all_scores_use_the_shipped_vocabulary(tmp_path):
    data = record("a.png", {"species": {"wolf": 0.7, "fox": 0.2}}, 0.5, all_scores=False)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(data) + "\n")
    results = read_results(path)
    assert not results.has_scores
    assert len(results.vocabulary["species"]) == 50 and "wolf" in results.vocabulary["species"]
    assert results.items[0].tags == {"species": [("wolf", 0.7)]}


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("tags.csv", "path,species,rating\na.png,wolf,safe\n", "is CSV output"),
        ("notes.txt", "hello\n", "is not JSON"),
        ("empty.jsonl", "\n\n", "is empty"),
        (
            "broken.jsonl",
            '{"path": "a.png", "tags": {}}\n{"path": \n',
            "broken.jsonl:2 is not valid JSON",
        ),
        ("other.jsonl", '{"file": "a.png", "labels": ["wolf"]}\n', 'has no "path"'),
        ("flat.jsonl", '{"path": "a.png", "tags": ["wolf"]}\n', 'has no "tags" per head'),
        ("list.json", '[{"path": "a.png", "tags": {"species": {"wolf": "high"}}}]', "(record 1)"),
        ("emptylist.json", "[]", "holds no results"),
    ],
)
def test_other_formats_are_refused_with_what_the_gallery_reads(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DatasetError) as error:
        read_results(path)
    assert message in str(error.value)
    assert "JSONL or JSON output" in str(error.value) or "not valid JSON" in str(error.value)


def test_a_missing_results_file_or_bad_failure_report(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_results(tmp_path / "nope.jsonl")
    results = write_results(tmp_path, 2)
    report = tmp_path / "report.tsv"
    report.write_text("something else\n")
    with pytest.raises(DatasetError, match="not a furrytag failure report"):
        read_results(results, failures=report)


def test_a_caption_folder(tmp_path):
    art = tmp_path / "art"
    write_results(art, 5)
    imgs = art / "imgs"
    (imgs / "img000.txt").write_text("my_trigger, wolf, anthro, looking at viewer\n")
    (imgs / "img004.png.txt").write_text("fox")
    results = read_results(imgs)
    by_name = {item.file.name: item for item in results.items}
    assert by_name["img000.png"].tags == {
        OTHER_HEAD: [("my_trigger", None)],
        "species": [("wolf", None)],
        "body": [("anthro", None)],
        "action": [("looking_at_viewer", None)],
    }
    assert by_name["img004.png"].tags == {"species": [("fox", None)]}
    assert by_name["img003.png"].note == "no caption"
    assert "my_trigger" in results.vocabulary[OTHER_HEAD]
    assert not results.has_scores


def test_a_folder_without_captions_is_refused(tmp_path):
    write_results(tmp_path, 2)
    with pytest.raises(DatasetError, match="has a caption file"):
        read_results(tmp_path / "imgs")


def test_every_score_lines_up_with_the_first_records_order(tmp_path):
    first = record("a.png", {"species": {"wolf": 0.7, "fox": 0.2}, "body": {"anthro": 0.9}}, 0.5)
    second = record("b.png", {"body": {"anthro": 0.1}, "species": {"fox": 0.6, "bat": 0.3}}, 0.5)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    results = read_results(path)
    assert results.scored == [("species", "wolf"), ("species", "fox"), ("body", "anthro")]
    assert results.items[0].scores.tolist() == pytest.approx([0.7, 0.2, 0.9])
    row = results.items[1].scores
    assert np.isnan(row[0]) and row[1:].tolist() == pytest.approx([0.6, 0.1])


def test_scores_that_are_not_numbers_are_refused(tmp_path):
    bad = record("a.png", {"species": {"wolf": 0.7}}, 0.5)
    bad["scores"]["species"]["wolf"] = "high"
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(DatasetError, match='r.jsonl:1: "scores" must map each head to tag scores'):
        read_results(path)


def test_the_shards_folder_of_a_ray_run(tmp_path):
    lines = write_results(tmp_path, 5).read_text().splitlines()
    out = tmp_path / "ray-out"
    (out / "_failures").mkdir(parents=True)
    (out / "part-20261203T000000-abc123-00001.jsonl").write_text("\n".join(lines[3:]) + "\n")
    (out / "part-20261203T000000-abc123-00000.jsonl").write_text("\n".join(lines[:3]) + "\n")
    failure = {"path": "imgs/gone.png", "reason": "cannot decode"}
    (out / "_failures" / "part-20261203T000000-abc123-00000.jsonl").write_text(
        json.dumps(failure) + "\n"
    )
    results = read_results(out, base=tmp_path)
    assert [item.path for item in results.items][-2:] == ["imgs/img003.png", "imgs/img004.png"]
    assert len(results.items) == 5 and results.has_scores
    assert results.failures == [("imgs/gone.png", "cannot decode")]
    (out / "part-20261203T000000-abc123-00002.jsonl").write_text('{"path": "x.png"}\n')
    with pytest.raises(DatasetError, match=r"part-20261203T000000-abc123-00002.jsonl \(row 1\)"):
        read_results(out)


def test_parquet_shards_of_a_ray_run(tmp_path):
    pytest.importorskip("pyarrow")
    from furrytag_cli.distributed.shards import ShardFolder, result_schema

    records = [json.loads(line) for line in write_results(tmp_path, 4).read_text().splitlines()]
    folder = ShardFolder(tmp_path / "ray-out", "parquet")
    (tmp_path / "ray-out").mkdir()
    schema = result_schema({h: list(v) for h, v in records[0]["scores"].items()})
    lines = [json.dumps(record) for record in records]
    folder.add(lines[:2], [{"path": "imgs/gone.png", "reason": "cannot decode"}], schema)
    folder.flush()
    folder.add(lines[2:], [], schema)
    folder.flush()
    results = read_results(tmp_path / "ray-out", base=tmp_path)
    assert [item.path for item in results.items] == [r["path"] for r in records]
    assert results.items[0].tags["species"] == [("fox", 0.9)]
    assert results.items[0].scores.tolist() == pytest.approx(
        [v for head in records[0]["scores"].values() for v in head.values()]
    )
    assert results.failures == [("imgs/gone.png", "cannot decode")]


def test_captions_with_another_extension_and_separator(tmp_path):
    write_results(tmp_path, 1)
    imgs = tmp_path / "imgs"
    (imgs / "img000.caption").write_text("Looking At Viewer | wolf | Wolf | Trigger\n")
    (imgs / "img000.txt").write_text("fox\n")
    results = read_results(imgs, captions=CaptionFiles(extension=".caption", separator=" | "))
    assert results.items[0].tags == {
        "action": [("looking_at_viewer", None)],
        "species": [("wolf", None)],
        OTHER_HEAD: [("trigger", None)],
    }
    (imgs / "img000.caption").unlink()
    with pytest.raises(DatasetError, match=r"\(image.caption\)"):
        read_results(imgs, captions=CaptionFiles(extension=".caption"))
