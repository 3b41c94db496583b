"""The GPU check behind scripts/gpu_check.sh; prints one JSON object.

1. tag: EfficientNetV2-B3@300 with random weights as a native bundle, saved once in
   float32 and once built under the mixed_float16 policy (the float16 compute a model
   trained with mixed precision keeps); each through the keras engine on the GPU at
   batch 64 and 128: ``furrytag tag``'s own path (tf.data decoding ahead of the model,
   TagJob writing JSONL) and forward only on preprocessed batches.
2. train: the efficientnet_v2_b3_300 config (weights none: no download) on synthetic
   shards, steps/s after warm-up, with the config's own mixed precision and XLA choice.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_tag import end_to_end, forward_only, write_images
from bench_train import StepTimer, build_synthetic, time_fit

BACKBONE, SIZE, CONFIG = "efficientnet_v2_b3", 300, "efficientnet_v2_b3_300"


def gpu_names() -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except OSError:
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_bundle(folder: Path, mixed: bool) -> Path:
    import keras

    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.categories import CategorySet
    from furrytag_cli.model.network import build_model
    from furrytag_cli.model.preprocess import PreprocessSpec

    if (folder / "model.keras").is_file():
        return folder
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        categories = CategorySet.load()
        model = build_model(BACKBONE, SIZE, categories, weights=None)
        bundle = Bundle(
            path=folder,
            kind="native",
            name=f"gpu-check-{'mixed' if mixed else 'float32'}",
            backbone=BACKBONE,
            categories=categories,
            preprocess=PreprocessSpec(size=SIZE),
        )
        save_bundle(model, folder, bundle)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return folder


def tag_rates(work: Path, paths: list[Path], device: str) -> dict:
    import numpy as np

    from furrytag_cli.tagging.decode import model_input
    from furrytag_cli.tagging.tagger import Tagger

    found = {}
    for mixed in (False, True):
        bundle = make_bundle(work / f"bundle-{'mixed' if mixed else 'float32'}", mixed)
        for batch_size in (64, 128):
            tagger = Tagger(bundle, batch_size=batch_size, engine="keras", device=device)
            spec = tagger.bundle.preprocess
            batch = np.stack([model_input(p, spec) for p in paths[:batch_size]])
            key = f"batch {batch_size}, mixed precision {'on' if mixed else 'off'}"
            found[key] = {
                "tag_img_s": round(end_to_end(tagger, paths, work / "tags.jsonl"), 1),
                "forward_img_s": round(forward_only(tagger.engine, batch, 8), 1),
            }
    return found


def train_rate(work: Path, posts: int) -> dict:
    from furrytag_cli.training.data import train_dataset
    from furrytag_cli.training.trainer import Trainer, prepare_run

    data = build_synthetic(work / "synthetic", posts, SIZE, tags_per_head=8, seed=0)
    run = prepare_run(CONFIG, data=data, out=work / "run", overrides=["model.weights=none"])
    trainer = Trainer(run, verbose=0, note=lambda line: None)
    trainer._compile("full")
    cfg, steps = trainer.config, trainer.steps

    def records(epoch: int):
        return train_dataset(
            trainer.source,
            cfg.data.train_split,
            trainer.spec,
            cfg.augment,
            batch_size=trainer.global_batch,
            steps=steps,
            seed=cfg.train.seed,
            epoch=epoch,
            shuffle_buffer=cfg.data.shuffle_buffer,
        )

    skip = min(5, steps // 4)
    timer = StepTimer(skip)
    time_fit(trainer.model, records(1), steps, timer)  # warm-up: traces (and compiles) the step
    whole, steady = time_fit(trainer.model, records(2), steps, timer)
    return {
        "config": CONFIG,
        "global_batch": trainer.global_batch,
        "steps_per_epoch": steps,
        "mixed_precision": trainer.mixed,
        "steps_s": round(steps / whole, 2),
        "steps_s_after_first_steps": round((steps - skip) / steady, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--posts", type=int, default=1200)
    parser.add_argument("--device", default="gpu", help="cpu: a smoke test of this script")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from furrytag_cli.core.tfruntime import tensorflow

    tf = tensorflow()
    started = time.perf_counter()
    folder = args.work / f"images-{args.images}"
    paths = sorted(folder.iterdir()) if folder.is_dir() else write_images(folder, args.images)
    results = {
        "gpus": gpu_names(),
        "tensorflow": tf.__version__,
        "tensorflow_gpus": len(tf.config.list_physical_devices("GPU")),
        "cpu_threads": os.cpu_count(),
        "model": f"{BACKBONE}@{SIZE}, random weights, keras engine",
        "images": len(paths),
        "tag": tag_rates(args.work, paths, args.device),
        "train": train_rate(args.work, args.posts),
    }
    results["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
