"""Benchmark `furrytag tag --ray` on a local Ray cluster against `furrytag tag`, on this machine.

    python scripts/bench_ray.py [--images 500] [--backbone efficientnet_v2_b3 --size 300]

Builds a native bundle with random weights (no download) and writes a mix of 640–2000 px
JPEG and PNG images (as scripts/bench_tag.py does), then tags the same images twice, each
in a fresh process: `furrytag tag DIR -o FILE.jsonl --all-scores` and `furrytag tag DIR
--ray -o FOLDER` (a Ray cluster started on this machine, one model worker). Prints, per
run, the wall time of the whole command, the tagging time each command reports (Ray's
includes starting its workers), the images/s of both, the ratio Ray / tag (goal ≥ 0.8:
Ray's overhead is bounded on one node), and the peak memory of each command's process
tree (the sum of the proportional set sizes of the command and every process it started:
for Ray, its raylet, object store and workers), sampled every 0.2 s.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_tag import make_bundle, write_images

GOAL = 0.8


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def tree_pss_mb(root: int) -> float:
    """The summed proportional set size of ``root`` and all its descendants, in MB."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
        total += int(match.group(1)) if match else 0
    return total / 1024


def measure(command: list[str]) -> tuple[float, float, str, list[tuple[float, str]]]:
    """Run ``command``; return its wall seconds, peak tree PSS (MB), stderr, and each
    stderr line with the second it arrived."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_pss_mb(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [(time.perf_counter() - start, line) for line in process.stderr]
    process.wait()
    wall = time.perf_counter() - start
    sampler.join()
    stderr = "".join(line for _, line in lines)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr}")
    return wall, peak[0], stderr, lines


def steady_rate(lines: list[tuple[float, str]]) -> float:
    """Images/s between the first and the last shard of a Ray run (its workers warm)."""
    done = [
        (t, int(m.group(1)))
        for t, line in lines
        if (m := re.match(r"furrytag: (\d+) of \d+ images", line))
    ]
    (t0, n0), (t1, n1) = done[0], done[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def reported_seconds(stderr: str) -> float:
    match = re.search(r"files in ([\d.]+) s", stderr)
    if match is None:
        sys.exit(f"no summary line in:\n{stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--backbone", default="efficientnet_v2_b3")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workdir", type=Path, help="reuse images and model from here")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="furrytag-bench-ray-"))
    images, bundle = work / "images", work / "bundle"
    if not bundle.exists():
        make_bundle(bundle, args.backbone, args.size)
    if len(list(images.glob("img*"))) != args.images:
        write_images(images, args.images)
    furrytag = [sys.executable, "-m", "furrytag_cli", "tag", str(images), "--model", str(bundle)]
    batch = ["--batch-size", str(args.batch_size)]
    # The lite conversion is cached beside the bundle: make it before either timed run.
    measure(
        [*furrytag, *batch, "-o", str(work / "warm.jsonl"), "--overwrite", "--glob", "img0000?.*"]
    )

    single_wall, single_peak, single_err, _ = measure(
        [*furrytag, *batch, "--all-scores", "-o", str(work / "one.jsonl"), "--overwrite"]
    )
    ray_wall, ray_peak, ray_err, ray_lines = measure(
        [*furrytag, *batch, "--ray", "-o", str(work / "shards"), "--overwrite"]
        + ["--shard-rows", str(args.batch_size)]
    )
    single_s, ray_s = reported_seconds(single_err), reported_seconds(ray_err)
    n = args.images
    single_rate, ray_rate, ray_steady = n / single_s, n / ray_s, steady_rate(ray_lines)
    print(f"{n} images, {args.backbone}@{args.size}, batch {args.batch_size}, on {cpu_model()}")
    print(f"{'':20} {'wall s':>8} {'img/s wall':>11} {'tagging s':>10} {'img/s':>8} {'peak MB':>9}")
    for name, wall, seconds, peak in (
        ("furrytag tag", single_wall, single_s, single_peak),
        ("furrytag tag --ray", ray_wall, ray_s, ray_peak),
    ):
        print(
            f"{name:20} {wall:8.1f} {n / wall:11.2f} {seconds:10.1f} {n / seconds:8.2f} {peak:9.0f}"
        )
    print(
        "tagging s: tag's own count (model loaded, decoding and model); Ray's also starts "
        "its workers (cluster start is in wall s only)"
    )
    print(f"Ray once its workers are up (first to last shard): {ray_steady:.2f} img/s")
    ratios = {
        "steady": ray_steady / single_rate,
        "tagging": ray_rate / single_rate,
        "wall": single_wall / ray_wall,
    }
    verdict = "meets" if ratios["steady"] >= GOAL else "misses"
    print(
        f"ratio ray / tag: {ratios['steady']:.2f} steady ({verdict} the goal {GOAL}), "
        f"{ratios['tagging']:.2f} tagging, {ratios['wall']:.2f} wall"
    )
    print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
