"""Benchmark `furrytag train` with the tiny config on a synthetic dataset, on this machine.

1. Writes a synthetic export (`furrytag dataset synth`), builds it into a dataset split
   70/15/15, stores its images and packs them at the tiny config's input size.
2. Input throughput: train steps/s reading the TFRecords through the training pipeline
   (a fresh ``train_dataset`` each epoch, as ``furrytag train`` does) against steps/s on
   the same batches held in memory as tensors, with the same compiled model, after a
   warm-up epoch. Goal: ratio >= 0.9.
3. Quality: trains the tiny config for a wall-clock budget (the number of epochs is set
   from the measured speed so that the learning-rate schedule runs its whole course),
   exports the bundle and evaluates it on the test split with the evaluate code
   (thresholds tuned on val). Goal: micro-F1 >= 0.95.

    .venv/bin/python scripts/bench_train.py                  # 1,500 posts, 10 minutes
    .venv/bin/python scripts/bench_train.py --budget-min 2 --posts 800
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

SPLITS = "0.7,0.15,0.15"


def build_synthetic(work: Path, posts: int, size: int, tags_per_head: int, seed: int) -> Path:
    """A synthetic export built, stored and packed at ``size``: the dataset folder."""
    import shutil

    from furrytag_cli.dataset.build import BuildOptions, build_dataset
    from furrytag_cli.dataset.manifest import SplitRatios
    from furrytag_cli.dataset.pack import pack_dataset
    from furrytag_cli.dataset.synth import write_synthetic
    from furrytag_cli.model.categories import CategorySet

    shutil.rmtree(work, ignore_errors=True)  # a reused --work folder: start afresh
    write_synthetic(work, posts, seed=seed, tags_per_head=tags_per_head, min_side=40, max_side=56)
    categories = CategorySet.load(work / "categories")
    data = work / "data"
    build_dataset(
        [work / "export"], data, categories, BuildOptions(splits=SplitRatios.parse(SPLITS))
    )
    # The synthetic site has the dataset's image layout (as tests/datasetfactory.py does).
    shutil.copytree(
        work / "site" / "data", data / "images", ignore=shutil.ignore_patterns("sample")
    )
    pack_dataset(data, size, categories, workers=2)
    return data


def make_trainer(data: Path, out: Path, overrides: list[str], verbose: int = 0):
    from furrytag_cli.training.trainer import Trainer, prepare_run

    shutil.rmtree(out, ignore_errors=True)  # a reused --work folder: start afresh
    run = prepare_run("tiny", data=data, out=out, overrides=overrides)
    return Trainer(run, verbose=verbose, note=lambda line: None)


class StepTimer:
    """Times each fit call and its steps after the first ``skip`` of the call."""

    def __init__(self, skip: int) -> None:
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch + 1 == timer.skip:
                    timer.mark = time.perf_counter()

        self.skip, self.mark, self.callback = skip, None, Callback()


def time_fit(model, dataset, steps: int, timer: StepTimer) -> tuple[float, float]:
    """(seconds of the whole fit call, seconds of its steps after the timer's skip)."""
    started = time.perf_counter()
    model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,
        callbacks=[timer.callback],
    )
    ended = time.perf_counter()
    return ended - started, ended - timer.mark


def throughput(data: Path, work: Path, epochs: int, repeats: int) -> dict:
    """Steps/s from the TFRecords against steps/s on the same batches in memory."""
    from furrytag_cli.core.tfruntime import tensorflow
    from furrytag_cli.training.data import fits_in_memory, hold_split, train_dataset

    tf = tensorflow()
    trainer = make_trainer(data, work / "run-throughput", [])
    cfg, steps = trainer.config, trainer.steps
    trainer._compile("full")
    model = trainer.model
    split = cfg.data.train_split
    held = fits_in_memory(trainer.source, split)
    started = time.perf_counter()
    if held:
        hold_split(trainer.source, split)
    load_s = time.perf_counter() - started

    def records(epoch: int, hold: bool | None = None):
        return train_dataset(
            trainer.source,
            split,
            trainer.spec,
            cfg.augment,
            batch_size=trainer.global_batch,
            steps=steps,
            seed=cfg.train.seed,
            epoch=epoch,
            shuffle_buffer=cfg.data.shuffle_buffer,
            hold=hold,
        )

    # The very same batches, decoded and augmented once, then held as tensors.
    held_batches = []
    for epoch in range(1, epochs + 1):
        batches = list(records(epoch).take(steps))
        images = tf.stack([x for x, _ in batches])
        targets = {head: tf.stack([y[head] for _, y in batches]) for head in batches[0][1]}
        held_batches.append(tf.data.Dataset.from_tensor_slices((images, targets)).repeat())

    sources = {
        "records": lambda epoch: records(epoch),
        "memory": lambda epoch: held_batches[epoch - 1],
        "streaming": lambda epoch: records(epoch, hold=False),
    }
    skip = min(10, steps // 4)
    timer = StepTimer(skip)
    for make in sources.values():  # warm-up: traces the train step and the pipelines
        time_fit(model, make(epochs), steps, timer)
    runs = {name: [] for name in sources}
    for _ in range(repeats):
        # Interleaved, so that load from other processes hits all alike.
        for name, make in sources.items():
            whole = steady = 0.0
            for epoch in range(1, epochs + 1):
                a, b = time_fit(model, make(epoch), steps, timer)
                whole, steady = whole + a, steady + b
            runs[name].append((epochs * steps / whole, epochs * (steps - skip) / steady))
    result = {
        "steps_per_epoch": steps,
        "batch": trainer.global_batch,
        "epochs": epochs,
        "repeats": repeats,
        "skip": skip,
        "held": held,
        "load_s": load_s,
    }
    for name, values in runs.items():
        result[name] = statistics.median(v[0] for v in values)
        result[name + "_steady"] = statistics.median(v[1] for v in values)
    return result


def epoch_seconds(data: Path, work: Path, overrides: list[str], epochs: int = 4) -> float:
    """Wall-clock seconds of one epoch of a real run (validation and checkpoints included)."""
    import keras

    trainer = make_trainer(
        data,
        work / "run-calibrate",
        [f"train.epochs={epochs}", "train.checkpoint_every=0", *overrides],
    )
    marks = []

    class Mark(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(time.perf_counter())

    trainer.callbacks.append(Mark())
    trainer.fit()
    marks.append(time.perf_counter())
    # The first epoch traces the train step; the last one's end is the loop's own.
    return (marks[-1] - marks[1]) / (len(marks) - 2)


def budget_train(
    data: Path, out: Path, budget_s: float, epoch_s: float, overrides: list[str]
) -> dict:
    """Train for about ``budget_s`` seconds and export the bundle."""
    import keras

    epochs = max(1, int(budget_s / epoch_s))
    trainer = make_trainer(
        data, out, [f"train.epochs={epochs}", "train.checkpoint_every=0", *overrides]
    )
    started = time.perf_counter()

    class Budget(keras.callbacks.Callback):
        # A safety net: the estimate was off and the budget is spent.
        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - started > budget_s * 1.05:
                trainer.state.stopped_early = True

    trainer.callbacks.append(Budget())
    state = trainer.fit()
    seconds = time.perf_counter() - started
    bundle = trainer.export()
    last = state.history[-1]
    return {
        "epochs_planned": epochs,
        "epochs": state.epoch,
        "steps": state.global_step,
        "seconds": seconds,
        "bundle": bundle.path,
        "last": last,
        "best_epoch": state.best_epoch,
        "config": trainer.config,
    }


def evaluate(bundle_path: Path, data: Path) -> dict:
    """The exported bundle on the test split; thresholds tuned on val (`furrytag evaluate`)."""
    from furrytag_cli.evaluation.job import EvalRequest, Source, evaluate_model
    from furrytag_cli.model.loading import load_bundle

    bundle = load_bundle(bundle_path)
    request = EvalRequest(
        source=Source(data=data, split="test"), tune_on=Source(data=data, split="val"), device="cpu"
    )
    report = evaluate_model(bundle, request)
    evaluation = report.evaluation
    settings = {name: m.overall.micro for name, m in evaluation.settings.items()}
    return {
        "images": evaluation.images,
        "settings": settings,
        "rating": evaluation.rating,
        "heads": {h: g.micro.f1 for h, g in evaluation.settings["per tag"].heads.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1500, help="Synthetic posts (default 1,500).")
    parser.add_argument(
        "--tags-per-head",
        type=int,
        default=2,
        help="Tags of each head in use (default 2: 10 tags in all).",
    )
    parser.add_argument(
        "--budget-min", type=float, default=10.0, help="Training budget in minutes (default 10)."
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="Epochs of each throughput measurement (default 3)."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Throughput repeats (median).")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="Config override for the budget run, e.g. optimizer.lr=1e-2.",
    )
    parser.add_argument("--work", type=Path, help="Work folder (default: a temporary one).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from furrytag_cli.core.tfruntime import tensorflow
    from furrytag_cli.dataset.records import read_info, records_dir
    from furrytag_cli.training.config import load_config

    tf = tensorflow()
    tf.get_logger().setLevel("ERROR")
    size = load_config("tiny").model.input_size
    with tempfile.TemporaryDirectory(prefix="furrytag-bench-train-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        data = build_synthetic(work / "synth", args.posts, size, args.tags_per_head, args.seed)
        examples = {s: v["examples"] for s, v in read_info(records_dir(data)).splits.items()}
        print(
            f"Dataset: {args.posts:,} synthetic posts, {args.tags_per_head} tag(s) a head, "
            f"packed at {size} px in {time.perf_counter() - started:.1f} s; examples "
            + ", ".join(f"{s} {n}" for s, n in examples.items()),
            flush=True,
        )

        speed = throughput(data, work, args.epochs, args.repeats)
        ratio = speed["records"] / speed["memory"]
        steady = speed["records_steady"] / speed["memory_steady"]
        print(
            f"Throughput ({speed['steps_per_epoch']} steps an epoch of batch {speed['batch']}, "
            f"{speed['epochs']} epochs × {speed['repeats']} repeats, median; each epoch a "
            "fresh pipeline and fit call, as in `furrytag train`):",
            flush=True,
        )
        if speed["held"]:
            print(
                f"  the train split fits in memory: decoded from its shards once, "
                f"in {speed['load_s']:.2f} s"
            )
        for name, label in (
            ("records", "TFRecords, train_dataset (as furrytag train)"),
            ("streaming", "TFRecords, streaming every epoch (hold=False)"),
            ("memory", "same batches held in memory"),
        ):
            print(
                f"  {label:<46} {speed[name]:7.1f} steps/s whole epochs, "
                f"{speed[name + '_steady']:7.1f} after step {speed['skip']}"
            )
        print(
            f"  ratio TFRecords / in memory: {ratio:.3f} whole epochs, {steady:.3f} steady",
            flush=True,
        )

        budget_s = args.budget_min * 60
        epoch_s = epoch_seconds(data, work, args.overrides)
        print(
            f"Calibration: an epoch of a real run takes {epoch_s:.2f} s "
            f"(validation and checkpoints included)",
            flush=True,
        )
        trained = budget_train(data, work / "run-budget", budget_s, epoch_s, args.overrides)
        cfg = trained["config"]
        print(
            f"Budget run: {args.budget_min:g} min → {trained['epochs']} of "
            f"{trained['epochs_planned']} planned epochs, {trained['steps']} steps in "
            f"{trained['seconds']:.0f} s (lr {cfg.optimizer.lr:g}, warmup "
            f"{cfg.optimizer.warmup_epochs:g} epoch(s), batch {cfg.train.batch_size}); best "
            f"epoch {trained['best_epoch']}, last loss {trained['last']['loss']:.4f}, "
            f"val_loss {trained['last'].get('val_loss', float('nan')):.4f}",
            flush=True,
        )

        result = evaluate(trained["bundle"], data)
        print(f"Test split ({result['images']} images), thresholds tuned on val:")
        for name, micro in result["settings"].items():
            print(
                f"  {name:<16} micro P {micro.precision:.4f}  R {micro.recall:.4f}  "
                f"F1 {micro.f1:.4f}"
            )
        print(
            "  per-head micro-F1 (per tag): "
            + ", ".join(f"{h} {f:.3f}" for h, f in result["heads"].items())
        )
        rating = result["rating"]
        print(
            f"  rating accuracy {rating.accuracy:.4f} (best cuts on test: {rating.best_accuracy:.4f})"
        )

        f1 = result["settings"]["per tag"].f1
        print()
        print("Summary")
        print(
            f"  TFRecords / in-memory steps/s: {ratio:.3f} whole epochs, {steady:.3f} steady "
            f"(goal >= 0.9): {'met' if ratio >= 0.9 else 'NOT met'}; streaming every epoch: "
            f"{speed['streaming'] / speed['memory']:.3f}"
        )
        print(
            f"  test micro-F1 after {args.budget_min:g} min (per-tag thresholds tuned on val): "
            f"{f1:.4f} (goal >= 0.95): {'met' if f1 >= 0.95 else 'NOT met'}"
        )
        print(f"  test rating accuracy: {rating.accuracy:.4f}")


if __name__ == "__main__":
    main()
