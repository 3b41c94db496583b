"""Converting a bundle to ONNX (tf2onnx), in furrytag's layout: one input ``image``
(N, S, S, 3), preprocessed per the bundle's spec exactly as the other engines take it,
and one output per head, ``rating`` (N, 1) and ``embedding``.

The model is saved as a SavedModel whose serving signature gives those outputs, and
tf2onnx converts that (its loader freezes every variable and captured constant, Keras 3
Normalization statistics included); the result is checked to have that single input and
those outputs before it is returned.
"""

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

from furrytag_cli.core.errors import ExportError
from furrytag_cli.engines.base import named_outputs
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import RATING_HEAD
from furrytag_cli.model.loading import load_keras_model
from furrytag_cli.model.network import EMBEDDING

# ONNX opset of every export: 18 is the first with Resize's antialias (the wd14 layout's
# in-graph resize) and ONNX Runtime has run it since 1.14.
OPSET = 18
INPUT = "image"


def _output_widths(bundle: Bundle) -> dict[str, int]:
    """The width of each scored output of an export: the heads and ``rating`` (the
    ``embedding`` output's width is the backbone's)."""
    widths = {h: len(t) for h, t in bundle.categories.heads.items()}
    widths[RATING_HEAD] = 1
    return widths


def to_onnx(bundle: Bundle):
    """The bundle's model as an ``onnx.ModelProto`` in furrytag's layout."""
    from furrytag_cli.core.tfruntime import tensorflow

    tf = tensorflow()
    try:
        import tf2onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs tf2onnx and onnx: pip install 'furrytag[onnx]'"
        ) from None

    model = load_keras_model(bundle, embeddings=True)
    heads = bundle.categories.head_names
    size = bundle.input_size
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name=INPUT)
    try:
        with _quiet(), tempfile.TemporaryDirectory(prefix="furrytag-onnx-") as tmp:
            # Through a SavedModel, as the lite engine converts: its loader freezes Keras 3
            # variables and captured constants alike (tf2onnx's from_function would keep
            # Normalization statistics as extra graph inputs).
            saved = str(Path(tmp) / "saved")
            _save(tf, bundle, model, heads, spec, saved)
            graph_def, inputs, outputs, _, renames = tf2onnx.tf_loader.from_saved_model(
                saved,
                None,
                None,
                return_initialized_tables=True,
                return_tensors_to_rename=True,
            )
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                input_names=inputs,
                output_names=outputs,
                opset=OPSET,
                tensors_to_rename=renames,
            )
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ExportError(f"cannot convert {bundle.name!r} to ONNX: {lines[-1][:300]}") from exc
    _rename(proto, [i.name for i in proto.graph.input], [INPUT])
    proto.producer_name = "furrytag"
    check_onnx(proto, bundle)
    _check_scores(proto, bundle, model)
    return proto


def _check_scores(proto, bundle: Bundle, model, tolerance: float = 1e-4) -> None:
    """Refuse an export whose outputs differ from the model's on a test batch, saying
    whether the model itself is unstable (its scores move as much when the batch changes
    by one float32 rounding step, which no converted model can reproduce)."""
    import numpy as np
    import onnxruntime

    spec = bundle.preprocess
    pixels = np.random.default_rng(0).integers(0, 256, (2, spec.size, spec.size, 3))
    batch = ((pixels * spec.scale - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)
    heads = (*bundle.categories.head_names, RATING_HEAD)

    def scores(images) -> dict:
        return named_outputs(
            model(images, training=False), bundle.categories.head_names, embeddings=True
        )

    def distance(got: dict, want: dict) -> float:
        return max(float(np.abs(np.asarray(got[h]) - np.asarray(want[h])).max()) for h in heads)

    want = scores(batch)
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    diff = distance(dict(zip(names, session.run(names, {INPUT: batch}))), want)
    if diff <= tolerance:
        return
    own = distance(scores(np.nextafter(batch, np.float32(np.inf))), want)
    if own > tolerance:
        raise ExportError(
            f"the ONNX export of {bundle.name!r} differs from the model by up to {diff:.3g} "
            f"on a test batch, but the model itself is unstable: its own scores move by up to "
            f"{own:.3g} when the batch changes by one float32 rounding step, so no converted "
            "model (ONNX or TFLite) can reproduce them; a trained model's scores do not, so "
            "check that its weights are the trained ones"
        )
    raise ExportError(
        f"the ONNX export of {bundle.name!r} does not reproduce the model: its scores "
        f"differ by up to {diff:.3g} on a test batch, so it was not written; export it "
        "with --format tflite instead"
    )


def _save(tf, bundle: Bundle, model, heads, spec, path: str) -> None:
    """Save the model as a SavedModel whose serving signature gives the named outputs."""
    if bundle.kind == "native":
        model.export(path, format="tf_saved_model", verbose=False, input_signature=[spec])
        return

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[spec])
        def __call__(self, image):
            return named_outputs(self.model(image, training=False), heads, embeddings=True)

    serving = Serving()
    tf.saved_model.save(
        serving, path, signatures={"serving_default": serving.__call__.get_concrete_function()}
    )


def _rename(proto, old: list[str], new: list[str]) -> None:
    """Rename graph inputs or outputs (tf2onnx names them after TensorFlow's tensors)."""
    mapping = dict(zip(old, new))
    graph = proto.graph
    for value in (*graph.input, *graph.output):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def check_onnx(proto, bundle: Bundle) -> None:
    """Fail unless ``proto`` has one input ``image`` (N, S, S, 3) and the bundle's outputs."""
    inputs = [i.name for i in proto.graph.input]
    if inputs != [INPUT]:
        raise ExportError(
            f"the ONNX export of {bundle.name!r} takes inputs {inputs}, not one {INPUT!r}: "
            "some of the model's constants became inputs; it cannot be used as it is"
        )
    shape = _dims(proto.graph.input[0])
    size = bundle.input_size
    if shape[1:] != [size, size, 3]:
        raise ExportError(
            f"the ONNX export of {bundle.name!r} takes images of shape {shape}, "
            f"not (N, {size}, {size}, 3)"
        )
    outputs = {o.name: _dims(o) for o in proto.graph.output}
    expected = _output_widths(bundle)
    if set(outputs) != {*expected, EMBEDDING}:
        raise ExportError(
            f"the ONNX export of {bundle.name!r} has outputs {sorted(outputs)}, expected "
            f"{sorted({*expected, EMBEDDING})}"
        )
    for name, width in expected.items():
        if outputs[name][-1] != width:
            raise ExportError(
                f"the ONNX export of {bundle.name!r} gives {outputs[name][-1]} scores for "
                f"{name!r}; its metadata lists {width}"
            )


def _dims(value_info) -> list:
    """A graph input's or output's shape: ints for fixed sizes, names or None otherwise."""
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in value_info.type.tensor_type.shape.dim
    ]


@contextlib.contextmanager
def _quiet():
    """Hide tf2onnx's progress logging and TensorFlow's deprecation notes unless
    FURRYTAG_DEBUG is set."""
    if os.environ.get("FURRYTAG_DEBUG"):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
