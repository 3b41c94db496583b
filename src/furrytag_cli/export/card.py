"""The model card (``README.md``) of an export folder, ready for the Hugging Face Hub:
metadata front matter, files, preprocessing, outputs, tags, metrics, use and licence."""

import yaml

from furrytag_cli import __version__
from furrytag_cli.export.wd14 import RATING_SCORE_ROW, TAGS_FILE, rating_rows
from furrytag_cli.model.bundle import Bundle

_LIBRARY = {"onnx": "onnx", "tflite": "tflite", "keras": "keras"}
_METRIC_NAMES = {
    "f1": "F1",
    "recall": "recall",
    "precision": "precision",
    "rating_accuracy": "rating accuracy",
}


def model_card(
    bundle: Bundle, *, fmt: str, layout: str, size: int, license: str | None, files: list[str]
) -> str:
    """The card's Markdown text."""
    front = {
        "license": license or "unknown",
        "library_name": _LIBRARY[fmt],
        "pipeline_tag": "image-classification",
        "tags": ["furrytag", "e621", "furry", "multi-label-image-classification"]
        + (["wd14-tagger"] if layout == "wd14" else []),
    }
    sections = [
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---",
        f"# {bundle.name}",
        _summary(bundle, fmt, layout),
        "## Files\n\n" + "\n".join(f"- `{f}`" for f in files),
        _input(bundle, layout, size),
        _outputs(bundle, layout),
        _use(bundle, layout, size),
        _metrics(bundle),
        _tags(bundle),
        _licence(bundle, license),
    ]
    return "\n\n".join(sections) + "\n"


def _summary(bundle: Bundle, fmt: str, layout: str) -> str:
    heads = ", ".join(bundle.categories.head_names)
    where = "the wd14 taggers' layout" if layout == "wd14" else "furrytag's bundle layout"
    return (
        f"An e621-style tagger for furry artwork: a {bundle.backbone} backbone with one "
        f"multi-label head per category ({heads}; {bundle.categories.num_tags} tags) and a "
        f"rating score. Exported by furrytag {__version__} as {fmt.upper()} in {where} from "
        f"`{bundle.model_id}`."
    )


def _input(bundle: Bundle, layout: str, size: int) -> str:
    spec = bundle.preprocess
    if spec.decoder == "legacy":
        steps = "x / 255" + (
            f", then (x − {spec.mean[0]:g}) / {spec.std[0]:g}"
            if spec.mean != (0.0, 0.0, 0.0)
            else ""
        )
    else:
        steps = f"x × {spec.scale:g}, then (x − mean {list(spec.mean)}) / std {list(spec.std)}"
    resize = (
        f"resized to {spec.size}×{spec.size} (bilinear"
        f"{', antialiased' if spec.antialias else ', no antialiasing'})"
    )
    if layout == "wd14":
        return (
            "## Input and preprocessing\n\n"
            f"One input `input`, shape (batch, {size}, {size}, 3): the image padded to a "
            "square with white by the caller, **BGR**, float32 values **0–255**, as the WD14 "
            f"tagger tools prepare it. Inside the graph: BGR → RGB, {resize}"
            f"{'' if size != spec.size else ' (a no-op at this size)'}, {steps}.\n\n"
            "The tools pad a non-square image to a square; `furrytag tag` stretches it to "
            "the model's square instead, so on non-square images the scores differ from "
            "furrytag's (on square images they agree to about 1e-4)."
        )
    return (
        "## Input and preprocessing\n\n"
        f"One input `image`, shape (batch, {spec.size}, {spec.size}, 3), float32, already "
        f"preprocessed: the RGB image (0–255) {resize} (aspect ratio not kept), then {steps}. "
        "`furrytag.yaml` records this; furrytag applies it itself."
    )


def _outputs(bundle: Bundle, layout: str) -> str:
    if layout == "wd14":
        explicit, questionable, safe, _ = rating_rows(bundle)
        lo, hi = bundle.rating.cuts
        return (
            "## Outputs\n\n"
            f"One output `output`, shape (batch, rows): a probability per row of `{TAGS_FILE}`, "
            "in its order. The first four rows are ratings (category 9), then every tag as a "
            "general tag (category 0); there are no character tags.\n\n"
            f"The model has one rating score r, binned at {lo:.3g} and {hi:.3g} into "
            f"{safe} / {questionable} / {explicit}. The rating rows are "
            f"`{explicit}` = 1 − max({hi:.3g} − r, 0), "
            f"`{questionable}` = 1 − max({lo:.3g} − r, 0) − max(r − {hi:.3g}, 0), "
            f"`{safe}` = 1 − max(r − {lo:.3g}, 0), and `{RATING_SCORE_ROW}` = r. The row of "
            "furrytag's label is 1 and the others fall with the distance from their bins, so "
            "the argmax over the four rows (kohya's `--use_rating_tags`) is furrytag's label; "
            f"`{RATING_SCORE_ROW}` never wins it but keeps the raw score."
        )
    heads = ", ".join(f"`{h}` ({len(t)})" for h, t in bundle.categories.heads.items())
    return (
        "## Outputs\n\n"
        f"One sigmoid score vector per head: {heads}, each in the tag order below; `rating` "
        f"(batch, 1), binned at {bundle.rating.cuts[0]:.3g} / {bundle.rating.cuts[1]:.3g} into "
        f"{' / '.join(bundle.rating.labels)}; `embedding`, the pooled feature vector."
    )


def _use(bundle: Bundle, layout: str, size: int) -> str:
    threshold = f"{bundle.threshold:g}"
    if layout == "wd14":
        kohya = (
            ""
            if size == 448
            else f"\n\nkohya's script feeds 448 × 448 only; this export takes {size} × {size}, "
            "so export again with `--size 448` for it."
        )
        return (
            "## Use\n\n"
            "**ComfyUI** (WD14 Tagger node): copy `model.onnx` and `selected_tags.csv` into "
            "`ComfyUI/custom_nodes/ComfyUI-WD14-Tagger/models/` as `NAME.onnx` and `NAME.csv`, "
            f"restart, pick `NAME`; set `threshold` to {threshold} (the node's default is 0.35).\n\n"
            "**kohya sd-scripts**: put this folder at `MODELS/OWNER_REPO/` (the repo id with `/` "
            "replaced by `_`), then\n\n"
            "```bash\n"
            "python finetune/tag_images_by_wd14_tagger.py --onnx --model_dir MODELS "
            f"--repo_id OWNER/REPO --general_threshold {threshold} --batch_size 8 IMAGES/\n"
            f"```{kohya}"
        )
    return (
        "## Use\n\n```bash\n"
        "furrytag tag --model hf://OWNER/REPO IMAGES/        # or --model PATH/TO/THIS/FOLDER\n"
        "```\n\n"
        f"A tag is kept when its score is above its threshold (default {threshold}"
        f"{', tuned per tag in furrytag.yaml' if bundle.thresholds else ''})."
    )


def _metrics(bundle: Bundle) -> str:
    if not bundle.metrics:
        return "## Metrics\n\nNone recorded with this model; measure it with `furrytag evaluate`."
    rows = "\n".join(f"| {_METRIC_NAMES.get(k, k)} | {v} |" for k, v in bundle.metrics.items())
    return f"## Metrics\n\nAs recorded with the model:\n\n| metric | value |\n|---|---|\n{rows}"


def _tags(bundle: Bundle) -> str:
    parts = ["## Tags"]
    for head, tags in bundle.categories.heads.items():
        parts.append(
            f"<details><summary>{head} ({len(tags)})</summary>\n\n{', '.join(tags)}\n\n</details>"
        )
    return "\n\n".join(parts)


def _licence(bundle: Bundle, license: str | None) -> str:
    if license:
        return f"## Licence\n\n`{license}`."
    origin = (
        "The original Furry Image Model project released its models without stating a "
        "licence: ask its author before redistributing them."
        if bundle.kind == "legacy"
        else "Its owner did not state one (`furrytag export --license ID` records it)."
    )
    return f"## Licence\n\nUnknown. {origin}"
