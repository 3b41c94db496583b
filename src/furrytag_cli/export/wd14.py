"""The wd14 taggers' layout: ``model.onnx`` + ``selected_tags.csv``, as the ComfyUI WD14
node and kohya's ``tag_images_by_wd14_tagger.py`` load them.

Their contract: one input (N, SIZE, SIZE, 3) with a static SIZE, BGR, float 0–255, the
image already padded to a square with white by the caller; one output (N, rows): a
probability per row of the CSV, in its order. The graph built here around furrytag's
export flips BGR to RGB, resizes to the model's size (the bundle's own resize: bilinear,
antialiased unless the bundle says otherwise), scales and normalises as the bundle
declares, runs the model, and lays the scores out in the CSV's order.

Rows: four rating rows first (kohya reads exactly four and takes their argmax), then
every head's tags as general tags (category 0); furrytag has no character tags. The
model has one rating score r, binned at two cuts (lo, hi) into the bundle's three
labels; the rating rows are:

- ``explicit``     1 − max(hi − r, 0)
- ``questionable`` 1 − max(lo − r, 0) − max(r − hi, 0)
- ``safe``         1 − max(r − lo, 0)
- ``rating_score`` r itself

Each label's row is 1 exactly when furrytag gives that label and falls with the score's
distance from its bin, so the argmax is furrytag's label (a score on a cut ties two rows;
the first, the higher label, wins, as furrytag's ``>=`` does), and ``rating_score``
(≤ 1, after the three) never wins an argmax but keeps the raw score.
"""

import csv
import io

import numpy as np

from furrytag_cli.core.errors import ExportError
from furrytag_cli.export.onnx import INPUT, OPSET
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.categories import RATING_HEAD

DEFAULT_SIZE = 448  # kohya's script feeds 448 × 448 and nothing else
WD14_INPUT = "input"
WD14_OUTPUT = "output"
TAGS_FILE = "selected_tags.csv"
RATING_CATEGORY = "9"
GENERAL_CATEGORY = "0"
RATING_SCORE_ROW = "rating_score"


def rating_rows(bundle: Bundle) -> list[str]:
    """The four rating rows' names, in output order."""
    safe, questionable, explicit = bundle.rating.labels
    return [explicit, questionable, safe, RATING_SCORE_ROW]


def tag_rows(bundle: Bundle) -> list[tuple[str, str]]:
    """(name, category) of every output row, in output order."""
    rows = [(name, RATING_CATEGORY) for name in rating_rows(bundle)]
    for tags in bundle.categories.heads.values():
        rows.extend((tag, GENERAL_CATEGORY) for tag in tags)
    return rows


def selected_tags_csv(bundle: Bundle) -> str:
    """The ``selected_tags.csv`` text (``tag_id,name,category,count``; ids are row numbers)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tag_id", "name", "category", "count"])
    for index, (name, category) in enumerate(tag_rows(bundle)):
        writer.writerow([index, name, category, 0])
    return out.getvalue()


def wd14_model(core, bundle: Bundle, size: int = DEFAULT_SIZE):
    """Wrap furrytag's ONNX export ``core`` (see ``export.onnx``) in the wd14 contract."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if size < 32:
        raise ExportError(f"the wd14 input size must be at least 32 px; received {size}")
    spec = bundle.preprocess
    graph = core.graph
    nodes, constants = [], []

    def const(name: str, value, dtype=np.float32) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    x = node(
        "Gather", [WD14_INPUT, const("wd14_bgr_order", [2, 1, 0], np.int64)], "wd14_rgb", axis=3
    )
    if size != spec.size:
        x = node(
            "Resize",
            [x, "", "", const("wd14_size", [spec.size, spec.size], np.int64)],
            "wd14_resized",
            axes=[1, 2],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
            antialias=int(spec.antialias),
        )
    if spec.decoder == "legacy":
        # As the original: x / 255, then (x - mean) / std.
        x = node("Div", [x, const("wd14_255", 255.0)], "wd14_unit")
    else:
        x = node("Mul", [x, const("wd14_scale", spec.scale)], "wd14_scaled")
    x = node("Sub", [x, const("wd14_mean", spec.mean)], "wd14_centred")
    preprocessed = node("Div", [x, const("wd14_std", spec.std)], "wd14_preprocessed")
    before = len(nodes)

    lo, hi = bundle.rating.cuts
    r = RATING_HEAD
    one = const("wd14_one", 1.0)
    below_hi = node("Relu", [node("Sub", [const("wd14_hi", hi), r], "wd14_hi_r")], "wd14_below_hi")
    below_lo = node("Relu", [node("Sub", [const("wd14_lo", lo), r], "wd14_lo_r")], "wd14_below_lo")
    above_hi = node("Relu", [node("Sub", [r, "wd14_hi"], "wd14_r_hi")], "wd14_above_hi")
    above_lo = node("Relu", [node("Sub", [r, "wd14_lo"], "wd14_r_lo")], "wd14_above_lo")
    explicit = node("Sub", [one, below_hi], "wd14_explicit")
    questionable = node(
        "Sub", [node("Sub", [one, below_lo], "wd14_q_lo"), above_hi], "wd14_questionable"
    )
    safe = node("Sub", [one, above_lo], "wd14_safe")
    node(
        "Concat",
        [explicit, questionable, safe, r, *bundle.categories.head_names],
        WD14_OUTPUT,
        axis=1,
    )

    for existing in graph.node:
        existing.input[:] = [preprocessed if name == INPUT else name for name in existing.input]
    width = len(tag_rows(bundle))
    wrapped = helper.make_graph(
        nodes=[*nodes[:before], *graph.node, *nodes[before:]],
        name=f"{bundle.name}-wd14",
        inputs=[
            helper.make_tensor_value_info(WD14_INPUT, TensorProto.FLOAT, ["batch", size, size, 3])
        ],
        outputs=[helper.make_tensor_value_info(WD14_OUTPUT, TensorProto.FLOAT, ["batch", width])],
        initializer=[*constants, *graph.initializer],
    )
    model = helper.make_model(
        wrapped, opset_imports=list(core.opset_import), producer_name="furrytag"
    )
    model.ir_version = core.ir_version
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < OPSET:
        raise ExportError(f"the ONNX export uses opset {opset}; the wd14 layout needs {OPSET}")
    onnx.checker.check_model(model)
    return model
