"""The ``tf.distribute`` strategy, picked from the environment.

TPU present → TPUStrategy; ``TF_CONFIG`` names a cluster of several tasks →
MultiWorkerMirroredStrategy; several GPUs → MirroredStrategy; else the default strategy.
The choice itself is a pure function of the environment so it can be tested anywhere.
"""

import json
import os
from collections.abc import Callable, Mapping

from furrytag_cli.core.errors import ConfigError

# Variables set on Cloud TPU VMs, Colab and Kaggle when a TPU is attached.
_TPU_VARIABLES = ("TPU_NAME", "TPU_WORKER_ID", "TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR")
_TPU_DEVICE = "/dev/accel0"


def parse_tf_config(environ: Mapping[str, str]) -> dict | None:
    """The ``TF_CONFIG`` of ``environ`` as a dict, or None when unset."""
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}); received {raw[:80]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cluster", {}), dict):
        raise ConfigError(
            'TF_CONFIG must be a JSON object like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}; received {raw[:80]!r}'
        )
    return data


def cluster_size(tf_config: Mapping | None) -> int:
    """How many chief and worker tasks a parsed ``TF_CONFIG`` names."""
    cluster = (tf_config or {}).get("cluster") or {}
    return sum(len(cluster.get(role) or ()) for role in ("chief", "worker"))


def is_chief(tf_config: Mapping | None) -> bool:
    """Whether this task writes checkpoints and the bundle (the chief, or worker 0)."""
    if not tf_config or cluster_size(tf_config) <= 1:
        return True
    task = tf_config.get("task") or {}
    cluster = tf_config.get("cluster") or {}
    if task.get("type") == "chief":
        return True
    return (
        task.get("type") == "worker" and int(task.get("index", 0)) == 0 and not cluster.get("chief")
    )


def tpu_present(environ: Mapping[str, str], exists: Callable[[str], bool] = os.path.exists) -> bool:
    """Whether this machine looks like it has a TPU attached."""
    return any(environ.get(name) for name in _TPU_VARIABLES) or exists(_TPU_DEVICE)


def strategy_kind(
    environ: Mapping[str, str], gpus: int, *, tpu: bool = False, requested: str = "auto"
) -> str:
    """ "tpu", "multi_worker", "mirrored" or "default" for this environment.

    ``requested`` (the config's ``train.strategy``) wins unless it is "auto".
    """
    if requested != "auto":
        return requested
    if tpu:
        return "tpu"
    if cluster_size(parse_tf_config(environ)) > 1:
        return "multi_worker"
    if gpus > 1:
        return "mirrored"
    return "default"


def make_strategy(kind: str):
    """Create the strategy of ``kind``; call before TensorFlow touches any device."""
    from furrytag_cli.core.tfruntime import tensorflow

    tf = tensorflow()
    if kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"no TPU could be reached ({exc}); set train.strategy to default or mirrored"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        # Without GPUs, mirror over the logical CPU devices (tests, CPU-only trials).
        devices = (
            None
            if tf.config.list_logical_devices("GPU")
            else [d.name for d in tf.config.list_logical_devices("CPU")]
        )
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ConfigError(f"unknown strategy {kind!r}")


def select_strategy(requested: str = "auto", environ: Mapping[str, str] | None = None):
    """The strategy for this process: ``requested`` or, for "auto", from the environment."""
    from furrytag_cli.core.tfruntime import tensorflow

    environ = os.environ if environ is None else environ
    tpu = requested == "auto" and tpu_present(environ)
    gpus = len(tensorflow().config.list_physical_devices("GPU"))
    return make_strategy(strategy_kind(environ, gpus, tpu=tpu, requested=requested))
