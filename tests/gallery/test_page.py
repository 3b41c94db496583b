"""The gallery page in headless Chromium: grid, filters, sort, detail, review export, escaping."""

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from furrytag_cli.gallery.build import build_gallery
from furrytag_cli.gallery.page import CHUNK
from furrytag_cli.gallery.results import read_results
from tests.gallery.conftest import INJECTION, planted_scores, write_results

COUNT = 130  # more than one page of cards (120)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    results = read_results(write_results(folder, COUNT), base=folder)
    table = {h: dict.fromkeys(tags, 0.5) for h, tags in results.vocabulary.items()}
    summary = build_gallery(
        results, folder / "gallery", thresholds=table, thresholds_from="0.5", progress=False
    )
    return folder, summary.index


def expect_counts(page, start: str) -> None:
    """Wait until the counts line starts with ``start`` (the page updates it on each change)."""
    expect(page.locator("#counts")).to_have_text(re.compile("^" + re.escape(start)))


def card_paths(page) -> list[str]:
    return page.locator("#grid .card .path").all_inner_texts()


def test_the_page_loads_without_errors_and_pages_the_grid(site, open_page):
    _, index = site
    view = open_page(index)
    page = view.page
    assert view.errors == []
    # Everything comes from the gallery folder: no network, no CDN.
    assert view.requests and all(url.startswith(index.parent.as_uri()) for url in view.requests)
    expect_counts(page, f"{COUNT} of {COUNT} images match")
    assert "1 failed in the run" in page.inner_text("#counts")
    assert page.locator("#grid .card").count() == 120
    assert page.locator("#grid img").count() <= 120
    page.locator(".pager .next").first.click()
    expect(page.locator("#grid .card")).to_have_count(COUNT - 120)
    assert card_paths(page)[-1] == f"imgs/img{COUNT - 1:03d}.png"


def test_missing_and_unreadable_images_get_placeholders(site, open_page):
    page = open_page(site[1]).page
    cards = page.locator("#grid .card")
    assert cards.nth(2).locator(".placeholder").inner_text() == "missing"
    assert cards.nth(3).locator(".placeholder").inner_text() == "unreadable"
    assert cards.nth(0).locator("img").count() == 1


def test_tag_filters_and_a_sort_by_score_give_the_expected_images(site, open_page):
    page = open_page(site[1]).page
    page.fill("#all-of input", "wolf")
    page.press("#all-of input", "Enter")
    page.fill("#none-of input", "fox")
    page.press("#none-of input", "Enter")
    expected = [i for i in range(COUNT) if i % 10 >= 5 and i % 3 != 0]
    expect_counts(page, f"{len(expected)} of {COUNT} images match")
    assert card_paths(page)[:3] == [f"imgs/img{i:03d}.png" for i in expected[:3]]

    page.click("#reset")
    page.select_option("#rating", "2")
    page.fill("#sort-tag", "wolf")
    page.press("#sort-tag", "Enter")
    wolf = {i: planted_scores(i)["species"]["wolf"] for i in range(COUNT) if i % 2 == 1}
    best = sorted(wolf, key=lambda i: (-wolf[i], i))
    assert page.input_value("#sort") == "tag-desc"
    shown = card_paths(page)
    assert len(shown) == len(wolf)
    assert shown[:4] == [
        f"imgs/{INJECTION}" if i == 1 else f"imgs/img{i:03d}.png" for i in best[:4]
    ]


def test_score_range_search_and_frequency_table(site, open_page):
    page = open_page(site[1]).page
    page.fill("#range-tag", "wolf")
    page.press("#range-tag", "Enter")
    page.fill("#range-min", "0.7")
    page.press("#range-min", "Enter")
    page.fill("#range-max", "0.8")
    page.press("#range-max", "Enter")
    expected = [i for i in range(COUNT) if 0.7 <= planted_scores(i)["species"]["wolf"] <= 0.8]
    expect_counts(page, f"{len(expected)} of")
    page.click("#reset")
    page.fill("#search", "img12")
    expect_counts(page, "10 of")
    page.fill("#search", "")
    fox_row = page.locator("#freq tbody tr", has_text="fox")
    assert fox_row.locator("td").nth(2).inner_text() == str(len(range(0, COUNT, 3)))
    fox_row.click()
    assert page.locator("#all-of .chip").inner_text().startswith("fox")
    expect_counts(page, f"{len(range(0, COUNT, 3))} of")


def test_the_detail_view_shows_every_score_and_the_thresholds(site, open_page):
    page = open_page(site[1]).page
    page.locator("#grid .card").nth(7).click()
    page.wait_for_selector("#detail:not([hidden])")
    assert page.inner_text("#detail-path") == "imgs/img007.png"
    rows = page.locator("#detail-scores .score")
    assert rows.count() == 228
    wolf = page.locator('#detail-scores .score[data-tag="wolf"]')
    assert wolf.locator(".value").inner_text() == "0.750"
    assert "kept" in wolf.get_attribute("class")
    assert page.locator('#detail-scores .score[data-tag="fox"] .value').inner_text() == "0.100"
    assert page.locator("#detail-scores .mark").count() == 228
    assert "0.5" in page.inner_text("#detail-thresholds")
    assert page.inner_text("#detail-rating").startswith("Rating: explicit (score 0.900)")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#detail-path") == "imgs/img008.png"
    page.keyboard.press("Escape")
    assert page.locator("#detail").is_hidden()


def test_a_script_file_name_and_failure_reason_are_shown_as_text(site, open_page):
    view = open_page(site[1])
    page = view.page
    assert page.locator("#grid .card .path").nth(1).inner_text() == f"imgs/{INJECTION}"
    assert "<script>alert(2)</script>" in page.inner_text("#failures")
    page.locator("#grid .card").nth(1).click()
    assert page.inner_text("#detail-path") == f"imgs/{INJECTION}"
    page.wait_for_function("document.getElementById('detail-img').complete")
    assert page.evaluate("document.getElementById('detail-img').naturalWidth") == 32
    assert (
        page.evaluate("document.querySelectorAll('img[src=\"x\"], script:not([src])').length") == 0
    )
    assert view.dialogs == [] and view.errors == []


def test_review_is_kept_across_reloads_and_exported_as_labels(site, open_page):
    folder, index = site
    view = open_page(index, downloads=True)
    page = view.page
    page.locator("#grid .card").nth(5).click()
    page.locator('#detail-scores .score[data-tag="wolf"] button').click()
    page.fill("#add-tag", "dragon")
    page.press("#add-tag", "Enter")
    page.fill("#add-tag", "no_such_tag")
    page.press("#add-tag", "Enter")
    assert "not in the model's vocabulary" in page.inner_text("#review-state")
    page.click("#detail-next")
    page.click("#mark-reviewed")
    page.select_option("#review-rating", "q")
    page.keyboard.press("Escape")
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert page.inner_text("#review-count") == "2 reviewed"
    with page.expect_download() as download:
        page.click("#export")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert [r["path"] for r in rows] == [
        str(folder / "imgs" / "img005.png"),
        str(folder / "imgs" / "img006.png"),
    ]
    assert set(rows[0]["tags"].split()) == {"anthro", "dragon"}
    assert rows[0]["rating"] == "e"
    assert set(rows[1]["tags"].split()) == {"anthro", "wolf", "fox"}
    assert rows[1]["rating"] == "q"
    assert view.errors == []


def test_results_in_several_chunks_load_and_stay_paged_and_failures_are_capped(tmp_path, open_page):
    count = CHUNK * 2 + 7
    source = write_results(tmp_path, count, images=False)
    failed = "".join(f"imgs/bad{i}.png\tcannot decode\n" for i in range(1005))
    (tmp_path / "results.jsonl.failures.tsv").write_text("path\treason\n" + failed)
    results = read_results(source, base=tmp_path)
    summary = build_gallery(results, tmp_path / "gallery", progress=False)
    assert len(list((tmp_path / "gallery" / "data").glob("chunk-*.js"))) == 3
    view = open_page(summary.index)
    page = view.page
    expect_counts(page, f"{count:,} of {count:,} images match")
    assert page.locator("#grid .card").count() == 120
    assert page.locator("#grid .placeholder", has_text="missing").count() == 120
    assert page.locator("#failures tbody tr").count() == 1001
    assert "and 5 more" in page.locator("#failures tbody tr").last.inner_text()
    page.locator("#grid .card").first.click()
    assert "not recorded" in page.inner_text("#detail-thresholds")
    assert page.inner_text("#detail-note").startswith("missing")
    assert view.errors == []


def test_a_caption_folder_shows_its_tags_and_exports_without_ratings(tmp_path, open_page):
    write_results(tmp_path, 5)
    imgs = tmp_path / "imgs"
    (imgs / "img000.txt").write_text("my_trigger, wolf, anthro\n")
    (imgs / "img004.txt").write_text("fox\n")
    summary = build_gallery(read_results(imgs), tmp_path / "gallery", progress=False)
    view = open_page(summary.index, downloads=True)
    page = view.page
    cards = page.locator("#grid .card")
    first = cards.filter(has_text="img000.png")
    assert first.locator(".group .head").all_inner_texts() == ["body", "species", "other"]
    assert first.locator(".group .tag").all_inner_texts() == ["anthro", "wolf", "my_trigger"]
    assert "no caption" in cards.filter(has_text="onerror=alert").inner_text()
    assert page.locator("#rating").is_disabled()
    first.click()
    assert "tag with --all-scores" in page.inner_text("#detail-scores")
    page.click("#mark-reviewed")
    page.click("#detail-close")
    assert page.inner_text("#review-count") == "1 reviewed"
    with page.expect_download() as download:
        page.click("#export")
    lines = download.value.path().read_text().splitlines()
    assert lines == ["path,tags,rating", f"{imgs / 'img000.png'},wolf anthro,"]
    assert view.errors == []
