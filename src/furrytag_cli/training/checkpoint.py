"""Training checkpoints: model weights, optimizer state and the loop's position.

``RUN_DIR/checkpoints/latest/`` is rewritten every ``checkpoint_every`` steps and at each
epoch end; ``RUN_DIR/checkpoints/best/`` holds the weights of the best epoch by the
monitored validation metric. A checkpoint folder is written beside its final name and
renamed into place, so a crash leaves the previous one whole.
"""

import json
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import ConfigError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
_WEIGHTS = "weights.npz"
_OPTIMIZER = "optimizer.npz"
_STATE = "state.json"


@dataclass
class TrainState:
    """Where the training loop is: ``step_in_epoch`` batches of ``epoch`` are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class Checkpoint:
    state: TrainState
    weights: list[np.ndarray]
    optimizer: list[np.ndarray] | None


def _arrays(variables) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in variables]


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    with path.open("wb") as handle:
        np.savez(handle, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def save_checkpoint(run_dir: Path, name: str, model, optimizer, state: TrainState) -> Path:
    """Write ``model``'s weights, ``optimizer``'s variables (if given) and ``state``."""
    root = Path(run_dir) / CHECKPOINTS
    target, tmp, old = root / name, root / f"{name}.tmp", root / f"{name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_arrays(tmp / _WEIGHTS, _arrays(model.weights))
    if optimizer is not None:
        _save_arrays(tmp / _OPTIMIZER, _arrays(optimizer.variables))
    (tmp / _STATE).write_text(json.dumps(asdict(state), indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def checkpoint_path(run_dir: Path, name: str) -> Path | None:
    """The folder of checkpoint ``name``, or of its previous copy if a crash cut a rename."""
    root = Path(run_dir) / CHECKPOINTS
    for folder in (root / name, root / f"{name}.old"):
        if (folder / _STATE).is_file():
            return folder
    return None


def load_checkpoint(run_dir: Path, name: str = LATEST) -> Checkpoint:
    folder = checkpoint_path(run_dir, name)
    if folder is None:
        raise ConfigError(
            f"no {name} checkpoint in {Path(run_dir) / CHECKPOINTS}: the run saved none yet"
        )
    try:
        state = TrainState(**json.loads((folder / _STATE).read_text(encoding="utf-8")))
        optimizer = _load_arrays(folder / _OPTIMIZER) if (folder / _OPTIMIZER).is_file() else None
        weights = _load_arrays(folder / _WEIGHTS)
    except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"the {name} checkpoint in {folder} is damaged ({type(exc).__name__}: {exc}); "
            "start a new run with another --output, or delete that folder and --resume starts "
            "this run from the beginning"
        ) from None
    return Checkpoint(state=state, weights=weights, optimizer=optimizer)


def restore_weights(model, arrays: list[np.ndarray], where: str) -> None:
    _assign(model.weights, arrays, where, "model")


def restore_optimizer(optimizer, arrays: list[np.ndarray], where: str) -> None:
    _assign(optimizer.variables, arrays, where, "optimizer")


def _assign(variables, arrays: list[np.ndarray], where: str, what: str) -> None:
    variables = list(variables)
    shapes = [tuple(v.shape) for v in variables]
    saved = [a.shape for a in arrays]
    if shapes != saved:
        raise ConfigError(
            f"the {what} state in {where} does not fit the model built from the config "
            f"({len(saved)} saved arrays, {len(shapes)} expected); resume with the run's own "
            "config.yaml and do not change model settings"
        )
    for variable, value in zip(variables, arrays):
        variable.assign(value)
