"""The original project's released models: Keras-2 SavedModels with named outputs.

Heads map to outputs by name (``<head>_output``), never by position; each head's tags
are the category file sorted alphabetically (the original's MultiLabelBinarizer sorts).
Whether a model expects normalised inputs is not recorded in the SavedModel, so it comes
from the registry (matched by a folder name on the model's path) or from the caller.
"""

from pathlib import Path

from furrytag_cli.core.errors import BundleError
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import HEADS, CategorySet
from furrytag_cli.model.preprocess import PreprocessSpec
from furrytag_cli.model.signature import serving_input_shapes
from furrytag_cli.store.registry import load_registry

INPUT_NAME = "img_input"
FEATURE_LAYER = "feature_layer"


def legacy_bundle(root: Path, *, normalized: bool | None = None, name: str | None = None) -> Bundle:
    """Describe the SavedModel in ``root`` as a bundle (nothing is loaded yet)."""
    registry = load_registry()
    entry = None
    candidates = [name] if name else [p.name for p in (root, *root.parents)]
    for candidate in candidates:
        if candidate in registry:
            entry = registry.get(candidate)
            break
    if normalized is None:
        if entry is None:
            raise BundleError(
                f"{root} is a SavedModel that is not a known model, and nothing says how it was "
                "trained: pass --normalized if it was trained on (x/255 - 0.5)/0.225 (as the "
                "original project's EfficientNet and ConvNeXt models) or --not-normalized if on "
                "x/255 (as its MobileNet)"
            )
        normalized = entry.normalized
    size = saved_model_input_size(root)
    base = CategorySet.load()
    categories = CategorySet(
        heads={h: tuple(sorted(base.tags(h))) for h in HEADS}, rating=base.rating
    )
    return Bundle(
        path=root,
        kind="legacy",
        name=entry.name if entry else root.name,
        backbone=entry.backbone if entry else "unknown",
        categories=categories,
        preprocess=PreprocessSpec.legacy(size, normalized),
        metrics=dict(entry.metrics) if entry else {},
    )


def saved_model_input_size(root: Path) -> int:
    """Read the square input size from the SavedModel's serving signature."""
    try:
        graphs = serving_input_shapes((root / "saved_model.pb").read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root}/saved_model.pb is not a readable SavedModel: {exc}") from None
    for inputs in graphs:
        dims = inputs.get(INPUT_NAME)
        if (
            dims is not None
            and len(dims) == 4
            and dims[1] == dims[2]
            and dims[1] > 0
            and dims[3] == 3
        ):
            return dims[1]
    raise BundleError(
        f"{root} is not one of the original project's models: its serving signature has no "
        f"input {INPUT_NAME!r} of shape (None, S, S, 3)"
    )


def load_legacy_model(bundle: Bundle, *, embeddings: bool):
    """Load the SavedModel with tf_keras; return a model whose outputs are
    ``[<head>_output for head in bundle heads] + [rating_output] (+ features)``."""
    from furrytag_cli.core.tfruntime import tensorflow

    tensorflow()
    import tf_keras

    try:
        model = tf_keras.models.load_model(str(bundle.path), compile=False)
    except Exception as exc:
        raise BundleError(f"cannot load the SavedModel in {bundle.path}: {exc}") from None
    by_name = dict(zip(model.output_names, model.outputs))
    outputs = []
    for head in (*bundle.categories.head_names, "rating"):
        tensor = by_name.get(f"{head}_output")
        if tensor is None:
            raise BundleError(
                f"{bundle.path}: the SavedModel has no output '{head}_output' "
                f"(its outputs are {sorted(by_name)})"
            )
        width = 1 if head == "rating" else len(bundle.categories.tags(head))
        if int(tensor.shape[-1]) != width:
            raise BundleError(
                f"{bundle.path}: output '{head}_output' has {tensor.shape[-1]} units, but "
                f"furrytag's {head} category lists {width} tags"
            )
        outputs.append(tensor)
    if embeddings:
        try:
            outputs.append(model.get_layer(FEATURE_LAYER).output)
        except ValueError:
            raise BundleError(
                f"{bundle.path}: no layer {FEATURE_LAYER!r} to take embeddings from"
            ) from None
    return tf_keras.Model(model.inputs, outputs)
