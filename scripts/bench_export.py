"""Export a model every way `furrytag export` can, and check the exports.

    python scripts/bench_export.py [--backbone efficientnet_v2_b3 --size 300] [--images 64]

Builds a native bundle and a legacy-format SavedModel of the backbone with random
weights (as scripts/bench_tag.py does), then, in one run:
  - export time and file sizes: ONNX (furrytag layout), ONNX (wd14 layout, 448 px),
    LiteRT and Keras for the native bundle; ONNX in both layouts for the legacy model;
  - parity: ONNX Runtime on each furrytag-layout export vs the Keras engine on the same
    preprocessed batch (max abs difference over every head, the rating and the
    embedding), and the wd14 export on square 448 px images vs furrytag's own
    pipeline on the same files (max abs difference of the tag scores);
  - the keras, lite and onnx engines side by side: forward only on the same batch,
    and end to end over image files (discovery → decode → model → JSONL).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_tag import (
    end_to_end,
    forward_only,
    make_bundle,
    make_legacy_model,
    write_images,
)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def exports(source, work: Path, runs) -> dict:
    from furrytag_cli.export.folder import export_model

    out = {}
    for label, options in runs:
        folder = work / f"{source.name}-{label}"
        if (folder / "README.md").is_file():  # made by an earlier run in this --work folder
            sizes, seconds = {f.name: f.stat().st_size for f in folder.iterdir()}, None
        else:
            done = export_model(source, folder, **options)
            sizes, seconds = done.sizes, round(done.seconds, 1)
        out[label] = {
            "seconds": seconds,
            "mb": {k: round(v / 1e6, 2) for k, v in sizes.items() if k != "README.md"},
            "folder": folder,
        }
    return out


def parity(source, folder: Path, batch) -> float:
    from furrytag_cli.engines.choose import load_engine
    from furrytag_cli.engines.keras import KerasEngine
    from furrytag_cli.model.loading import load_bundle

    want = KerasEngine(source, embeddings=True)(batch)
    got = load_engine(load_bundle(folder), engine="onnx", embeddings=True)(batch)
    diffs = [np.abs(got.heads[h] - want.heads[h]).max() for h in want.heads]
    diffs += [np.abs(got.rating - want.rating).max(), np.abs(got.embedding - want.embedding).max()]
    return float(max(diffs))


def wd14_parity(source, folder: Path, squares: list[Path]) -> float:
    """wd14 export (BGR 0-255 at 448) vs furrytag's pipeline, on square images."""
    import onnxruntime
    from PIL import Image

    from furrytag_cli.tagging.tagger import Tagger

    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.stack(
        [np.array(Image.open(p).convert("RGB")).astype(np.float32)[:, :, ::-1] for p in squares]
    )
    got = session.run(None, {session.get_inputs()[0].name: x})[0][:, 4:]
    scores = Tagger(source, engine="keras", notify=None).score_batches(squares)
    rows = [s for batch in scores for s in batch]
    want = np.stack(
        [
            np.concatenate([s.scores.heads[h][s.row] for h in source.categories.head_names])
            for s in rows
        ]
    )
    return float(np.abs(got - want).max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="efficientnet_v2_b3")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None, help="reuse this folder")
    args = parser.parse_args()

    from PIL import Image

    from furrytag_cli.core.tfruntime import tensorflow
    from furrytag_cli.model.loading import load_bundle
    from furrytag_cli.model.preprocess import preprocess_image
    from furrytag_cli.tagging.decode import decode_with_pillow
    from furrytag_cli.tagging.tagger import Tagger

    tf = tensorflow()
    work = args.work or Path(tempfile.mkdtemp(prefix="furrytag-bench-export-"))
    print(f"work folder: {work}", flush=True)
    tag = f"{args.backbone}-{args.size}"
    native_path = work / f"bundle-{tag}"
    if not native_path.is_dir():
        make_bundle(native_path, args.backbone, args.size)
    legacy_path = work / f"legacy-{tag}" / "efficientnet_v2_b3_300_2c"
    if not legacy_path.is_dir():
        make_legacy_model(legacy_path.parent, args.backbone, args.size)
    native, legacy = load_bundle(native_path), load_bundle(legacy_path)

    results = {
        "model": f"{args.backbone}@{args.size} (random weights)",
        "cpu": cpu_model(),
        "cpu_threads": len(os.sched_getaffinity(0)),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "source_mb": {
            "native model.keras": round((native_path / "model.keras").stat().st_size / 1e6, 2),
            "legacy SavedModel": round(
                sum(f.stat().st_size for f in legacy_path.rglob("*") if f.is_file()) / 1e6, 2
            ),
        },
    }
    native_runs = [
        ("onnx", {"fmt": "onnx"}),
        ("wd14", {"fmt": "onnx", "layout": "wd14"}),
        ("tflite", {"fmt": "tflite"}),
        ("keras", {"fmt": "keras"}),
    ]
    legacy_runs = [("onnx", {"fmt": "onnx"}), ("wd14", {"fmt": "onnx", "layout": "wd14"})]
    made = {
        "native": exports(native, work, native_runs),
        "legacy": exports(legacy, work, legacy_runs),
    }
    results["exports"] = {
        kind: {label: {k: v for k, v in e.items() if k != "folder"} for label, e in runs.items()}
        for kind, runs in made.items()
    }

    paths = sorted((work / "images").iterdir()) if (work / "images").is_dir() else None
    paths = paths or write_images(work / "images", args.images)
    squares = []
    for i, path in enumerate(paths[:8]):
        square = work / "squares" / f"{i}.png"
        square.parent.mkdir(exist_ok=True)
        Image.open(path).convert("RGB").resize((448, 448)).save(square)
        squares.append(square)
    results["parity_max_abs_diff"] = {}
    for kind, source in (("native", native), ("legacy", legacy)):
        spec = source.preprocess
        batch = tf.stack(
            [preprocess_image(decode_with_pillow(p, spec), spec) for p in paths[: args.batch_size]]
        ).numpy()
        results["parity_max_abs_diff"][kind] = {
            "onnx_runtime_vs_keras": parity(source, made[kind]["onnx"]["folder"], batch),
            "wd14_vs_furrytag_on_square_images": wd14_parity(
                source, made[kind]["wd14"]["folder"], squares
            ),
        }

    spec = native.preprocess
    batch = tf.stack(
        [preprocess_image(decode_with_pillow(p, spec), spec) for p in paths[: args.batch_size]]
    ).numpy()
    repeats = max(2, args.images // args.batch_size)
    engines = {}
    for name, model in (
        ("keras", native_path),
        ("lite", native_path),
        ("onnx", made["native"]["onnx"]["folder"]),
    ):
        start = time.perf_counter()
        tagger = Tagger(model, batch_size=args.batch_size, engine=name, notify=None)
        load_s = time.perf_counter() - start
        engines[name] = {
            "load_s": round(load_s, 1),
            "forward_img_s": round(forward_only(tagger.engine, batch, repeats), 2),
            "end_to_end_img_s": round(end_to_end(tagger, paths, work / f"{name}.jsonl"), 2),
        }
    results["engines"] = engines
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
