"""Benchmark `furrytag tag` on a CPU against the model-only limit and the original project's way.

    python scripts/bench_tag.py [--backbone efficientnet_v2_b3 --size 300] [--images 128]
    python scripts/bench_tag.py --backbone mobilenet_v3_large --size 224

Builds models with random weights (no download needed): a native bundle and a
legacy-format SavedModel (the original's layout: TF-Hub feature layer + Dense heads) of
the same backbone. Writes a mix of 640–2000 px JPEG and PNG images, then measures in
one run, in images/s:
  (a) keras forward-only: the Keras engine on pre-decoded, preprocessed batches
  (b) lite forward-only:  the LiteRT engine on the same batches
  (c) end to end:         the files through TagJob (discovery → decode → model → JSONL),
                          once per engine
  (d) the original way:   tf.io.read_file / decode_jpeg / resize of every image, stacked,
                          one model.predict on the legacy-format model (a subprocess)
  (e) the onnx engine:    the native bundle exported once to ONNX (furrytag export), forward
                          only on the same batches and end to end, with its largest score
                          difference to the keras engine
  (f) start-up, on the legacy-format model: one image in a whole `furrytag tag` process;
      cold-start wall times (first run, auto engine) beside keras-only, warm lite and lite
      converting first; in-process end to end on the CPU path (no TensorFlow) against
      1/(1/forward + 1/decode); keras end to end against keras forward; whole-process rate
      against the original's way (--only-startup runs this section alone)
plus the pipeline alone (decode + preprocess on every core, no model) and the end-to-end
ceiling it implies when decoding and the model take turns on the cores, and prints the
ratios against the goals: (c, lite) ≥ 1.5 × (a), (c, lite) ≥ 0.85 × (b), (c) ≥ 4 × (d).
Memory: peak RSS of `furrytag tag` (c) and of (d) at two image counts, each in a fresh
process, and of (c) over N and 10×N files with a small model.
Optional: score drift and speed of the quantized lite variants; `furrytag --help` time.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GOALS = (
    ("c_lite / a", 1.5),
    ("c_lite / b", 0.85),
    ("c_lite / d", 4.0),
    ("c_lite / d, with model load", 4.0),
)


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = (int(v) for v in rng.integers(640, 2001, 2))
        gradient = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        base = (gradient * rng.random(3) + rng.integers(0, 60, 3)).clip(0, 255)
        image = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w - 50)), int(rng.integers(0, h - 50))
            draw.ellipse(
                [x0, y0, x0 + int(rng.integers(20, w // 3)), y0 + int(rng.integers(20, h // 3))],
                fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
            )
        path = folder / (f"img{i:05d}.png" if i % 4 == 0 else f"img{i:05d}.jpg")
        image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def make_bundle(folder: Path, backbone: str, size: int) -> Path:
    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.categories import CategorySet
    from furrytag_cli.model.network import build_model
    from furrytag_cli.model.preprocess import PreprocessSpec

    categories = CategorySet.load()
    model = build_model(backbone, size, categories, weights=None)
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


def make_legacy_model(folder: Path, backbone: str, size: int) -> Path:
    """The original's format around a tf_keras backbone: a SavedModel in a TF-Hub
    ``feature_layer``, then ``<head>_hidden_layer`` Dense(128) → ``<head>_output``.

    The backbone takes the input as the original preprocessed it, without a rescaling of
    its own, as the original's TF-Hub backbones do. Rescaling normalised inputs again by
    1/255 would feed a random EfficientNet near-constant images, on which it is chaotic:
    its scores then move by up to 0.06 when the input changes by one float32 rounding
    step, and no conversion could reproduce them."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    from furrytag_cli.model.categories import HEADS, CategorySet
    from furrytag_cli.model.network import BACKBONES

    constructor = getattr(tf_keras.applications, BACKBONES[backbone].constructor)
    features = constructor(
        include_top=False,
        weights=None,
        input_shape=(size, size, 3),
        pooling="avg",
        include_preprocessing=False,
    )
    tf.saved_model.save(features, str(folder / "feature-src"))
    categories = CategorySet.load()
    image = tf_keras.Input((size, size, 3), name="img_input")
    shared = hub.KerasLayer(str(folder / "feature-src"), trainable=False, name="feature_layer")(
        image
    )
    widths = {h: len(categories.tags(h)) for h in HEADS} | {"rating": 1}
    outputs = [
        tf_keras.layers.Dense(width, activation="sigmoid", name=f"{head}_output")(
            tf_keras.layers.Dense(128, activation="relu", name=f"{head}_hidden_layer")(shared)
        )
        for head, width in widths.items()
    ]
    target = (
        folder / "efficientnet_v2_b3_300_2c"
    )  # a registry name: furrytag knows it is normalised
    tf_keras.Model(image, outputs).save(str(target))
    return target


# Shared CPUs are noisy: every in-process rate is the best of TRIES timed runs.
TRIES = 2


def forward_only(engine, batch, repeats: int) -> float:
    engine(batch)
    rates = []
    for _ in range(TRIES):
        start = time.perf_counter()
        for _ in range(repeats):
            engine(batch)
        rates.append(repeats * len(batch) / (time.perf_counter() - start))
    return max(rates)


def end_to_end(tagger, paths, out: Path) -> float:
    from furrytag_cli.tagging.job import OutputSpec, TagJob

    TagJob(
        tagger,
        paths[: tagger.batch_size],
        OutputSpec(output=out.with_suffix(".warm"), overwrite=True),
    ).run()
    rates = []
    for _ in range(TRIES):
        summary = TagJob(tagger, paths, OutputSpec(output=out, overwrite=True)).run()
        assert summary.tagged == len(paths), summary
        rates.append(summary.tagged / summary.seconds)
    return max(rates)


def decode_only(paths, spec, batch_size: int) -> float:
    """The tag pipeline (header check, read, decode, preprocess, batch) with no model."""
    from furrytag_cli.tagging.pipeline import inference_dataset

    rates = []
    for _ in range(TRIES):
        start = time.perf_counter()
        count = sum(
            len(indices)
            for indices, _ in inference_dataset(paths, spec, batch_size=batch_size, rejected={})
        )
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


# Peak memory of this process alone: VmHWM (ru_maxrss would include the parent's peak,
# which a forked child inherits on Linux).
PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

# The original project's tagging, restated: every image decoded and kept, one predict.
ORIGINAL = (
    PEAK_RSS
    + """
import sys, time
from furrytag_cli.core.tfruntime import tensorflow
tf = tensorflow()
import tf_keras
model_dir, size, batch_size, *paths = sys.argv[1:]
size, batch_size = int(size), int(batch_size)
start = time.perf_counter()
model = tf_keras.models.load_model(model_dir, compile=False)
loaded = time.perf_counter()
images = []
for path in paths:
    image = tf.image.decode_jpeg(tf.io.read_file(path), channels=3)
    image = tf.image.resize(image, [size, size]) / 255.0
    images.append((image - 0.5) / 0.225)
outputs = model.predict(tf.stack(images), batch_size=batch_size, verbose=0)
done = time.perf_counter()
print("RESULT", len(paths) / (done - loaded), len(paths) / (done - start), peak_rss_mb())
"""
)

# `furrytag tag` in a fresh process: images/s tagging, images/s with the model load, peak RSS.
TAG = (
    PEAK_RSS
    + """
import sys, time
from pathlib import Path
from furrytag_cli.tagging.job import OutputSpec, TagJob
from furrytag_cli.tagging.discovery import discover
from furrytag_cli.tagging.tagger import Tagger
bundle, engine, out, *inputs = sys.argv[1:]
found = discover(inputs)
start = time.perf_counter()
tagger = Tagger(bundle, engine=engine, notify=None)
loaded = time.perf_counter() - start
summary = TagJob(tagger, found.files, OutputSpec(output=Path(out), overwrite=True)).run()
assert summary.tagged == len(found.files), summary
n = summary.tagged
print("RESULT", n / summary.seconds, n / (loaded + summary.seconds), peak_rss_mb())
"""
)


def in_fresh_process(code: str, *args) -> tuple[float, float, float]:
    """Run ``code`` in a new interpreter; return its images/s tagging, images/s including
    the model load, and peak RSS in MB."""
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT")]
    if result.returncode or not lines:
        raise SystemExit(f"benchmark subprocess failed:\n{result.stderr[-3000:]}")
    _, rate, whole, rss = lines[-1].split()
    return float(rate), float(whole), float(rss)


def link_copies(sources: list[Path], folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = sources[i % len(sources)]
        os.symlink(source, folder / f"f{i:06d}{source.suffix}")
    return folder


def quantized_drift(bundle_path: Path, batch, repeats: int) -> dict:
    from furrytag_cli.engines.lite import LiteEngine
    from furrytag_cli.model.loading import load_bundle

    bundle = load_bundle(bundle_path)
    reference = LiteEngine(bundle)(batch)
    found = {}
    for mode in ("dynamic", "float16"):
        engine = LiteEngine(bundle, quantize=mode)
        scores = engine(batch)
        drift = max(float(np.abs(scores.heads[h] - reference.heads[h]).max()) for h in scores.heads)
        drift = max(drift, float(np.abs(scores.rating - reference.rating).max()))
        found[mode] = {
            "max_abs_score_drift": round(drift, 5),
            "forward_img_s": round(forward_only(engine, batch, repeats), 2),
            "file_mb": round(engine.model_path.stat().st_size / 2**20, 1),
        }
    return found


def onnx_engine(bundle: Path, work: Path, batch, paths, repeats: int, keras_engine) -> dict:
    """(e): export ``bundle`` to ONNX once, then the onnx engine's rates and its drift."""
    from furrytag_cli.export.folder import export_model
    from furrytag_cli.model.loading import load_bundle
    from furrytag_cli.tagging.tagger import Tagger

    folder = work / f"{bundle.name}-onnx"
    start = time.perf_counter()
    if not (folder / "model.onnx").is_file():
        export_model(load_bundle(bundle), folder, overwrite=True)
    export_s = time.perf_counter() - start
    tagger = Tagger(folder, batch_size=len(batch), engine="onnx", notify=None)
    want, got = keras_engine(batch), tagger.engine(batch)
    drift = max(
        [float(np.abs(got.heads[h] - want.heads[h]).max()) for h in want.heads]
        + [float(np.abs(got.rating - want.rating).max())]
    )
    return {
        "export_s": round(export_s, 1),
        "model_onnx_mb": round((folder / "model.onnx").stat().st_size / 1e6, 1),
        "b_onnx_forward_img_s": round(forward_only(tagger.engine, batch, repeats), 2),
        "c_onnx_end_to_end_img_s": round(end_to_end(tagger, paths, work / "onnx.jsonl"), 2),
        "max_abs_diff_vs_keras": drift,
    }


# --- start-up: a run without TensorFlow, the first run while converting ----------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cli_seconds(model: Path, inputs, out: Path, *extra: str) -> float:
    """Wall seconds of a whole ``furrytag tag`` process (interpreter start to exit)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "furrytag_cli", "tag", *map(str, inputs), "-m", str(model)]
        + ["-o", str(out), "--overwrite", "-q", *extra],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"furrytag tag failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def forget_conversion(model: Path) -> Path:
    """Remove ``model``'s LiteRT conversions (after any detached conversion has finished)."""
    from filelock import FileLock

    from furrytag_cli.engines.lite import LOCK, cache_path
    from furrytag_cli.model.loading import load_bundle

    folder = cache_path(load_bundle(model)).parent
    if folder.is_dir():
        with FileLock(folder / LOCK):  # waits for a conversion under way
            pass
        shutil.rmtree(folder)
    return folder


def wait_for_conversion(model: Path) -> None:
    from filelock import FileLock

    from furrytag_cli.engines.lite import LOCK, cache_path
    from furrytag_cli.model.loading import load_bundle

    target = cache_path(load_bundle(model))
    while not target.is_file():
        time.sleep(0.5)
    with FileLock(target.parent / LOCK):
        pass


def cold_start(model: Path, sources: list[Path], work: Path, counts: list[int]) -> dict:
    """Whole-process wall seconds of a first run (auto, as it plans a first run: keras,
    converting after a short run, before or alongside a long one), keras only, lite with
    the conversion cached, and lite converting first (the conversion in the foreground,
    measured once)."""
    found = {}
    forget_conversion(model)
    start = time.perf_counter()
    cli_seconds(model, sources[:1], work / "first.jsonl", "--engine", "lite")
    lite_first_one = time.perf_counter() - start
    warm_one = cli_seconds(model, sources[:1], work / "warm.jsonl", "--engine", "lite")
    conversion = lite_first_one - warm_one
    for count in counts:
        folder = work / f"cold-{count}"
        if not folder.is_dir():
            link_copies(sources, folder, count)
        forget_conversion(model)
        cold = cli_seconds(model, [folder], work / "cold.jsonl")
        wait_for_conversion(model)  # the detached conversion ends before the next timing
        keras_only = cli_seconds(model, [folder], work / "keras.jsonl", "--engine", "keras")
        warm_lite = cli_seconds(model, [folder], work / "lite.jsonl", "--engine", "lite")
        lite_converting = conversion + warm_lite
        better = min(keras_only, lite_converting)
        found[count] = {
            "cold_auto_s": round(cold, 1),
            "keras_only_s": round(keras_only, 1),
            "warm_lite_s": round(warm_lite, 1),
            "lite_converting_first_s": round(lite_converting, 1),
            "cold / better of keras-only and lite-converting-first": round(cold / better, 3),
            "cold / better of keras-only and warm-lite": round(
                cold / min(keras_only, warm_lite), 3
            ),
        }
    found["conversion_s"] = round(conversion, 1)
    return found


def cpu_path_rates(model: Path, paths: list[Path], work: Path, batch_size: int) -> dict:
    """In-process rates on the CPU path (no tf.data): forward only, decode only, end to end."""
    from furrytag_cli.tagging.decode import model_input
    from furrytag_cli.tagging.stream import image_batches
    from furrytag_cli.tagging.tagger import Tagger

    lite = Tagger(model, batch_size=batch_size, engine="lite", device="cpu", notify=None)
    keras_tagger = Tagger(model, batch_size=batch_size, engine="keras", device="cpu")
    spec = lite.bundle.preprocess
    batch = np.stack([model_input(p, spec) for p in paths[:batch_size]])
    repeats = max(2, len(paths) // batch_size)
    decode = []
    for _ in range(TRIES):
        start = time.perf_counter()
        count = sum(len(b.indices) for b in image_batches(paths, spec, batch_size=batch_size))
        decode.append(count / (time.perf_counter() - start))
    rates = {
        "lite_forward": forward_only(lite.engine, batch, repeats),
        "keras_forward": forward_only(keras_tagger.engine, batch, repeats),
        "decode_only": max(decode),
        "lite_end_to_end": end_to_end(lite, paths, work / "cpu-lite.jsonl"),
        "keras_end_to_end": end_to_end(keras_tagger, paths, work / "cpu-keras.jsonl"),
    }
    limit = 1 / (1 / rates["lite_forward"] + 1 / rates["decode_only"])
    return {
        "img_s": {k: round(v, 2) for k, v in rates.items()},
        "lite_limit_img_s": round(limit, 2),
        "lite end to end / limit": round(rates["lite_end_to_end"] / limit, 3),
        "keras end to end / keras forward": round(
            rates["keras_end_to_end"] / rates["keras_forward"], 3
        ),
    }


def whole_process_vs_original(model: Path, paths: list[Path], work: Path, size: int) -> dict:
    """Wall seconds of whole processes on the same images: ``furrytag tag`` (converted
    model; and the model exported to ONNX, on the onnx engine) against the original's
    way (import, load, decode all, one predict)."""
    from furrytag_cli.export.folder import export_model
    from furrytag_cli.model.loading import load_bundle

    ours = cli_seconds(model, paths, work / "whole.jsonl")
    exported = work / f"{model.parent.name}-onnx"
    if not (exported / "model.onnx").is_file():
        export_model(load_bundle(model), exported, overwrite=True)
    onnx = cli_seconds(exported, paths, work / "whole-onnx.jsonl")
    start = time.perf_counter()
    in_fresh_process(ORIGINAL, model, size, 32, *map(str, paths))
    original = time.perf_counter() - start
    return {
        "images": len(paths),
        "furrytag_img_s": round(len(paths) / ours, 2),
        "furrytag_onnx_export_img_s": round(len(paths) / onnx, 2),
        "original_img_s": round(len(paths) / original, 2),
        "furrytag / original": round(original / ours, 3),
        "furrytag onnx export / original": round(original / onnx, 3),
    }


def startup(args, work: Path, legacy: Path, paths: list[Path]) -> dict:
    """The start-up section, on the legacy-format model (the original's released format)."""
    counts = [int(c) for c in args.cold_counts.split(",")]
    cold = cold_start(legacy, paths, work, counts)  # leaves the model converted
    ones = [cli_seconds(legacy, paths[1:2], work / "one.jsonl") for _ in range(3)]
    whole = work / f"whole-{args.whole_images}"
    if not whole.is_dir():
        link_copies(paths, whole, args.whole_images)
    found = {
        "cpu_model": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "load_average_at_start": [round(v, 1) for v in os.getloadavg()],
        "model": f"legacy {args.backbone}@{args.size}, random weights",
        "one_image_whole_process_s": round(statistics.median(ones), 2),
        "cold_start_wall_s": cold,
        "cpu_path_in_process": cpu_path_rates(legacy, paths, work, args.batch_size),
        "whole_process_vs_original": whole_process_vs_original(
            legacy, sorted(whole.iterdir()), work, args.size
        ),
    }
    found["load_average_at_end"] = [round(v, 1) for v in os.getloadavg()]
    rates = found["cpu_path_in_process"]
    checks = {
        "one image <= 1.5 s": found["one_image_whole_process_s"] <= 1.5,
        "cold <= 1.1 x better engine at every size": all(
            v["cold / better of keras-only and lite-converting-first"] <= 1.1
            for k, v in cold.items()
            if k != "conversion_s"
        ),
        "lite end to end >= 0.9 x limit": rates["lite end to end / limit"] >= 0.9,
        "keras end to end >= 0.8 x keras forward": rates["keras end to end / keras forward"] >= 0.8,
        "whole process >= 3 x original": found["whole_process_vs_original"]["furrytag / original"]
        >= 3,
    }
    found["goals"] = {k: "met" if v else "MISSED" for k, v in checks.items()}
    return found


def help_seconds(times: int = 5) -> float:
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "furrytag_cli", "--help"], capture_output=True, check=True
        )
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="efficientnet_v2_b3", help="e.g. mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--rss-counts",
        default=None,
        help="two image counts for the RSS of (c) vs (d); default: images/2,images",
    )
    parser.add_argument("--memory-backbone", default="mobilenet_v3_small")
    parser.add_argument("--memory-size", type=int, default=224)
    parser.add_argument(
        "--memory-files", type=int, default=500, help="N; (c) is also measured at 10×N"
    )
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip the N vs 10×N files measurement"
    )
    parser.add_argument(
        "--quantize-drift", action="store_true", help="also measure the quantized lite variants"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="reuse this folder (models, images, conversions)"
    )
    parser.add_argument(
        "--only-startup",
        action="store_true",
        help="only the start-up section (one image, cold starts, the CPU path, whole process)",
    )
    parser.add_argument(
        "--cold-counts", default="8,128,1000,3000", help="image counts of cold starts"
    )
    parser.add_argument("--whole-images", type=int, default=256)
    args = parser.parse_args()

    from furrytag_cli.core.tfruntime import tensorflow
    from furrytag_cli.engines.lite import runtime
    from furrytag_cli.model.loading import load_bundle
    from furrytag_cli.model.preprocess import preprocess_image
    from furrytag_cli.tagging.decode import decode_with_pillow
    from furrytag_cli.tagging.tagger import Tagger

    tf = tensorflow()
    work = args.work or Path(tempfile.mkdtemp(prefix="furrytag-bench-"))
    tag = f"{args.backbone}-{args.size}"
    print(f"work folder: {work}", flush=True)
    images = work / f"images-{args.images}"
    paths = sorted(images.iterdir()) if images.is_dir() else write_images(images, args.images)
    bundle = work / f"bundle-{tag}"
    if not bundle.is_dir():
        make_bundle(bundle, args.backbone, args.size)
    legacy = work / f"legacy-{tag}" / "efficientnet_v2_b3_300_2c"
    if not legacy.is_dir():
        make_legacy_model(legacy.parent, args.backbone, args.size)
    if args.only_startup:
        print(json.dumps({"startup": startup(args, work, legacy, paths)}, indent=2))
        return

    start = time.perf_counter()
    lite_tagger = Tagger(bundle, batch_size=args.batch_size, engine="lite", notify=None)
    convert_s = time.perf_counter() - start
    keras_tagger = Tagger(bundle, batch_size=args.batch_size, engine="keras")
    spec = load_bundle(bundle).preprocess
    batch = tf.stack(
        [preprocess_image(decode_with_pillow(p, spec), spec) for p in paths[: args.batch_size]]
    )
    repeats = max(2, args.images // args.batch_size)
    rates = {
        "a_keras_forward": forward_only(keras_tagger.engine, batch, repeats),
        "b_lite_forward": forward_only(lite_tagger.engine, batch, repeats),
        "c_keras_end_to_end": end_to_end(keras_tagger, paths, work / "keras.jsonl"),
        "c_lite_end_to_end": end_to_end(lite_tagger, paths, work / "lite.jsonl"),
    }
    decode = decode_only(paths, spec, args.batch_size)
    # On a CPU decoding and the model take turns on every core: their times per image add up.
    ceiling = {
        name: 1 / (1 / rates[key] + 1 / decode)
        for name, key in (("keras", "a_keras_forward"), ("lite", "b_lite_forward"))
    }
    counts = [int(c) for c in (args.rss_counts or f"{args.images // 2},{args.images}").split(",")]
    memory = {}
    for count in counts:
        subset = [str(p) for p in paths[:count]]
        d_rate, d_whole, d_rss = in_fresh_process(
            ORIGINAL, legacy, args.size, args.batch_size, *subset
        )
        c_rate, c_whole, c_rss = in_fresh_process(TAG, bundle, "lite", work / "rss.jsonl", *subset)
        memory[count] = {
            "c_lite_peak_rss_mb": round(c_rss),
            "d_original_peak_rss_mb": round(d_rss),
            "c_lite_img_s": round(c_rate, 2),
            "d_original_img_s": round(d_rate, 2),
            "with_model_load_img_s": {"c_lite": round(c_whole, 2), "d_original": round(d_whole, 2)},
        }
    rates["d_original"] = memory[max(counts)]["d_original_img_s"]
    whole = memory[max(counts)]["with_model_load_img_s"]
    a, b, d = rates["a_keras_forward"], rates["b_lite_forward"], rates["d_original"]
    c_lite, c_keras = rates["c_lite_end_to_end"], rates["c_keras_end_to_end"]
    ratios = {
        "c_lite / a": c_lite / a,
        "c_lite / b": c_lite / b,
        "c_lite / d": c_lite / d,
        "c_keras / d": c_keras / d,
        "b / a": b / a,
        "c_keras / a": c_keras / a,
        "c_lite / d, with model load": whole["c_lite"] / whole["d_original"],
    }
    results = {
        "model": f"{args.backbone}@{args.size}",
        "images": args.images,
        "batch_size": args.batch_size,
        "cpu_threads": os.cpu_count(),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "runtime": runtime(),
        "first_conversion_s": round(convert_s, 1),
        "img_s": {k: round(v, 2) for k, v in rates.items()},
        "decode_only_img_s": round(decode, 1),
        "end_to_end_ceiling_img_s": {k: round(v, 2) for k, v in ceiling.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "goals": {f"{k} >= {g}": "met" if ratios[k] >= g else "MISSED" for k, g in GOALS},
        "peak_rss_by_image_count": memory,
    }
    results["onnx_engine"] = onnx_engine(bundle, work, batch, paths, repeats, keras_tagger.engine)
    results["onnx_engine"]["b_onnx / b_lite"] = round(
        results["onnx_engine"]["b_onnx_forward_img_s"] / rates["b_lite_forward"], 3
    )
    if args.quantize_drift:
        results["quantized_lite"] = quantized_drift(bundle, batch, repeats)
    if not args.skip_memory:
        small = work / f"bundle-{args.memory_backbone}-{args.memory_size}"
        if not small.is_dir():
            make_bundle(small, args.memory_backbone, args.memory_size)
        n = args.memory_files
        few, many = work / f"few-{n}", work / f"many-{10 * n}"
        if not few.is_dir():
            link_copies(paths, few, n)
            link_copies(paths, many, 10 * n)
        in_fresh_process(
            TAG, small, "lite", work / "warm.jsonl", *map(str, paths[:2])
        )  # converts once
        rate_few, _, rss_few = in_fresh_process(TAG, small, "lite", work / "few.jsonl", few)
        rate_many, _, rss_many = in_fresh_process(TAG, small, "lite", work / "many.jsonl", many)
        results["flat_memory"] = {
            "model": f"{args.memory_backbone}@{args.memory_size}",
            "engine": "lite",
            f"peak_rss_mb_{n}_files": round(rss_few),
            f"peak_rss_mb_{10 * n}_files": round(rss_many),
            "ratio_rss_many_vs_few": round(rss_many / rss_few, 3),
            "img_s": [round(rate_few, 1), round(rate_many, 1)],
        }
    results["help_median_s"] = round(help_seconds(), 3)
    results["startup"] = startup(args, work, legacy, paths)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
