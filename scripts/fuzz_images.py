"""Fuzz ``furrytag tag`` with mutated image files and check that nothing is lost.

Writes COUNT mutated files (bit flips, truncations, header edits of real JPEG, PNG, GIF,
WebP and BMP files, absurd dimensions written into headers, random bytes under image
extensions) plus a set of good images into one folder, then runs ``furrytag tag`` over
it in a subprocess (JSONL out, failure report beside it) with a tiny native bundle, and
runs it again over the good images alone. Checks:

- the process finishes (exit 0, 1, or 3 when some files failed; no traceback, no signal);
- every good image is tagged, with the same scores as the clean run;
- every file is either tagged or reported, exactly once (outputs + failures = inputs);
- peak RSS of the tagging process stays under --max-rss-mb.

Prints a summary and exits 1 when any check fails.

    python scripts/fuzz_images.py --count 10000 --workdir /tmp/fuzz
"""

import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}
MUTATIONS = ("bitflip", "truncate", "header", "dims", "random")
GOOD_PER_FORMAT = 8
TOLERANCE = 1e-5


def encode(fmt: str, pixels: np.ndarray) -> bytes:
    """``pixels`` as a ``fmt`` file (extension) in memory."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "gif":
        image.save(buffer, "GIF", save_all=True, append_images=[Image.fromarray(pixels[::-1])])
    else:
        image.save(buffer, FORMATS[fmt])
    return buffer.getvalue()


def seed_files(rng: np.random.Generator, count: int) -> list[tuple[str, bytes]]:
    """``count`` real image files per format, of random small sizes."""
    seeds = []
    for fmt in FORMATS:
        for _ in range(count):
            h, w = rng.integers(8, 80, 2)
            seeds.append((fmt, encode(fmt, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))))
    return seeds


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def set_dimensions(fmt: str, data: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    """``data`` with the width and height in its header replaced."""
    out = bytearray(data)
    if fmt == "png":
        out[16:24] = struct.pack(">II", width, height)
        if fix_crc:
            out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif fmt == "jpg":
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = out.find(marker)
            if at > 0:
                out[at + 5 : at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
                break
    elif fmt == "gif":
        out[6:10] = struct.pack("<HH", min(width, 65535), min(height, 65535))
        at = out.find(b"\x2c", 13)  # the first image descriptor
        if at > 0:
            out[at + 5 : at + 9] = struct.pack("<HH", min(width, 65535), min(height, 65535))
    elif fmt == "bmp":
        out[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif fmt == "webp":
        at = out.find(b"\x9d\x01\x2a")  # lossy key frame start code
        if at > 0:
            out[at + 3 : at + 7] = struct.pack("<HH", min(width, 16383), min(height, 16383))
    return bytes(out)


def mutate(rng: np.random.Generator, kind: str, fmt: str, data: bytes) -> bytes:
    """One mutated copy of the ``fmt`` file ``data``."""
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(rng.integers(1, 24)):
            bit = rng.integers(0, len(out) * 8)
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind == "truncate":
        return data[: rng.integers(0, len(data))]
    if kind == "header":
        out = bytearray(data)
        for _ in range(rng.integers(1, 6)):
            out[rng.integers(0, min(64, len(out)))] = rng.integers(0, 256)
        return bytes(out)
    if kind == "dims":
        side = [65535, 16383, 3000, 0][rng.integers(0, 4)]  # far over, over, under the limit, zero
        return set_dimensions(fmt, data, side, side or 1, bool(rng.integers(0, 2)))
    return rng.bytes(int(rng.integers(0, 4096)))


def write_files(
    folder: Path, count: int, seed: int, big: int
) -> tuple[list[Path], list[Path], Counter]:
    """Write the good images, ``count`` mutated files and ``big`` files whose headers claim
    9000×9000 (just under the pixel limit, the worst case for memory); return (good, bad, kinds)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good = []
    for i, (fmt, data) in enumerate(seed_files(rng, GOOD_PER_FORMAT)):
        good.append(folder / f"good-{i:03d}.{fmt}")
        good[-1].write_bytes(data)
    seeds = seed_files(rng, 6)
    bad, kinds = [], Counter()
    for i in range(count):
        kind = MUTATIONS[i % len(MUTATIONS)]
        fmt, data = seeds[rng.integers(0, len(seeds))]
        ext = list(FORMATS)[rng.integers(0, len(FORMATS))] if kind == "random" else fmt
        bad.append(folder / f"fuzz-{i:05d}-{kind}.{ext}")
        bad[-1].write_bytes(mutate(rng, kind, fmt, data))
        kinds[kind] += 1
    for i in range(big):
        fmt, data = seeds[i % len(seeds)]
        bad.append(folder / f"fuzz-big-{i:03d}.{fmt}")
        bad[-1].write_bytes(set_dimensions(fmt, data, 9000, 9000, fix_crc=True))
        kinds["big"] += 1
    return good, bad, kinds


def tag(folder: Path, bundle: Path, out: Path, batch_size: int) -> dict:
    """Run ``furrytag tag`` over ``folder``; return its exit status, stderr, peak RSS, records."""
    report = out.with_name(out.name + ".failures.tsv")
    command = [
        sys.executable,
        "-m",
        "furrytag_cli",
        "tag",
        str(folder),
        "-m",
        str(bundle),
        "-o",
        str(out),
        "--failures",
        str(report),
        "--all-scores",
        "--overwrite",
        "--batch-size",
        str(batch_size),
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.setdefault("FURRYTAG_HOME", str(out.parent / "home"))
    started = time.perf_counter()
    with open(out.with_suffix(".stderr"), "w+") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    failures = []
    if report.exists():
        failures = [line.split("\t", 1) for line in report.read_text().splitlines()[1:]]
    return {
        "code": proc.returncode,
        "stderr": stderr,
        "rss_mb": usage.ru_maxrss / 1024,
        "seconds": time.perf_counter() - started,
        "records": records,
        "failures": failures,
    }


def max_score_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two records' scores (inf if heads differ)."""
    worst = abs(a["rating_score"] - b["rating_score"])
    if a["scores"].keys() != b["scores"].keys():
        return float("inf")
    for head, scores in a["scores"].items():
        other = b["scores"][head]
        if scores.keys() != other.keys():
            return float("inf")
        worst = max([worst, *(abs(s - other[t]) for t, s in scores.items())])
    return worst


def check(good: list[Path], bad: list[Path], fuzzed: dict, clean: dict, max_rss_mb: float) -> dict:
    """Compare the fuzzed run with the clean one; return the numbers and the problems."""
    problems = []
    if fuzzed["code"] not in (0, 1, 3) or "Traceback" in fuzzed["stderr"]:
        problems.append(
            f"the fuzzed run crashed (exit {fuzzed['code']}):\n{fuzzed['stderr'][-3000:]}"
        )
    if clean["code"] != 0:
        problems.append(f"the clean run failed (exit {clean['code']}):\n{clean['stderr'][-3000:]}")
    tagged = Counter(r["path"] for r in fuzzed["records"])
    reported = Counter(path for path, _ in fuzzed["failures"])
    inputs = {str(p) for p in good + bad}
    twice = [p for p, n in (tagged + reported).items() if n > 1]
    dropped = sorted(inputs - set(tagged) - set(reported))
    strangers = sorted((set(tagged) | set(reported)) - inputs)
    if twice:
        problems.append(f"{len(twice)} files appear twice, e.g. {twice[:3]}")
    if dropped:
        problems.append(f"{len(dropped)} files silently dropped, e.g. {dropped[:3]}")
    if strangers:
        problems.append(f"{len(strangers)} outputs for files never given, e.g. {strangers[:3]}")
    reference = {Path(r["path"]).name: r for r in clean["records"]}
    by_path = {r["path"]: r for r in fuzzed["records"]}
    worst = 0.0
    for path in good:
        record, expected = by_path.get(str(path)), reference.get(path.name)
        if record is None or expected is None:
            problems.append(
                f"good image {path.name} not tagged in {'both runs' if expected else 'the clean run'}"
            )
            continue
        worst = max(worst, max_score_difference(record, expected))
    if worst > TOLERANCE:
        problems.append(
            f"good images scored differently from the clean run (max |diff| {worst:.2e})"
        )
    if fuzzed["rss_mb"] > max_rss_mb:
        problems.append(f"peak RSS {fuzzed['rss_mb']:.0f} MB is over the {max_rss_mb:.0f} MB bound")
    reasons = Counter(reason.split(":")[0].split(" (")[0] for _, reason in fuzzed["failures"])
    return {
        "problems": problems,
        "dropped": len(dropped),
        "twice": len(twice),
        "worst": worst,
        "bad_tagged": sum(1 for p in bad if str(p) in tagged),
        "reasons": reasons,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="mutated files to write")
    parser.add_argument("--big", type=int, default=10, help="files claiming 9000×9000 pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, help="where to write (default: a temp folder, removed)"
    )
    parser.add_argument("--bundle", type=Path, help="a native bundle (default: build a tiny one)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-rss-mb", type=float, default=4096)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="furrytag-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        bundle = args.bundle
        if bundle is None:
            from tests.modelfactory import make_native_bundle

            bundle = workdir / "tiny-bundle"
            if not (bundle / "model.keras").is_file():
                make_native_bundle(bundle)
        shutil.rmtree(workdir / "files", ignore_errors=True)
        shutil.rmtree(workdir / "clean", ignore_errors=True)
        good, bad, kinds = write_files(workdir / "files", args.count, args.seed, args.big)
        (workdir / "clean").mkdir()
        for path in good:
            shutil.copy2(path, workdir / "clean" / path.name)
        fuzzed = tag(workdir / "files", bundle, workdir / "fuzzed.jsonl", args.batch_size)
        clean = tag(workdir / "clean", bundle, workdir / "clean.jsonl", args.batch_size)
        result = check(good, bad, fuzzed, clean, args.max_rss_mb)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    crashed = int(fuzzed["code"] not in (0, 1, 3) or "Traceback" in fuzzed["stderr"])
    print(
        f"files fuzzed      {len(bad):,} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"
        f" + {len(good)} good images"
    )
    print(
        f"tagged            {len(fuzzed['records']):,} ({result['bad_tagged']:,} mutated files still decoded)"
    )
    print(f"reported          {len(fuzzed['failures']):,}")
    for reason, n in result["reasons"].most_common(8):
        print(f"  {n:6,}  {reason}")
    print(f"crashes           {crashed} (exit {fuzzed['code']})")
    print(f"silent drops      {result['dropped']}")
    print(f"duplicates        {result['twice']}")
    print(f"good images       {len(good)}, max |score diff| vs clean run {result['worst']:.1e}")
    print(
        f"peak RSS          {fuzzed['rss_mb']:.0f} MB (clean run over {len(good)} images: "
        f"{clean['rss_mb']:.0f} MB)"
    )
    print(
        f"time              {fuzzed['seconds']:.1f} s "
        f"({(len(good) + len(bad)) / fuzzed['seconds']:.0f} files/s, with start-up)"
    )
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print("OK" if not result["problems"] else "FAILED")
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
