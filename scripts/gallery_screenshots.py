"""Screenshots of the gallery for the README: the grid and the detail view with a review.

Builds a gallery of sample results (drawn images, see gallery_sample.py) and photographs
it in the distribution's headless Chromium into docs/img/.

    .venv/bin/python scripts/gallery_screenshots.py
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gallery import CHROMIUM_ARGS
from gallery_sample import write_sample

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from furrytag_cli.gallery.build import build_gallery
    from furrytag_cli.gallery.results import read_results

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_sample(work, 48, size=(480, 360))
        os.chdir(work)  # the page names the results as given: results.jsonl
        results = read_results(Path("results.jsonl"))
        table = {h: dict.fromkeys(tags, 0.5) for h, tags in results.vocabulary.items()}
        summary = build_gallery(
            results, Path("gallery"), thresholds=table, thresholds_from="0.5", progress=False
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(summary.index.resolve().as_uri())
            page.wait_for_selector("body[data-state=ready]")
            grid = args.out / "gallery-grid.png"
            page.screenshot(path=grid)
            page.locator("#grid .card").nth(4).click()
            page.locator("#detail-scores .score.kept button").first.click()
            page.fill("#add-tag", "looking_at_viewer")
            page.press("#add-tag", "Enter")
            detail = args.out / "gallery-detail.png"
            page.screenshot(path=detail)
            browser.close()
    for path in (grid, detail):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
