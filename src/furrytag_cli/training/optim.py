"""The optimizer: AdamW (or LAMB) with linear warmup then cosine decay, and global-norm
clipping."""

from furrytag_cli.core.tfruntime import tensorflow
from furrytag_cli.training.config import OptimizerConfig

# Normalisation scales and offsets and biases are not decayed.
_NO_DECAY = ("bias", "gamma", "beta")


def peak_learning_rate(config: OptimizerConfig, global_batch: int) -> float:
    """``lr``, scaled linearly with the global batch when ``lr_reference_batch`` is set."""
    if config.lr_reference_batch:
        return config.lr * global_batch / config.lr_reference_batch
    return config.lr


def learning_rate_schedule(
    config: OptimizerConfig, *, total_steps: int, steps_per_epoch: int, global_batch: int
):
    """Linear warmup from 0 over ``warmup_epochs``, then cosine decay to ``min_lr_ratio``."""
    tensorflow()
    import keras

    peak = peak_learning_rate(config, global_batch)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(total_steps - warmup, 1),
        alpha=config.min_lr_ratio,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(config: OptimizerConfig, schedule):
    """A fresh optimizer following ``schedule`` (one per training phase).

    AdamW by default; LAMB (Adam with a per-layer trust ratio) keeps large global batches
    stable, e.g. on many GPUs or a TPU.
    """
    tensorflow()
    import keras

    kind = keras.optimizers.Lamb if config.name == "lamb" else keras.optimizers.AdamW
    optimizer = kind(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        global_clipnorm=config.clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY))
    return optimizer
