"""Opening models: any path (a bundle folder, a .zip of one, a legacy SavedModel) → a
``Bundle``; a ``Bundle`` → its Keras model."""

import shutil
import zipfile
from pathlib import Path

from furrytag_cli.core.errors import BundleError
from furrytag_cli.model.bundle import (
    METADATA,
    ONNX_WEIGHTS,
    WEIGHTS,
    Bundle,
    check_model_matches,
    read_native,
)
from furrytag_cli.model.legacy import legacy_bundle
from furrytag_cli.model.network import EMBEDDING


def load_bundle(path: Path, *, normalized: bool | None = None, home: Path | None = None) -> Bundle:
    """Read a bundle's metadata from a folder or .zip (weights are loaded by the engine).

    For a legacy SavedModel, ``normalized`` says whether it expects normalised inputs;
    when None it is looked up in the registry by the folder names on the path. A .zip is
    unpacked once into the cache home ``home`` (the ``--cache-dir`` value).
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(
            f"model not found: {path} (give a bundle folder, a .zip, or a model name)"
        )
    if path.is_file() and zipfile.is_zipfile(path):
        return _load_zipped(path, normalized, home)
    if path.is_file():
        raise BundleError(f"{path} is not a bundle folder or .zip of one")
    return _load_folder(path, normalized)


def _load_folder(path: Path, normalized: bool | None) -> Bundle:
    root = locate_bundle(path)
    if (root / METADATA).is_file():
        return read_native(root)
    return legacy_bundle(root, normalized=normalized)


def _load_zipped(path: Path, normalized: bool | None, home: Path | None) -> Bundle:
    """A zipped bundle, unpacked once into the cache; what does not hold a usable bundle
    is removed from the cache again."""
    target, fresh = _unpack_zip(path, home)
    try:
        return _load_folder(target, normalized)
    except BaseException as exc:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, BundleError) and str(target) in str(exc):
            raise BundleError(str(exc).replace(str(target), str(path))) from None
        raise


def locate_bundle(path: Path) -> Path:
    """The folder under ``path`` (any depth) holding furrytag.yaml or saved_model.pb."""
    path = Path(path)
    for marker in (METADATA, "saved_model.pb"):
        if (path / marker).is_file():
            return path
    for marker in (METADATA, "saved_model.pb"):
        found = sorted(path.rglob(marker), key=lambda p: (len(p.parts), str(p)))
        if found:
            return found[0].parent
    raise BundleError(
        f"no model found in {path}: expected a furrytag bundle ({METADATA} + {WEIGHTS} or "
        f"{ONNX_WEIGHTS}) "
        "or a TensorFlow SavedModel (saved_model.pb) inside"
    )


def _unpack_zip(path: Path, home: Path | None) -> tuple[Path, bool]:
    """Unpack a zipped bundle once into the cache; return the folder and whether this call
    unpacked it."""
    from furrytag_cli.store.archive import extract
    from furrytag_cli.store.layout import cache_folder, unpacked_zip_dir

    target = unpacked_zip_dir(path, home)
    if target.is_dir():
        return target, False
    cache_folder(target.parent, home)
    extract(path, target)
    return target, True


def load_keras_model(bundle: Bundle, *, embeddings: bool):
    """The bundle's Keras model (tf_keras for legacy SavedModels); with ``embeddings``
    it also outputs the feature vector."""
    if bundle.kind == "legacy":
        from furrytag_cli.model.legacy import load_legacy_model

        return load_legacy_model(bundle, embeddings=embeddings)
    return _load_native_model(bundle, embeddings=embeddings)


def _load_native_model(bundle: Bundle, *, embeddings: bool):
    import keras

    if bundle.weights != WEIGHTS:
        engine = "onnx" if bundle.weights == ONNX_WEIGHTS else "lite"
        raise BundleError(
            f"{bundle.path} holds {bundle.weights}, not a Keras model ({WEIGHTS}); run it with "
            f"--engine {engine} (or --engine auto)"
        )

    try:
        model = keras.saving.load_model(bundle.path / WEIGHTS, compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise BundleError(
                f"{bundle.path / WEIGHTS} contains code (e.g. a Lambda layer) that furrytag will not "
                "run: Keras safe mode refused it. Only load models from sources you trust; "
                "furrytag does not turn safe mode off"
            ) from None
        raise BundleError(f"cannot load {bundle.path / WEIGHTS}: {exc}") from None
    except Exception as exc:
        raise BundleError(f"cannot load {bundle.path / WEIGHTS}: {exc}") from None
    check_model_matches(bundle, model)
    if not embeddings:
        return model
    outputs = dict(model.output)
    try:
        outputs[EMBEDDING] = model.get_layer(EMBEDDING).output
    except ValueError:
        raise BundleError(f"{bundle.path}: the model has no 'embedding' layer") from None
    return keras.Model(model.inputs, outputs)
