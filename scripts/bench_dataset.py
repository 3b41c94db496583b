"""Benchmark `furrytag dataset build`: rows/s and peak memory on synthetic exports.

Writes synthetic e621 exports (CSV only, the shipped categories) of N and 4N posts and
builds each in a fresh subprocess, so that each peak RSS is the build's own. The build
streams the export, so the peak should hardly grow from N to 4N.

    .venv/bin/python scripts/bench_dataset.py --posts 100000
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(export: Path, out: Path) -> None:
    """Build ``export`` into ``out``; print one JSON line of numbers."""
    from furrytag_cli.dataset.build import build_dataset

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = build_dataset([export], out)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": report.rows,
                "kept": report.kept,
                "duplicates": report.duplicates,
                "seconds": seconds,
                "rss_before_mib": before / 1024,
                "rss_peak_mib": peak / 1024,
                "export_mib": sum(p.stat().st_size for p in export.iterdir()) / 2**20,
            }
        )
    )


def bench(posts: int, work: Path) -> dict:
    from furrytag_cli.dataset.synth import write_synthetic

    root = work / f"synth-{posts}"
    shutil.rmtree(root, ignore_errors=True)  # a reused --work folder: start afresh
    started = time.perf_counter()
    write_synthetic(root, posts, seed=0, images=False)
    print(f"  wrote a {posts:,}-post export in {time.perf_counter() - started:.1f} s", flush=True)
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(root / "export"), str(root / "data")],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--posts", type=int, default=100_000, help="N: the smaller export (default 100,000)."
    )
    parser.add_argument(
        "--work", type=Path, help="Folder for the exports (default: a temporary one)."
    )
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="furrytag-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {}
        for posts in (args.posts, 4 * args.posts):
            results[posts] = r = bench(posts, work)
            print(
                f"build {r['rows']:>9,} rows ({r['export_mib']:.1f} MiB gzip): {r['seconds']:6.1f} s, "
                f"{r['rows'] / r['seconds']:>8,.0f} rows/s, kept {r['kept']:,} "
                f"({r['duplicates']:,} duplicate md5s); RSS {r['rss_before_mib']:.0f} MiB before, "
                f"{r['rss_peak_mib']:.0f} MiB peak",
                flush=True,
            )
        small, large = (results[p] for p in (args.posts, 4 * args.posts))
        print(
            f"peak RSS ratio 4N/N: {large['rss_peak_mib'] / small['rss_peak_mib']:.2f} "
            f"(rows ratio {large['rows'] / small['rows']:.0f})"
        )


if __name__ == "__main__":
    main()
