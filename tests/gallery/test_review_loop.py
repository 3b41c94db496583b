"""The whole loop: tag --all-scores --gallery → review in the page → export → evaluate → tag."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.clirunner import invoke


@pytest.mark.slow
def test_a_review_exported_from_the_page_tunes_thresholds_for_tag(
    native_bundle_dir, open_page, tmp_path, capsys, monkeypatch
):
    art = tmp_path / "art"
    art.mkdir()
    rng = np.random.default_rng(5)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(art / f'{i}, "q".png')
    monkeypatch.chdir(tmp_path)
    tagged = invoke(
        capsys,
        monkeypatch,
        "tag",
        "art",
        "-m",
        native_bundle_dir,
        "--all-scores",
        "--threshold",
        "0.5",
        "-o",
        "results.jsonl",
        "--gallery",
        "gallery",
    )
    assert tagged.code == 0, tagged.stderr
    assert "Gallery of 6 images (6 thumbnails made" in tagged.stderr

    view = open_page(tmp_path / "gallery" / "index.html", downloads=True)
    page = view.page
    assert page.locator("#grid .card").count() == 6
    for position in range(4):
        page.locator("#grid .card").nth(position).click()
        assert "as this run of tiny-test used them" in page.inner_text("#detail-thresholds")
        kept = page.locator("#detail-scores .score.kept button")
        if kept.count():
            kept.first.click()
        page.fill("#add-tag", "wolf" if position % 2 else "fox")
        page.press("#add-tag", "Enter")
        page.click("#detail-close")
    with page.expect_download() as download:
        page.click("#export")
    labels = tmp_path / "reviewed.csv"
    download.value.save_as(labels)
    assert labels.read_text().startswith("path,tags,rating\n")
    assert view.errors == []

    evaluated = invoke(
        capsys,
        monkeypatch,
        "evaluate",
        "-m",
        native_bundle_dir,
        "--labels",
        labels,
        "--tune-on",
        labels,
        "--min-support",
        "1",
        "--save-thresholds",
        "t.yaml",
        "--json",
    )
    assert evaluated.code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["tiny-test"]["images"] == 4
    assert "wolf" in yaml.safe_load((tmp_path / "t.yaml").read_text())["per_tag"]["species"]
    retagged = invoke(
        capsys,
        monkeypatch,
        "tag",
        "art",
        "-m",
        native_bundle_dir,
        "--thresholds",
        "t.yaml",
        "-o",
        "again.jsonl",
    )
    assert retagged.code == 0, retagged.stderr
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 6
    # Or without the model: choose the tags again from the saved scores, and look again.
    chosen = invoke(
        capsys,
        monkeypatch,
        "retag",
        "results.jsonl",
        "-m",
        native_bundle_dir,
        "--thresholds",
        "t.yaml",
        "--all-scores",
        "-o",
        "retagged.jsonl",
    )
    assert chosen.code == 0, chosen.stderr
    shown = invoke(
        capsys,
        monkeypatch,
        "gallery",
        "retagged.jsonl",
        "-o",
        "gallery",
        "--thresholds",
        "t.yaml",
    )
    assert shown.code == 0, shown.stderr
    assert "(0 thumbnails made, 6 reused" in shown.stderr
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert page.inner_text("#review-count") == "4 reviewed"
    page.locator("#grid .card").first.click()
    assert "from t.yaml" in page.inner_text("#detail-thresholds")
    assert view.errors == []


@pytest.mark.slow
def test_tag_gallery_of_captions(native_bundle_dir, open_page, tmp_path, capsys, monkeypatch):
    art = tmp_path / "art"
    art.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(art / f"{i}.png")
    tagged = invoke(
        capsys,
        monkeypatch,
        "tag",
        art,
        "-m",
        native_bundle_dir,
        "-f",
        "txt",
        "--top-k",
        "2",
        "--threshold",
        "0",
        "--prefix",
        "my_trigger",
        "--gallery",
        tmp_path / "gallery",
    )
    assert tagged.code == 0, tagged.stderr
    page = open_page(tmp_path / "gallery" / "index.html").page
    cards = page.locator("#grid .card")
    assert cards.count() == 3
    caption = (art / "0.txt").read_text().strip().split(", ")
    assert caption[0] == "my_trigger" and len(caption) == 1 + 2 * 5
    assert sorted(cards.first.locator(".group .tag").all_inner_texts()) == sorted(caption)
