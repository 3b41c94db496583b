"""``furrytag train`` end to end on a small synthetic packed dataset with the tiny backbone."""

import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from furrytag_cli.dataset.build import BuildOptions, build_dataset
from furrytag_cli.dataset.manifest import SplitRatios
from furrytag_cli.dataset.synth import write_synthetic
from furrytag_cli.model.categories import CategorySet
from tests.clirunner import invoke
from tests.datasetfactory import store_images

SIZE = 32
# Three short epochs of 5 or 6 steps; a checkpoint every four steps lands inside epoch 1.
SETTINGS = ("train.epochs=3", "train.checkpoint_every=4")


@pytest.fixture
def run(capsys, monkeypatch):
    return lambda *args, **kw: invoke(capsys, monkeypatch, *args, **kw)


def pack_synthetic(folder: Path, posts: int, seed: int) -> Path:
    """A synthetic dataset split 70/15/15, packed for 32 px training."""
    from furrytag_cli.dataset.pack import pack_dataset

    write_synthetic(folder, posts, seed=seed, tags_per_head=2, min_side=40, max_side=56)
    categories = CategorySet.load(folder / "categories")
    data = folder / "data"
    build_dataset(
        [folder / "export"],
        data,
        categories,
        BuildOptions(splits=SplitRatios.parse("0.7,0.15,0.15")),
    )
    store_images(folder / "site", data)
    pack_dataset(data, SIZE, categories)
    return data


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """~100 train and ~25 val images."""
    return pack_synthetic(tmp_path_factory.mktemp("synth"), 170, seed=3)


def _cli(*args) -> int:
    """Run the CLI in this process (usable from module-scoped fixtures)."""
    from furrytag_cli.cli.app import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["furrytag", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 0
    return 0


@pytest.fixture(scope="module")
def trained(packed, tmp_path_factory) -> Path:
    """A finished run of the tiny config, launched through the CLI, on data whose
    implication table (written by dataset build) says the first species tag implies the
    second and names a tag the packed heads lack."""
    heads = json.loads((packed / "shards" / "records.json").read_text())["heads"]
    first, second = heads["species"][:2]
    (packed / "implications.json").write_text(json.dumps({first: [second, "not_packed"]}))
    out = tmp_path_factory.mktemp("runs") / "tiny"
    sets = [arg for setting in SETTINGS for arg in ("--set", setting)]
    assert _cli("train", "--config", "tiny", "--data", packed, "--output", out, "-q", *sets) == 0
    return out


def steps_per_epoch(packed: Path) -> int:
    """Batches of 16 (the tiny config's) in the train split."""
    info = json.loads((packed / "shards" / "records.json").read_text())
    return info["splits"]["train"]["examples"] // 16


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_a_run_writes_its_config_checkpoints_logs_and_a_bundle(trained, packed):
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["data"]["path"] == str(packed.resolve())
    assert config["train"]["epochs"] == 3 and config["model"]["backbone"] == "tiny"
    for name in (
        "latest/weights.npz",
        "latest/optimizer.npz",
        "latest/state.json",
        "best/weights.npz",
    ):
        assert (trained / "checkpoints" / name).is_file(), name
    rows = history(trained)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    steps = steps_per_epoch(packed)
    assert [row["step"] for row in rows] == [steps, 2 * steps, 3 * steps]
    for key in ("loss", "val_loss", "rating_loss", "species_f1", "val_species_f1", "learning_rate"):
        assert key in rows[0], key
    assert (trained / "log.csv").read_text().startswith("epoch,step,learning_rate,")
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    meta = yaml.safe_load((trained / "bundle" / "furrytag.yaml").read_text())
    packed_heads = json.loads((packed / "shards" / "records.json").read_text())["heads"]
    assert {h["name"]: h["tags"] for h in meta["heads"]} == packed_heads
    assert meta["backbone"] == "tiny" and meta["preprocess"]["size"] == SIZE
    assert 0 < meta["threshold"] < 1 and set(meta["thresholds"]) == {
        "global",
        "per_head",
        "per_tag",
    }
    assert meta["metrics"]["split"] == "val" and "rating_accuracy" in meta["metrics"]
    assert meta["provenance"]["best_epoch"] in (1, 2, 3)
    species = packed_heads["species"]
    assert meta["implications"] == {species[0]: [species[1]]}


def test_progress_goes_to_stderr_as_plain_lines_when_it_is_not_a_terminal(run, packed, tmp_path):
    out = run(
        "train",
        "-c",
        "tiny",
        "--data",
        packed,
        "--output",
        tmp_path / "r",
        "--set",
        "train.epochs=2",
        "--set",
        "train.steps_per_epoch=2",
    )
    assert out.code == 0, out.stderr
    assert [line.split(" ")[0] for line in out.stdout.splitlines()] == ["Trained", "Tag"]
    lines = out.stderr.splitlines()
    assert lines[0].startswith(
        "Training tiny-synthetic (tiny at 32 px) on 1 replica(s), global batch 16"
    )
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss " in line and "val_loss " in line and "val F1 " in line for line in epochs)


def test_early_stopping_ends_the_run_when_the_monitor_stalls(run, packed, tmp_path):
    # A learning rate of 1e-9 leaves the thresholded validation F1 exactly where it was.
    out = run(
        "train",
        "-c",
        "tiny",
        "-d",
        packed,
        "--out",  # the old name of --output
        tmp_path / "r",
        "--json",
        "--set",
        "train.epochs=6",
        "--set",
        "train.steps_per_epoch=1",
        "--set",
        "train.monitor=val_species_f1",
        "--set",
        "train.early_stopping=2",
        "--set",
        "optimizer.lr=1e-9",
    )
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout) == {
        "run": str(tmp_path / "r"),
        "epochs": 3,
        "steps": 3,
        "best_epoch": 1,
        "bundle": str(tmp_path / "r" / "bundle"),
    }
    assert [row["epoch"] for row in history(tmp_path / "r")] == [1, 2, 3]
    assert "Early stop: val_species_f1 has not improved for 2 epochs." in out.stderr
    assert (tmp_path / "r" / "bundle" / "furrytag.yaml").is_file()


def test_the_loss_goes_down(trained):
    rows = history(trained)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


def test_tag_runs_the_exported_bundle_with_the_trained_weights(run, trained, packed):
    import keras
    from PIL import Image

    from furrytag_cli.model.network import build_model
    from furrytag_cli.model.preprocess import PreprocessSpec, preprocess_image
    from furrytag_cli.training.checkpoint import load_checkpoint
    from furrytag_cli.training.data import DataSource

    image_path = sorted((packed / "images").rglob("*.png"))[0]
    out = run("tag", image_path, "--model", trained / "bundle", "--all-scores", "-q")
    assert out.code == 0, out.stderr
    record = json.loads(out.stdout)
    source = DataSource.open(packed)
    keras.mixed_precision.set_global_policy("float32")
    model = build_model("tiny", SIZE, source.categories, hidden_units=64)
    model.set_weights(load_checkpoint(trained, "best").weights)
    pixels = np.asarray(Image.open(image_path).convert("RGB"))[None]
    expected = model(preprocess_image(pixels, PreprocessSpec(size=SIZE)), training=False)
    for head, tags in source.categories.heads.items():
        got = [record["scores"][head][tag] for tag in tags]
        np.testing.assert_allclose(got, expected[head].numpy()[0], atol=2e-4)
    assert record["rating_score"] == pytest.approx(float(expected["rating"][0, 0]), abs=2e-4)


def test_an_epoch_has_the_same_batches_every_time_and_skip_drops_the_first(packed):
    from furrytag_cli.model.preprocess import PreprocessSpec
    from furrytag_cli.training.config import load_config
    from furrytag_cli.training.data import DataSource, train_dataset

    source, config = DataSource.open(packed), load_config("tiny", ["augment.mixup=0.5"])

    def batches(epoch, skip=0):
        dataset = train_dataset(
            source,
            "train",
            PreprocessSpec(size=SIZE),
            config.augment,
            batch_size=8,
            steps=4,
            seed=1,
            epoch=epoch,
            skip=skip,
        )
        return [
            (x.numpy(), {h: v.numpy() for h, v in y.items()}) for x, y in dataset.take(4 - skip)
        ]

    first, again, later = batches(0), batches(0), batches(0, skip=2)
    assert len(first) == 4 and first[0][0].shape == (8, SIZE, SIZE, 3)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
    for (x1, _), (x2, _) in zip(first[2:], later):
        np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(first[0][0], batches(1)[0][0])
    rating = first[0][1]["rating"]
    assert rating.shape == (8, 1) and ((rating >= 0) & (rating <= 1)).all()
    assert set(first[0][1]) == {*source.categories.head_names, "rating"}
    # MixUp blends labels: some targets lie strictly between 0 and 1.
    mixed = np.concatenate([v.ravel() for v in first[0][1].values()])
    assert ((mixed > 0.01) & (mixed < 0.99)).any()


class Interrupt(Exception):
    pass


def interrupt_after(steps: int):
    import keras

    class Callback(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Callback.seen += 1
            if Callback.seen == steps:
                raise Interrupt()

    return Callback()


def interrupted_run(packed: Path, out: Path, overrides, steps: int):
    """Train into ``out`` until the step ``steps`` interrupts it; return its checkpoint and
    a Trainer restored from it."""
    from furrytag_cli.training.checkpoint import load_checkpoint
    from furrytag_cli.training.trainer import Trainer, prepare_run, train

    with pytest.raises(Interrupt):
        train(
            "tiny",
            data=packed,
            out=out,
            overrides=overrides,
            callbacks=[interrupt_after(steps)],
            verbose=0,
        )
    saved = load_checkpoint(out)
    resumed = Trainer(prepare_run(None, data=None, out=None, resume=out), verbose=0)
    resumed.restore(resumed.run.checkpoint)
    return saved, resumed


def test_resume_continues_from_the_saved_step_with_the_same_optimizer_state(
    trained, packed, tmp_path
):
    from furrytag_cli.training.checkpoint import load_checkpoint
    from furrytag_cli.training.trainer import train

    out = tmp_path / "interrupted"
    saved, resumed = interrupted_run(packed, out, SETTINGS, steps=5)
    assert (saved.state.epoch, saved.state.step_in_epoch, saved.state.global_step) == (0, 4, 4)
    assert not (out / "bundle").exists()
    assert int(resumed.model.optimizer.iterations.numpy()) == 4
    for variable, value in zip(resumed.model.optimizer.variables, saved.optimizer):
        np.testing.assert_array_equal(variable.numpy(), value)
    for variable, value in zip(resumed.model.weights, saved.weights):
        np.testing.assert_array_equal(variable.numpy(), value)

    result = train(resume=out, verbose=0)
    assert result.state.global_step == 3 * steps_per_epoch(packed)
    assert (out / "bundle" / "model.keras").is_file()
    done, reference = load_checkpoint(out), load_checkpoint(trained)
    # The interrupted-and-resumed run ends where the uninterrupted one did.
    for mine, theirs in zip(done.weights + done.optimizer, reference.weights + reference.optimizer):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert [row["epoch"] for row in history(out)] == [1, 2, 3]


def test_lamb_trains_and_resumes_with_its_own_state(packed, tmp_path):
    import keras

    from furrytag_cli.training.trainer import train

    out = tmp_path / "lamb"
    settings = ("optimizer.name=lamb", "train.epochs=2", "train.steps_per_epoch=3")
    saved, resumed = interrupted_run(packed, out, settings, steps=4)
    assert isinstance(resumed.model.optimizer, keras.optimizers.Lamb)
    for variable, value in zip(resumed.model.optimizer.variables, saved.optimizer):
        np.testing.assert_array_equal(variable.numpy(), value)
    result = train(resume=out, verbose=0)
    assert result.state.global_step == 6 and all(np.isfinite(row["loss"]) for row in history(out))
    assert yaml.safe_load((out / "config.yaml").read_text())["optimizer"]["name"] == "lamb"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "optimizer.lrr=0.1"], r"optimizer: unknown key 'lrr' \(did you mean 'lr'\?\)"),
        (["--set", "train.batch_size=4096"], r"fewer than one global batch"),
        (
            ["--set", "loss.head_weights.speceis=2"],
            r"unknown head 'speceis' \(did you mean 'species'\?\)",
        ),
        (["--set", "data.val_split=tset"], r"no examples of split 'tset'"),
        (
            ["--set", "train.monitor=val_los"],
            r"train\.monitor 'val_los' is not a metric training logs \(did you mean 'val_loss'\?\)",
        ),
    ],
)
def test_bad_settings_give_one_clear_error_line(run, packed, tmp_path, args, message):
    out = run("train", "--config", "tiny", "--data", packed, "--output", tmp_path / "r", *args)
    assert out.code == 1
    assert out.stderr.startswith("Error: ") and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    assert re.search(message, out.stderr), out.stderr


def test_data_problems_are_clear(run, packed, tmp_path):
    out = run("train", "--config", "tiny", "--output", tmp_path / "r")
    assert out.code == 1 and "no training data: give --data" in out.stderr
    out = run(
        "train", "--config", "tiny", "--data", tmp_path / "nowhere", "--output", tmp_path / "r"
    )
    assert out.code == 1 and "no records.json in" in out.stderr
    shipped = Path(__file__).resolve().parents[2] / "categories"
    out = run(
        "train",
        "--config",
        "tiny",
        "--data",
        packed,
        "--output",
        tmp_path / "r",
        "--set",
        f"data.categories={shipped}",
    )
    assert out.code == 1 and "packed with a different tag list for head" in out.stderr


def test_run_folders_are_not_overwritten_and_resume_needs_a_run(run, trained, tmp_path):
    out = run("train", "--config", "tiny", "--data", tmp_path, "--output", trained)
    assert out.code == 1 and f"--resume {trained}" in out.stderr
    out = run("train", "--resume", tmp_path)
    assert out.code == 1 and "is not a training run" in out.stderr
    out = run("train", "--resume", trained, "--config", "tiny")
    assert out.code == 1 and "leave out --config" in out.stderr


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(run, trained, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(trained / "config.yaml", fresh / "config.yaml")
    (fresh / "checkpoints" / "best.tmp").mkdir(parents=True)  # Ctrl-C during the first save
    out = run("train", "--resume", fresh, "--set", "train.epochs=1")
    assert out.code == 0, out.stderr
    assert [row["epoch"] for row in history(fresh)] == [1]


def test_a_damaged_checkpoint_is_a_clear_error(run, trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "checkpoints" / "latest" / "weights.npz").write_bytes(b"\x93NUMPY garbage")
    out = run("train", "--resume", copy)
    assert out.code == 1 and "Traceback" not in out.stderr
    assert "the latest checkpoint in" in out.stderr and "is damaged" in out.stderr
    (copy / "checkpoints" / "latest" / "state.json").write_bytes(b"\xff\xfe")
    out = run("train", "--resume", copy)
    assert out.code == 1 and "is damaged (UnicodeDecodeError" in out.stderr


@pytest.mark.slow
def test_ctrl_c_stops_training_and_says_how_to_continue(packed, tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Ctrl-C as in a terminal, even when this suite was started with SIGINT ignored.
            "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('furrytag_cli', run_name='__main__')",
            "train",
            "-c",
            "tiny",
            "--data",
            str(packed),
            "--output",
            str(out),
            "--set",
            "train.epochs=500",
            "--set",
            "train.checkpoint_every=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # Python drops a KeyboardInterrupt raised inside a finalizer (TensorFlow runs many):
        # that Ctrl-C is lost, and a user presses it again.
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert (
        f"Interrupted: training stopped; continue it from its latest checkpoint with furrytag "
        f"train --resume {out}" in err
    )
    assert "Traceback" not in err


@pytest.mark.slow
def test_mixup_asymmetric_loss_positive_weights_and_a_frozen_warmup(packed, tmp_path):
    import keras

    from furrytag_cli.training.checkpoint import load_checkpoint
    from furrytag_cli.training.trainer import train

    overrides = (
        "train.epochs=2",
        "train.freeze_backbone_epochs=1",
        "augment.mixup=0.4",
        "augment.flip=true",
        "loss.asymmetric.gamma_neg=2",
        "loss.positive_weight_power=0.5",
        "data.val_split=null",
    )
    captured = {}

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            captured[epoch] = [w.numpy().copy() for w in self.model.get_layer("backbone").weights]

    result = train(
        "tiny", data=packed, out=tmp_path / "r", overrides=overrides, callbacks=[Watch()], verbose=0
    )
    rows = history(tmp_path / "r")
    assert all(np.isfinite(row["loss"]) for row in rows) and "val_loss" not in rows[0]
    # Epoch 1 trained the heads only: the backbone was the same at the start of epoch 2.
    for before, after in zip(captured[0], captured[1]):
        np.testing.assert_array_equal(before, after)
    final = load_checkpoint(tmp_path / "r", "best")
    # Without validation the training loss picks the best epoch.
    assert final.state.best_epoch in (1, 2) and final.state.best == min(r["loss"] for r in rows)
    assert result.bundle.threshold == 0.5 and result.bundle.metrics == {}


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_trains_the_same_way(packed, tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from furrytag_cli.training.trainer import train
        result = train("tiny", data={str(packed)!r}, out={str(tmp_path / "r")!r}, verbose=0,
                       overrides=["train.strategy=mirrored", "train.epochs=2", "train.batch_size=8"])
        print("REPLICAS", result.bundle.provenance["replicas"], result.state.global_step)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    steps = (
        json.loads((packed / "shards" / "records.json").read_text())["splits"]["train"]["examples"]
        // 16
    )
    assert f"REPLICAS 2 {2 * steps}" in done.stdout, done.stdout + done.stderr
    rows = history(tmp_path / "r")
    assert rows[-1]["loss"] < rows[0]["loss"]


@pytest.mark.slow
def test_the_synthetic_labels_are_learnable(tmp_path):
    from furrytag_cli.training.trainer import train

    # ~180 train images; the tiny model needs a few hundred steps before the tags click.
    data = pack_synthetic(tmp_path / "synth", 300, seed=0)
    result = train(
        "tiny",
        data=data,
        out=tmp_path / "r",
        verbose=0,
        overrides=["train.epochs=60", "train.checkpoint_every=0", "augment.crop_area=null"],
    )
    # Predicting every tag scores micro-F1 of about 0.4 here; the tiny model must do better.
    assert result.bundle.metrics["tuned"]["micro"]["f1"] > 0.5
    assert result.bundle.metrics["rating_accuracy"] > 0.8


def test_the_monitored_metric_is_checked_and_falls_back_without_a_val_split():
    from furrytag_cli.core.errors import ConfigError
    from furrytag_cli.training.trainer import monitored_metric

    heads = ("action", "species")
    assert monitored_metric("val_species_f1", heads, validated=True) == "val_species_f1"
    assert monitored_metric("val_loss", heads, validated=False) == "loss"
    assert monitored_metric("rating_loss", heads, validated=False) == "rating_loss"
    with pytest.raises(
        ConfigError, match=r"'val_specis_f1' .* \(did you mean 'val_species_f1'\?\)"
    ):
        monitored_metric("val_specis_f1", heads, validated=True)
