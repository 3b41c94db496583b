"""Benchmark ``furrytag gallery``: build time, page size, and the page in headless Chromium.

Writes N sample results (``tag --all-scores`` lines over drawn 640x480 JPEGs), builds the
gallery twice (thumbnails made, then reused), opens it in the distribution's Chromium and
measures the time to the first rendered page of cards and to apply a tag filter, a sort
by a tag's score and a text search (each until the next frame is painted). The page must
render in under 2 s and filter in under 0.5 s.

    .venv/bin/python scripts/bench_gallery.py --count 10000
    .venv/bin/python scripts/bench_gallery.py --count 100000 --distinct 2000 --without-scores
"""

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gallery_sample import write_sample

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Change a control, then wait for the frame after the page re-rendered.
MEASURE = """async ([selector, value]) => {
  const control = document.querySelector(selector);
  const started = performance.now();
  control.value = value;
  control.dispatchEvent(new Event(selector === '#search' ? 'input' : 'change'));
  const applied = performance.now() - started;
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  return [applied, performance.now() - started, document.getElementById('counts').textContent];
}"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def folder_mib(folder: Path, pattern: str = "**/*") -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file()) / 2**20


def browse(index: Path, chromium: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        started = time.perf_counter()
        page.goto(index.resolve().as_uri())
        page.wait_for_function("window.FT && FT.timing.firstRender !== null", timeout=120_000)
        page.wait_for_selector("body[data-state=ready]", timeout=300_000)
        wall_ready = time.perf_counter() - started
        timing = page.evaluate("FT.timing")
        results = {
            "first render (ms since navigation)": timing["firstRender"],
            "all data loaded (ms since navigation)": timing["ready"],
            "ready, measured outside (s)": round(wall_ready, 2),
            "cards in the DOM": page.locator("#grid .card").count(),
        }
        for name, selector, value in (
            ("filter: all of one tag", "#all-of input", "anthro"),
            ("sort: by a tag's score", "#sort-tag", "wolf"),
            ("search: text over tags and paths", "#search", "00012"),
        ):
            page.click("#reset")
            applied, painted, counts = page.evaluate(MEASURE, [selector, value])
            results[f"{name} (ms, applied / painted)"] = (
                f"{applied:.0f} / {painted:.0f}  [{counts}]"
            )
        results["page errors"] = errors
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, help="distinct image files (default: count)")
    parser.add_argument(
        "--without-scores", action="store_true", help="results without --all-scores"
    )
    parser.add_argument("--work", type=Path, help="keep the sample here (default: a temp folder)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from furrytag_cli.core.machine import cpu_threads
    from furrytag_cli.gallery.build import build_gallery
    from furrytag_cli.gallery.results import read_results

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    print(f"CPU: {cpu_model()}, {cpu_threads()} cores usable")
    started = time.perf_counter()
    source = write_sample(
        work, args.count, distinct=args.distinct, all_scores=not args.without_scores
    )
    print(f"wrote {args.count:,} results in {time.perf_counter() - started:.1f} s", flush=True)
    shutil.rmtree(work / "gallery", ignore_errors=True)
    for label in ("build (thumbnails made)", "rebuild (thumbnails reused)"):
        started = time.perf_counter()
        summary = build_gallery(read_results(source, base=work), work / "gallery", progress=False)
        print(f"{label}: {time.perf_counter() - started:.1f} s ({summary.made} made)", flush=True)
    gallery = work / "gallery"
    print(
        f"page size: {folder_mib(gallery):.1f} MiB in all: data {folder_mib(gallery, 'data/*'):.1f}"
        f" MiB, thumbnails {folder_mib(gallery, 'thumbs/*'):.1f} MiB, page "
        f"{sum((gallery / n).stat().st_size for n in ('index.html', 'gallery.js', 'gallery.css')) / 1024:.0f} KiB"
    )
    for name, value in browse(summary.index, args.chromium).items():
        print(f"{name}: {value:.0f}" if name.endswith("navigation)") else f"{name}: {value}")
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
