"""The wd14 tools' loading paths, restated from their documented behaviour (see the
project's notes on the wd14 model contract): how each finds the files, prepares an
image, runs the model and reads tags from its output."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)


def _rows(csv_path: Path) -> list[list[str]]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)  # tag_id,name,category,count
        return list(reader)


def comfyui_tags(models_dir: Path, name: str, image: Image.Image, threshold: float = 0.35):
    """The ComfyUI WD14 node: NAME.onnx + NAME.csv in its models folder; the size from the
    first input's shape[1]; LANCZOS to that long side, centred on white; float 0-255, BGR;
    first output of one image; general rows from the first '0' to the first '4' row,
    kept when prob > threshold. Returns the general tags, sorted."""
    import onnxruntime

    listed = {p.stem for p in models_dir.glob("*.onnx")} & {
        p.stem for p in models_dir.glob("*.csv")
    }
    assert name in listed
    session = onnxruntime.InferenceSession(
        str(models_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"]
    )
    first = session.get_inputs()[0]
    height = first.shape[1]
    ratio = height / max(image.size)
    new_size = tuple(int(side * ratio) for side in image.size)
    image = image.convert("RGB").resize(new_size, Image.LANCZOS)
    square = Image.new("RGB", (height, height), WHITE)
    square.paste(image, ((height - new_size[0]) // 2, (height - new_size[1]) // 2))
    x = np.array(square).astype(np.float32)[:, :, ::-1]
    probs = session.run(None, {first.name: np.expand_dims(x, 0)})[0][0]
    rows = _rows(models_dir / f"{name}.csv")
    categories = [row[2] for row in rows]
    start = categories.index("0")
    stop = categories.index("4") if "4" in categories else len(rows)
    return sorted(rows[i][1] for i in range(start, stop) if probs[i] > threshold)


def kohya_tags(model_dir: Path, repo_id: str, images: list[Image.Image], threshold: float):
    """kohya's tag_images_by_wd14_tagger.py --onnx: <model_dir>/<repo id, / as _>/ with
    model.onnx and selected_tags.csv; 448 x 448 input; alpha on white, RGB -> BGR, padded
    to a square with white, resized to 448 (area when shrinking — Pillow's box filter
    stands in for OpenCV's — LANCZOS when enlarging), float32 0-255; first output; the
    first 4 rows are ratings (argmax), the rest general tags kept when prob >= threshold.
    Returns (rating, sorted general tags) per image."""
    import onnxruntime

    folder = model_dir / repo_id.replace("/", "_")
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    first = session.get_inputs()[0]
    assert first.shape[1:] == [448, 448, 3]
    batch = []
    for image in images:
        if image.mode in ("RGBA", "LA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
            canvas.alpha_composite(rgba)
            image = canvas
        array = np.array(image.convert("RGB"))[:, :, ::-1]
        h, w = array.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        array = np.pad(
            array, ((top, side - h - top), (left, side - w - left), (0, 0)), constant_values=255
        )
        square = Image.fromarray(np.ascontiguousarray(array))
        if side != 448:
            square = square.resize((448, 448), Image.BOX if side > 448 else Image.LANCZOS)
        batch.append(np.array(square).astype(np.float32))
    probs = session.run(None, {first.name: np.stack(batch)})[0]
    rows = _rows(folder / "selected_tags.csv")
    assert [row[2] for row in rows[:4]] == ["9"] * 4 and "9" not in {r[2] for r in rows[4:]}
    results = []
    for p in probs:
        rating = rows[int(np.argmax(p[:4]))][1]
        general = sorted(
            rows[i][1] for i in range(4, len(rows)) if rows[i][2] == "0" and p[i] >= threshold
        )
        results.append((rating, general))
    return results
