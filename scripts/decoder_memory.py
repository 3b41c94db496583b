"""The peak memory of one Ray decoding task (``distributed.stages.decode_block``), which
``distributed/run.py`` reserves for each (a fixed part, plus the block's inputs).

    python scripts/decoder_memory.py [--megapixels 24] [--sizes 300,448]

Writes 32 JPEG and 4 PNG images of that many megapixels, starts a local Ray cluster and
decodes them in fresh single-use Ray tasks, one thread each as a Ray run gives them, and
prints each task's peak resident set (VmHWM) before and after decoding, in MiB. A JPEG is
decoded at a reduced scale; a PNG at full resolution, which sets the peak.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, megapixels: float) -> dict[str, list[str]]:
    width = int((megapixels * 1e6 * 1.5) ** 0.5)
    height = int(width / 1.5)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (height // 16, width // 16, 3), np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    files: dict[str, list[str]] = {"jpeg": [], "png": []}
    for kind, count in (("jpeg", 32), ("png", 4)):
        for i in range(count):
            path = folder / f"{i:02d}.{kind}"
            image.save(path, quality=92) if kind == "jpeg" else image.save(path)
            files[kind].append(str(path))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=24)
    parser.add_argument("--sizes", default="300,448")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1, max_calls=1, runtime_env={"env_vars": {"FURRYTAG_THREADS": "1"}})
    def decode(files: list[str], size: int) -> tuple[int, int]:
        from furrytag_cli.distributed.stages import decode_block
        from furrytag_cli.model.preprocess import PreprocessSpec

        def peak() -> int:
            with open("/proc/self/status") as status:
                line = next(line for line in status if line.startswith("VmHWM"))
            return int(line.split()[1]) // 1024

        before = peak()
        batch = {
            "path": np.array(files, dtype=object),
            "location": np.array([os.fsencode(f) for f in files], dtype=object),
            "size": np.zeros(len(files), np.int64),
            "mtime": np.zeros(len(files), np.float64),
        }
        decoded = decode_block(batch, spec=PreprocessSpec(size=size))
        assert not any(decoded["reason"]), decoded["reason"]
        return before, peak()

    with tempfile.TemporaryDirectory() as scratch:
        files = write_images(Path(scratch), args.megapixels)
        for size in (int(s) for s in args.sizes.split(",")):
            for kind, paths in files.items():
                before, after = ray.get(decode.remote(paths, size))
                print(
                    f"{len(paths):2d} {kind} of {args.megapixels:g} MP at {size} px: "
                    f"peak {before} MiB before decoding, {after} MiB after"
                )


if __name__ == "__main__":
    main()
