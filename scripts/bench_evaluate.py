"""Benchmark `furrytag evaluate` against `furrytag tag` on the same images.

Both stream batches through the same model; evaluate reads the packed TFRecord shards
of a split, tag reads the image files of the same posts. Their images/s should be about
equal. Writes a synthetic dataset, packs it at the model's input size, builds a model
with random weights (no download) and times, in one process:

- evaluate: scoring the test split (``evaluation.score_split``);
- tag: ``TagJob`` over the stored originals of the same posts, JSONL to a file.

    .venv/bin/python scripts/bench_evaluate.py --posts 1500 --backbone mobilenet_v3_small --size 224
"""

import argparse
import tempfile
import time
from pathlib import Path


def build_data(work: Path, posts: int, size: int):
    import shutil

    from furrytag_cli.dataset.build import BuildOptions, build_dataset
    from furrytag_cli.dataset.layout import original_path
    from furrytag_cli.dataset.manifest import SplitRatios, iter_manifest
    from furrytag_cli.dataset.pack import pack_dataset
    from furrytag_cli.dataset.synth import write_synthetic
    from furrytag_cli.model.categories import CategorySet

    write_synthetic(work / "synth", posts, seed=0)
    categories = CategorySet.load(work / "synth" / "categories")
    data = work / "data"
    # Most posts go to test: the timed split should be large.
    options = BuildOptions(splits=SplitRatios(train=0.1, val=0.1, test=0.8))
    build_dataset([work / "synth" / "export"], data, categories, options)
    shutil.copytree(
        work / "synth" / "site" / "data", data / "images", ignore=shutil.ignore_patterns("sample")
    )
    pack_dataset(data, size, categories, splits=("test",))
    files = [original_path(data, e.md5, e.ext) for e in iter_manifest(data, ("test",))]
    return data, categories, [f for f in files if f.is_file()]


def build_bundle(path: Path, backbone: str, size: int, categories):
    import keras

    from furrytag_cli.model.bundle import Bundle, save_bundle
    from furrytag_cli.model.network import build_model
    from furrytag_cli.model.preprocess import PreprocessSpec

    keras.utils.set_random_seed(0)
    model = build_model(backbone, size, categories, weights=None)
    bundle = Bundle(
        path=path,
        kind="native",
        name=f"{backbone}-bench",
        backbone=backbone,
        categories=categories,
        preprocess=PreprocessSpec(size=size),
    )
    return save_bundle(model, path, bundle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1500)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from furrytag_cli.evaluation.scoring import score_split
    from furrytag_cli.tagging.job import OutputSpec, TagJob
    from furrytag_cli.tagging.tagger import Tagger

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        data, categories, files = build_data(work, args.posts, args.size)
        bundle = build_bundle(work / "bundle", args.backbone, args.size, categories)
        print(
            f"dataset and model ready in {time.perf_counter() - started:.0f} s: "
            f"{len(files)} test images, {args.backbone}@{args.size}, batch {args.batch_size}"
        )
        tagger = Tagger(bundle, batch_size=args.batch_size, device="cpu")
        # Warm-up: trace the model for full and partial batches.
        score_split(tagger, data, "test")

        started = time.perf_counter()
        scores = score_split(tagger, data, "test")
        evaluate_s = time.perf_counter() - started
        evaluate_rate = scores.images / evaluate_s

        spec = OutputSpec(fmt="jsonl", output=work / "tags.jsonl", overwrite=True)
        # Warm-up: the tag pipeline's first run traces its decoding functions.
        TagJob(tagger, files[: 2 * args.batch_size], spec).run()
        started = time.perf_counter()
        summary = TagJob(tagger, files, spec).run()
        tag_s = time.perf_counter() - started
        tag_rate = summary.tagged / tag_s

    print(
        f"evaluate (TFRecords → scores): {scores.images} images in {evaluate_s:6.1f} s = {evaluate_rate:6.1f} img/s"
    )
    print(
        f"tag (files → JSONL)          : {summary.tagged} images in {tag_s:6.1f} s = {tag_rate:6.1f} img/s"
    )
    print(f"ratio evaluate / tag: {evaluate_rate / tag_rate:.2f} (same pipeline: about 1)")


if __name__ == "__main__":
    main()
