"""Training a multi-head tagger: from a config and packed shards to a native bundle.

    from furrytag_cli.training.trainer import train
    result = train("tiny", data="synth/data", out="runs/tiny")
    # result.bundle is ready for `furrytag tag --model runs/tiny/bundle`

The run folder holds ``config.yaml`` (the resolved config), ``checkpoints/`` (latest and
best), ``log.csv``/``log.jsonl`` (one row an epoch), ``tensorboard/`` and ``bundle/``.
Epochs run one ``fit`` call each, on that epoch's own reproducible batches, so that
``resume`` continues at the saved step with the saved optimizer state.
"""

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, FurrytagError
from furrytag_cli.core.schema import did_you_mean
from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import CategorySet
from furrytag_cli.model.network import build_model
from furrytag_cli.model.preprocess import PreprocessSpec
from furrytag_cli.training.checkpoint import (
    BEST,
    CHECKPOINTS,
    LATEST,
    TrainState,
    checkpoint_path,
    load_checkpoint,
    restore_optimizer,
    restore_weights,
    save_checkpoint,
)
from furrytag_cli.training.config import (
    RESOLVED_CONFIG,
    TrainConfig,
    config_from_file,
    load_config,
    save_config,
)
from furrytag_cli.training.data import DataSource, eval_dataset, positive_fractions, train_dataset
from furrytag_cli.training.export import export_bundle
from furrytag_cli.training.log import TensorBoardLog, write_logs
from furrytag_cli.training.loss import build_losses
from furrytag_cli.training.optim import learning_rate_schedule, make_optimizer
from furrytag_cli.training.strategy import is_chief, parse_tf_config, select_strategy

Note = Callable[[str], None]


@dataclass
class TrainResult:
    run_dir: Path
    bundle: Bundle
    state: TrainState


@dataclass
class _Run:
    """A run's folder, resolved config and where its loop stands."""

    run_dir: Path
    config: TrainConfig
    state: TrainState
    checkpoint: object = None


def prepare_run(
    config: TrainConfig | str | Path | None,
    *,
    data: str | Path | None,
    out: str | Path | None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
) -> _Run:
    """Resolve the config and the run folder of a new or resumed run; save the config."""
    checkpoint = None
    if resume is not None:
        run_dir = Path(resume)
        if config is not None:
            raise ConfigError(
                "--resume uses the run's own config.yaml; leave out --config "
                "(change settings with --set)"
            )
        if out is not None and Path(out) != run_dir:
            raise ConfigError(f"--resume {run_dir} writes to that run folder; leave out --output")
        if not (run_dir / RESOLVED_CONFIG).is_file():
            raise ConfigError(f"{run_dir} is not a training run (no {RESOLVED_CONFIG} in it)")
        resolved = config_from_file(run_dir / RESOLVED_CONFIG, overrides)
        # Stopped before its first checkpoint: the run starts again from the beginning.
        checkpoint = load_checkpoint(run_dir, LATEST) if checkpoint_path(run_dir, LATEST) else None
        state = checkpoint.state if checkpoint is not None else TrainState()
    else:
        if config is None or out is None:
            raise ConfigError("give --config and --output (or --resume RUN_DIR)")
        run_dir = Path(out)
        if (run_dir / CHECKPOINTS).exists():
            raise ConfigError(
                f"{run_dir} already holds a training run; continue it with "
                f"--resume {run_dir} or give another --output"
            )
        resolved = config if isinstance(config, TrainConfig) else load_config(config, overrides)
        state = TrainState()
    data = data if data is not None else resolved.data.path
    if data is None:
        raise ConfigError("no training data: give --data DATA (a packed dataset) or set data.path")
    resolved = replace(resolved, data=replace(resolved.data, path=str(Path(data).resolve())))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(resolved, run_dir)
    return _Run(run_dir=run_dir, config=resolved, state=state, checkpoint=checkpoint)


def _stop_after_epoch():
    import keras

    def stop(epoch, logs=None):
        callback.model.stop_training = True

    callback = keras.callbacks.LambdaCallback(on_epoch_end=stop)
    return callback


def _mixed_precision(setting, strategy) -> bool:
    if setting == "auto":
        tf = tensorflow()
        return bool(tf.config.list_logical_devices("GPU")) or "TPU" in type(strategy).__name__
    return bool(setting)


def monitored_metric(monitor: str, heads: Sequence[str], validated: bool) -> str:
    """The logged metric ``train.monitor`` names, checked before training starts.

    Without a validation split a ``val_`` metric falls back to its training value.
    """
    logged = [
        "loss",
        "rating_loss",
        *(f"{head}_{kind}" for head in heads for kind in ("loss", "f1")),
    ]
    names = logged + ([f"val_{name}" for name in logged] if validated else [])
    if monitor in names:
        return monitor
    if not validated and monitor.startswith("val_") and monitor[4:] in names:
        return monitor[4:]
    raise ConfigError(
        f"train.monitor {monitor!r} is not a metric training logs{did_you_mean(monitor, names)}; "
        f"choose one of: {', '.join(names)}"
    )


def _monitor_improved(monitor: str, value: float, best: float | None) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    # Losses and errors go down; F1, accuracy and the like go up.
    lower = any(word in monitor for word in ("loss", "error", "mae", "mse"))
    return value < best if lower else value > best


class Trainer:
    """One training run: model, strategy, data and the epoch loop."""

    def __init__(
        self, run: _Run, *, callbacks: Sequence = (), verbose: int = 2, note: Note = print
    ) -> None:
        import keras

        self.run, self.config, self.state = run, run.config, run.state
        self.callbacks, self.verbose, self.note = list(callbacks), verbose, note
        cfg = self.config
        self.strategy = select_strategy(cfg.train.strategy)
        self.chief = is_chief(parse_tf_config(os.environ))
        categories = CategorySet.load(Path(cfg.data.categories)) if cfg.data.categories else None
        self.source = DataSource.open(Path(cfg.data.path), categories)
        self.replicas = self.strategy.num_replicas_in_sync
        self.global_batch = cfg.train.batch_size * self.replicas
        train_examples = self.source.count(cfg.data.train_split)
        self.steps = cfg.train.steps_per_epoch or train_examples // self.global_batch
        if self.steps < 1:
            raise ConfigError(
                f"the {cfg.data.train_split!r} split has {train_examples} examples, fewer than "
                f"one global batch ({cfg.train.batch_size} × {self.replicas} replicas); lower "
                "train.batch_size or set train.steps_per_epoch"
            )
        self.spec = PreprocessSpec(size=cfg.model.input_size)
        self.mixed = _mixed_precision(cfg.train.mixed_precision, self.strategy)
        keras.mixed_precision.set_global_policy("mixed_float16" if self.mixed else "float32")
        keras.utils.set_random_seed(cfg.train.seed)
        fractions = None
        if cfg.loss.positive_weight_power:
            fractions = positive_fractions(self.source, cfg.data.train_split)
        self.losses, self.loss_weights = build_losses(
            cfg.loss, self.source.categories.head_names, fractions
        )
        with self.strategy.scope():
            self.model = build_model(
                cfg.model.backbone,
                cfg.model.input_size,
                self.source.categories,
                weights=cfg.model.weights,
                hidden_units=cfg.model.hidden_units,
                dropout=cfg.model.dropout,
            )
        self.schedule = learning_rate_schedule(
            cfg.optimizer,
            total_steps=cfg.train.epochs * self.steps,
            steps_per_epoch=self.steps,
            global_batch=self.global_batch,
        )
        self.val = self.val_steps = None
        if cfg.data.val_split:
            self.val_steps = math.ceil(self.source.count(cfg.data.val_split) / self.global_batch)
            self.val = eval_dataset(
                self.source,
                cfg.data.val_split,
                self.spec,
                batch_size=self.global_batch,
                cache=cfg.data.cache_val,
            )
        self.monitor = monitored_metric(
            cfg.train.monitor, self.source.categories.head_names, validated=self.val is not None
        )
        self.phase = None
        self.tensorboard = TensorBoardLog(run.run_dir) if self.chief else None

    def _compile(self, phase: str) -> None:
        """Compile for ``phase`` ("frozen": backbone frozen; "full") with a fresh optimizer."""
        import keras

        cfg = self.config
        backbone = self.model.get_layer("backbone")
        backbone.trainable = phase == "full"
        metrics = {
            head: [keras.metrics.F1Score(average="micro", threshold=0.5, name="f1")]
            for head in self.source.categories.head_names
        }
        with self.strategy.scope():
            optimizer = make_optimizer(cfg.optimizer, self.schedule)
            self.model.compile(
                optimizer=optimizer,
                loss=self.losses,
                loss_weights=self.loss_weights,
                metrics=metrics,
                jit_compile=cfg.train.jit_compile,
            )
            self.model.optimizer.build(self.model.trainable_variables)
            self.model.optimizer.iterations.assign(self.state.global_step)
        self.phase = phase

    def _save(self, name: str, with_optimizer: bool = True) -> None:
        if self.chief:
            save_checkpoint(
                self.run.run_dir,
                name,
                self.model,
                self.model.optimizer if with_optimizer else None,
                self.state,
            )

    def _step_callback(self, skipped: int):
        import keras

        every = self.config.train.checkpoint_every

        def on_batch_end(batch, logs=None):
            self.state.step_in_epoch = skipped + batch + 1
            self.state.global_step += 1
            if (
                every
                and self.state.global_step % every == 0
                and self.state.step_in_epoch < self.steps
            ):
                self._save(LATEST)

        return keras.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)

    def restore(self, checkpoint) -> None:
        """Load a checkpoint's weights and optimizer state into the model."""
        where = str(self.run.run_dir / CHECKPOINTS / LATEST)
        restore_weights(self.model, checkpoint.weights, where)
        self._compile(self._phase_of(self.state.epoch))
        if checkpoint.optimizer is not None:
            with self.strategy.scope():
                restore_optimizer(self.model.optimizer, checkpoint.optimizer, where)

    def _phase_of(self, epoch: int) -> str:
        return "frozen" if epoch < self.config.train.freeze_backbone_epochs else "full"

    def fit(self) -> TrainState:
        """Run the remaining epochs; return the final state."""
        from furrytag_cli.training.progress import TrainProgress

        if self.run.checkpoint is not None:
            self.restore(self.run.checkpoint)
        progress = TrainProgress(self.steps, live=self.verbose == 1) if self.verbose else None
        if progress is None:
            return self._epochs([], self.note)
        with progress:
            return self._epochs([progress], progress.note)

    def _epochs(self, shown: list, note: Note) -> TrainState:
        """The epoch loop; ``shown`` are progress callbacks, ``note`` prints lines for people."""
        import keras

        cfg, state = self.config, self.state
        while state.epoch < cfg.train.epochs and not state.stopped_early:
            epoch = state.epoch
            if self._phase_of(epoch) != self.phase:
                self._compile(self._phase_of(epoch))
            skipped = state.step_in_epoch
            started = time.perf_counter()
            dataset = train_dataset(
                self.source,
                cfg.data.train_split,
                self.spec,
                cfg.augment,
                batch_size=self.global_batch,
                steps=self.steps,
                seed=cfg.train.seed,
                epoch=epoch,
                skip=skipped,
                shuffle_buffer=cfg.data.shuffle_buffer,
            )
            # One epoch a call (each has its own batches); epochs= makes the display right.
            history = self.model.fit(
                dataset,
                epochs=cfg.train.epochs,
                initial_epoch=epoch,
                steps_per_epoch=self.steps - skipped,
                validation_data=self.val,
                validation_steps=self.val_steps,
                shuffle=False,
                callbacks=[
                    keras.callbacks.TerminateOnNaN(),
                    self._step_callback(skipped),
                    *self.callbacks,
                    *shown,
                    _stop_after_epoch(),
                ],
                verbose=0,
            )
            logs = {key: float(values[-1]) for key, values in history.history.items()}
            if (
                not math.isfinite(logs.get("loss", 0.0))
                or len(history.history.get("loss", ())) == 0
            ):
                raise FurrytagError(
                    f"training stopped at step {state.global_step}: the loss became "
                    f"{logs.get('loss', 'NaN')}; lower optimizer.lr or raise optimizer.warmup_epochs"
                    f" (the last good checkpoint is in {self.run.run_dir / CHECKPOINTS})"
                )
            self._end_epoch(epoch, logs, time.perf_counter() - started, note)
        return state

    def _end_epoch(self, epoch: int, logs: dict, seconds: float, note: Note) -> None:
        cfg, state = self.config, self.state
        row = {
            "epoch": epoch + 1,
            "step": state.global_step,
            "learning_rate": float(self.schedule(max(state.global_step - 1, 0))),
            "seconds": round(seconds, 3),
            **logs,
        }
        state.history.append(row)
        state.epoch, state.step_in_epoch = epoch + 1, 0
        monitor = self.monitor
        if _monitor_improved(monitor, logs[monitor], state.best):
            state.best, state.best_epoch, state.wait = logs[monitor], epoch + 1, 0
            self._save(BEST, with_optimizer=False)
        else:
            state.wait += 1
            if cfg.train.early_stopping and state.wait >= cfg.train.early_stopping:
                state.stopped_early = True
                note(f"Early stop: {monitor} has not improved for {state.wait} epochs.")
        self._save(LATEST)
        if self.chief:
            write_logs(self.run.run_dir, state.history)
            self.tensorboard.write(row)

    def export(self) -> Bundle:
        """Write ``RUN_DIR/bundle`` from the best checkpoint (the last one when none is best)."""
        best = load_checkpoint(
            self.run.run_dir, BEST if checkpoint_path(self.run.run_dir, BEST) else LATEST
        )
        provenance = {
            "config": self.config.to_dict(),
            "best_epoch": best.state.best_epoch,
            "monitor": self.monitor,
            "best_value": best.state.best,
            "global_step": self.state.global_step,
            "replicas": self.replicas,
            "mixed_precision": self.mixed,
        }
        return export_bundle(
            self.config,
            self.source,
            best.weights,
            self.run.run_dir,
            batch_size=self.global_batch,
            provenance=provenance,
        )


def train(
    config: TrainConfig | str | Path | None = None,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
    callbacks: Sequence = (),
    verbose: int = 2,
    note: Note = print,
) -> TrainResult:
    """Train per ``config`` (a TrainConfig, a YAML path or a shipped config name) and export.

    ``resume`` continues the run in that folder from its latest checkpoint; ``callbacks``
    are extra Keras callbacks; ``verbose`` shows progress on stderr (0 none, 1 a live bar,
    2 plain lines); ``note`` receives other lines for people.
    """
    tensorflow()
    import keras

    run = prepare_run(config, data=data, out=out, overrides=overrides, resume=resume)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        trainer = Trainer(run, callbacks=callbacks, verbose=verbose, note=note)
        note(
            f"Training {run.config.name} ({run.config.model.backbone} at "
            f"{run.config.model.input_size} px) on {trainer.replicas} replica(s), global batch "
            f"{trainer.global_batch}, {trainer.steps} steps an epoch; run folder {run.run_dir}"
        )
        state = trainer.fit()
        bundle = trainer.export() if trainer.chief else None
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return TrainResult(run_dir=run.run_dir, bundle=bundle, state=state)
