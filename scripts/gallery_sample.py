"""Sample tagging results for the gallery scripts: drawn images and ``tag --all-scores`` lines.

Each image is a colour gradient with a few ellipses; its results give every tag of the
shipped vocabulary a score, a handful of tags per head above 0.5 (kept), and a rating.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from furrytag_cli.model.categories import CategorySet

RATINGS = ("safe", "questionable", "explicit")


def draw(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(40, 255, 3), rng.integers(40, 255, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    pixels = (a * (1 - ramp) + b * ramp).astype(np.uint8).repeat(w, axis=1)
    image = Image.fromarray(pixels)
    pen = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(h // 10, h // 3))
        pen.ellipse(
            (x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
        )
    return image


def write_sample(
    folder: Path,
    count: int,
    *,
    distinct: int | None = None,
    size: tuple[int, int] = (640, 480),
    all_scores: bool = True,
) -> Path:
    """``count`` results in ``folder/results.jsonl`` over ``distinct`` image files (all by
    default); with ``all_scores`` every tag's score, as ``tag --all-scores`` writes."""
    categories = CategorySet.load()
    distinct = min(distinct or count, count)
    images = folder / "art"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(distinct):
        target = images / f"{i:06d}.jpg"
        if not target.exists():
            draw(i, size).save(target, quality=85)
    rng = np.random.default_rng(0)
    with open(folder / "results.jsonl", "w", encoding="utf-8") as out:
        for i in range(count):
            scores, kept = {}, {}
            for head, tags in categories.heads.items():
                values = np.round(rng.random(len(tags)) ** 6 * 0.6, 4)
                chosen = rng.choice(len(tags), size=int(rng.integers(0, 4)), replace=False)
                values[chosen] = np.round(0.5 + rng.random(len(chosen)) * 0.5, 4)
                scores[head] = dict(zip(tags, map(float, values)))
                order = sorted(chosen, key=lambda k: -values[k])
                kept[head] = {tags[k]: float(values[k]) for k in order}
            rating_score = round(float(rng.random()), 4)
            record = {
                "path": f"art/{i % distinct:06d}.jpg",
                "tags": kept,
                "rating": RATINGS[min(2, int(rating_score * 3))],
                "rating_score": rating_score,
                **({"scores": scores} if all_scores else {}),
                "file": {"size": 0, "mtime": 0.0},
                "model": "efficientnet_v2_b3_300_2c@sample",
            }
            out.write(json.dumps(record) + "\n")
    return folder / "results.jsonl"
