"""Benchmark `furrytag retag` against tagging the same images with a small model.

    python scripts/bench_retag.py [--images 200] [--results 10000] [--memory-results 100000]

Builds a small native bundle (MobileNetV3-Small, 224 px, random weights whose output
biases make most tags unlikely, as a trained model's are: an image keeps a dozen or so
tags, not half of them), writes ``--images`` JPEGs and tags them once with
``--all-scores``, timing tag's own rate (model loaded, in the run's summary). The records
are repeated under other names into ``--results`` and ``--memory-results`` results files.
Then, each in a fresh process:
  - retag of ``--results`` results to JSONL and to caption files, images/s (the run's own
    rate, and with the process start, reading the bundle's metadata and hashing it);
  - peak RSS (VmHWM) of retag over ``--results`` and ``--memory-results`` results.
Prints the CPU, the rates, retag's speed-up over tag, and the goals: retag ≥ 5,000
images/s to JSONL; peak memory at the larger count ≤ 1.15 × at the smaller. On a machine
shared with other work the wall-clock rates drop with the load; the CPU seconds the
retag process used (start-up included) say what it costs.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RATE = re.compile(r"\(([\d,.]+) images/s\)")

# Runs furrytag in this fresh process and reports its own peak memory (VmHWM: ru_maxrss
# of a child would include what it inherited from its parent on Linux).
MEASURED = """
import os, runpy, sys, time
sys.argv = ["furrytag", *sys.argv[1:]]
start = time.perf_counter()
try:
    runpy.run_module("furrytag_cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
took = time.perf_counter() - start
cpu = sum(os.times()[:2])
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("MEASURED", code, took, peak / 1024, cpu, file=sys.stderr)
"""


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def make_bundle(folder: Path, backbone: str, size: int) -> Path:
    import keras

    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.categories import CategorySet
    from furrytag_cli.model.network import build_model, output_name
    from furrytag_cli.model.preprocess import PreprocessSpec

    keras.utils.set_random_seed(0)
    categories = CategorySet.load()
    model = build_model(backbone, size, categories, weights=None)
    rng = np.random.default_rng(0)
    for head in categories.head_names:
        layer = model.get_layer(output_name(head))
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(-1.5, 1.0, bias.shape).astype(bias.dtype)])
    bundle = Bundle(
        path=folder,
        kind="native",
        name=f"bench-{backbone}",
        backbone=backbone,
        categories=categories,
        preprocess=PreprocessSpec(size=size),
    )
    save_bundle(model, folder, bundle)
    return folder


def write_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 255, (320, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.jpg", quality=85)


def furrytag(*args: str, cwd: Path) -> tuple[float, float, float, float]:
    """Run furrytag in a fresh process: (its own rate, wall seconds, peak MB, CPU seconds)."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    measured = next(
        line.split() for line in result.stderr.splitlines() if line.startswith("MEASURED")
    )
    if measured[1] not in ("0", "None"):
        raise SystemExit(f"furrytag {' '.join(args)} failed:\n{result.stderr}")
    rates = RATE.findall(result.stderr)
    rate = float(rates[-1].replace(",", "")) if rates else float("nan")
    return rate, float(measured[2]), float(measured[3]), float(measured[4])


def repeat_results(source: Path, target: Path, count: int) -> None:
    """``count`` records: ``source``'s repeated, each under its own image name."""
    lines = source.read_text(encoding="utf-8").splitlines()
    with target.open("w", encoding="utf-8") as out:
        for i in range(count):
            record = json.loads(lines[i % len(lines)])
            record["path"] = f"images/{i // 1000:03d}/img{i:07d}.jpg"
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images tagged with the model")
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--memory-results", type=int, default=100_000)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="furrytag-bench-retag-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); work folder {work}")

    bundle = make_bundle(work / "bundle", args.backbone, args.size)
    write_images(work / "art", args.images)
    scored = work / "scored.jsonl"
    scored.unlink(missing_ok=True)
    tag_rate, tag_wall, _, _ = furrytag(
        "tag", "art", "-m", str(bundle), "--all-scores", "-o", str(scored), cwd=work
    )
    kept = [
        sum(len(tags) for tags in json.loads(line)["tags"].values())
        for line in scored.read_text().splitlines()
    ]
    print(
        f"tag ({args.backbone}, {args.size} px): {args.images} images, {tag_rate:,.1f} images/s "
        f"({args.images / tag_wall:,.1f} with the model load); "
        f"{np.mean(kept):.1f} tags kept per image"
    )

    results = {}
    for count in sorted({args.results, args.memory_results}):
        results[count] = work / f"results-{count}.jsonl"
        repeat_results(scored, results[count], count)

    out = work / "out.jsonl"
    retag_rate, retag_wall, small_peak, retag_cpu = furrytag(
        "retag",
        str(results[args.results]),
        "-m",
        str(bundle),
        "-o",
        str(out),
        "--overwrite",
        cwd=work,
    )
    assert sum(1 for _ in out.open()) == args.results
    caption_rate, caption_wall, _, _ = furrytag(
        "retag",
        str(results[args.results]),
        "-m",
        str(bundle),
        "-f",
        "txt",
        "--output-dir",
        str(work / "captions"),
        "--overwrite",
        "--prefix",
        "trigger",
        "--rating-tag",
        "{}",
        "--max-tags",
        "20",
        cwd=work,
    )
    large = args.memory_results
    _, _, large_peak, _ = furrytag(
        "retag", str(results[large]), "-m", str(bundle), "-o", str(out), "--overwrite", cwd=work
    )
    n = args.results
    print(
        f"retag {n:,} results → JSONL:     {retag_rate:,.0f} images/s "
        f"({n / retag_wall:,.0f} with start-up, {retag_wall:.2f} s); "
        f"{n / retag_cpu:,.0f} per CPU-second with start-up ({retag_cpu:.2f} s of CPU)"
    )
    print(
        f"retag {n:,} results → captions:  {caption_rate:,.0f} images/s "
        f"({n / caption_wall:,.0f} with start-up)"
    )
    print(f"retag vs tag: {retag_rate / tag_rate:,.0f}× faster (JSONL, own rates)")
    print(
        f"peak RSS of retag: {small_peak:.0f} MB at {n:,} results, {large_peak:.0f} MB at "
        f"{large:,} ({large_peak / small_peak:.2f}×)"
    )
    goals = [
        ("retag ≥ 5,000 images/s (JSONL)", retag_rate >= 5000),
        (f"peak RSS at {large:,} ≤ 1.15 × at {n:,}", large_peak <= 1.15 * small_peak),
    ]
    for goal, met in goals:
        print(f"  {'met' if met else 'NOT met'}: {goal}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - start:.0f} s)")
