"""Results files written as ``furrytag tag`` writes them, and one headless Chromium per session."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from furrytag_cli.model.categories import CategorySet

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INJECTION = "<img src=x onerror=alert(1)>.png"


def record(path: str, scores: dict[str, dict[str, float]], rating_score: float, *, all_scores=True):
    """A result line as ``furrytag tag --all-scores`` writes it, kept at threshold 0.5."""
    kept = {
        head: dict(sorted(((t, s) for t, s in values.items() if s > 0.5), key=lambda p: -p[1]))
        for head, values in scores.items()
    }
    rating = ("safe", "questionable", "explicit")[min(2, int(rating_score * 3))]
    data = {"path": path, "tags": kept, "rating": rating, "rating_score": rating_score}
    if all_scores:
        data["scores"] = scores
    data["file"] = {"size": 0, "mtime": 0.0}
    data["model"] = "tiny-test@0123456789ab"
    return data


def planted_scores(i: int) -> dict[str, dict[str, float]]:
    """Image ``i``'s scores: wolf (i % 10) / 10 + 0.05, fox 0.9 on every third, the rest low."""
    scores = {head: dict.fromkeys(tags, 0.01) for head, tags in CategorySet.load().heads.items()}
    scores["species"]["wolf"] = round((i % 10) / 10 + 0.05, 4)
    scores["species"]["fox"] = 0.9 if i % 3 == 0 else 0.1
    scores["body"]["anthro"] = 0.8
    return scores


def write_results(folder: Path, count: int, *, images=True) -> Path:
    """``count`` images (imgs/img000.png ...) and their results; image 1 is named like a
    script, image 2 is missing, image 3 is not an image; a failure report beside it."""
    imgs = folder / "imgs"
    imgs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(count):
        name = INJECTION if i == 1 else f"img{i:03d}.png"
        if images and i != 2:
            pixels = rng.integers(0, 255, (24 + i % 5, 32, 3), np.uint8)
            Image.fromarray(pixels).save(imgs / name)
        rating_score = round(0.1 if i % 2 == 0 else 0.9, 4)
        lines.append(json.dumps(record(f"imgs/{name}", planted_scores(i), rating_score)))
    if images and count > 3:
        (imgs / "img003.png").write_bytes(b"\x89PNG\r\n\x1a\n but cut short")
    results = folder / "results.jsonl"
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = folder / "results.jsonl.failures.tsv"
    report.write_text(
        "path\treason\nimgs/gone.png\tcannot decode <script>alert(2)</script>\n", encoding="utf-8"
    )
    return results


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (the distribution's) for every browser test of the session."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser page that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, browser, url: str, downloads: bool = False):
        self.context = browser.new_context(
            accept_downloads=downloads, viewport={"width": 1280, "height": 900}
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-state=ready]")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser):
    """Open a gallery's index.html in a fresh browser context (its own localStorage)."""
    pages = []

    def opener(index: Path, downloads: bool = False) -> Page:
        page = Page(browser, index.resolve().as_uri(), downloads)
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
