"""A synthetic e621 export with learnable images — for tests, demos and offline trials.

``write_synthetic(out, posts)`` writes:

- ``export/``: ``posts``, ``tags``, ``tag_aliases`` and ``tag_implications`` in e621's
  exact CSV formats: parent ids, deleted/pending/flagged rows, webm and swf rows,
  multi-line quoted descriptions, duplicate uploads, active and inactive aliases, an
  implication chain and a cycle. Head tags appear directly, through aliases, or only
  through implications, as on e621.
- ``site/``: the images, laid out like e621's file server (``data/ab/cd/<md5>.<ext>``,
  samples of the wider images in ``data/sample/ab/cd/<md5>.jpg``), so that
  ``python -m http.server -d OUT/site PORT`` can stand in for e621.
- ``labels.jsonl``: the labels and rating each post was drawn with.
- ``categories/``: the head tags in use (``--categories`` for build, pack and training).

Every head tag has a motif — a shape per head, a colour per tag, a cell of a grid per tag —
and the rating sets the background colour, so a small model can learn the labels.
"""

import colorsys
import csv
import gzip
import hashlib
import io
import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.model.categories import CategorySet

POSTS_HEADER = (
    "id",
    "uploader_id",
    "created_at",
    "md5",
    "source",
    "rating",
    "image_width",
    "image_height",
    "tag_string",
    "locked_tags",
    "fav_count",
    "file_ext",
    "parent_id",
    "change_seq",
    "approver_id",
    "file_size",
    "comment_count",
    "description",
    "duration",
    "updated_at",
    "is_deleted",
    "is_pending",
    "is_flagged",
    "score",
    "up_score",
    "down_score",
    "is_rating_locked",
    "is_status_locked",
    "is_note_locked",
)
TAGS_HEADER = ("id", "name", "category", "post_count")
RELATION_HEADER = ("id", "antecedent_name", "consequent_name", "created_at", "status")
EXPORT_DATE = "2024-01-01"
NOISE_TAGS = (
    "hi_res",
    "absurd_res",
    "digital_media_(artwork)",
    "solo",
    "simple_background",
    "signature",
    "text",
    "synth_retired_alias",
    "synth_inactive_implication",
)
_BACKGROUNDS = {"s": (168, 200, 232), "q": (232, 212, 140), "e": (226, 136, 136)}
_RATING_NAMES = {"s": "safe", "q": "questionable", "e": "explicit"}
# The first posts are fixed so even tiny exports show every feature.
_FIRST_KINDS = ("normal", "normal", "deleted", "webm", "normal", "pending", "swf", "untagged")
_KIND_ODDS = (
    ("deleted", 0.04),
    ("pending", 0.02),
    ("flagged", 0.01),
    ("webm", 0.03),
    ("swf", 0.01),
    ("untagged", 0.02),
    ("duplicate", 0.01),
)
_DESCRIPTIONS = (
    "",
    "",
    "Commission for a friend.",
    'Multi-line description, with "quotes",\ncommas, and [b]DText[/b].\n\nSecond paragraph.',
)


@dataclass
class SynthReport:
    """What ``write_synthetic`` wrote."""

    out: Path
    posts: int = 0
    images: int = 0
    kinds: Counter = field(default_factory=Counter)


def write_synthetic(
    out: Path,
    posts: int,
    *,
    seed: int = 0,
    tags_per_head: int | None = None,
    categories: CategorySet | None = None,
    images: bool = True,
    min_side: int = 96,
    max_side: int = 160,
    compress: bool = True,
) -> SynthReport:
    """Write a synthetic export of ``posts`` posts (and, with ``images``, their images)."""
    if posts < 1 or (tags_per_head is not None and tags_per_head < 1):
        raise ConfigError(
            f"--posts and --tags-per-head must be positive; received posts={posts}, "
            f"tags_per_head={tags_per_head}"
        )
    if not 16 <= min_side <= max_side:
        raise ConfigError(
            f"image sides must satisfy 16 <= min <= max; received {min_side}, {max_side}"
        )
    categories = categories or CategorySet.load()
    used = {head: tags[:tags_per_head] for head, tags in categories.heads.items()}
    out = Path(out)
    export = out / "export"
    if export.exists() or (out / "site").exists():
        raise DatasetError(
            f"{out} already holds a synthetic export; give another --output or "
            "delete that folder first"
        )
    try:
        export.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {export}: {exc}") from None
    world = _World(used)
    rng = random.Random(seed)
    report = SynthReport(out=out)
    tag_counts: Counter = Counter()
    suffix = ".csv.gz" if compress else ".csv"
    with (
        _csv_file(export / f"posts-{EXPORT_DATE}{suffix}") as posts_csv,
        (out / "labels.jsonl").open("w", encoding="utf-8") as labels_file,
    ):
        posts_csv.writerow(POSTS_HEADER)
        history: list[dict] = []
        for i in range(posts):
            row, labels = _post(
                i, rng, world, history, out / "site" if images else None, (min_side, max_side)
            )
            posts_csv.writerow([row[c] for c in POSTS_HEADER])
            labels_file.write(
                json.dumps(
                    {
                        "id": row["id"],
                        "kind": row["kind"],
                        "rating": _RATING_NAMES[row["rating"]],
                        "tags": labels,
                    }
                )
                + "\n"
            )
            tag_counts.update(row["tag_string"].split())
            report.kinds[row["kind"]] += 1
            report.images += row["stored"]
            history.append(row)
            del history[:-50]
    report.posts = posts
    _write_relations(export / f"tag_aliases-{EXPORT_DATE}{suffix}", world.aliases())
    _write_relations(export / f"tag_implications-{EXPORT_DATE}{suffix}", world.implications())
    with _csv_file(export / f"tags-{EXPORT_DATE}{suffix}") as tags_csv:
        tags_csv.writerow(TAGS_HEADER)
        for number, name in enumerate(sorted(tag_counts), start=1):
            tags_csv.writerow([number, name, world.category_of(name), tag_counts[name]])
    folder = out / "categories"
    folder.mkdir(exist_ok=True)
    for head, tags in used.items():
        (folder / f"{head}.txt").write_text("".join(t + "\n" for t in tags), encoding="utf-8")
    return report


class _World:
    """The synthetic tag rules: which raw tags express a head tag, and the motifs."""

    def __init__(self, used: dict[str, tuple[str, ...]]) -> None:
        self.heads = list(used)
        self.tags = [(head, tag) for head in self.heads for tag in used[head]]
        self.chain_target = used[self.heads[-1]][0]
        self.cycle_target = used[self.heads[0]][0]
        self.species = set(used.get("species", ()))
        self.grid = math.ceil(math.sqrt(len(self.tags)))

    def express(self, tag: str, rng: random.Random) -> str:
        """A raw tag whose alias/implication closure yields exactly ``tag`` among head tags."""
        if tag == self.chain_target and rng.random() < 0.5:
            return "synth_chain_c"
        if tag == self.cycle_target and rng.random() < 0.5:
            return "synth_cycle_a"
        r = rng.random()
        return tag if r < 0.6 else f"synth_alias_{tag}" if r < 0.8 else f"synth_kind_of_{tag}"

    def aliases(self) -> list[tuple[str, str, str]]:
        rules = [(f"synth_alias_{tag}", tag, "active") for _, tag in self.tags]
        some = self.tags[-1][1]
        return rules + [
            ("synth_retired_alias", some, "retired"),
            ("synth_deleted_alias", some, "deleted"),
        ]

    def implications(self) -> list[tuple[str, str, str]]:
        rules = [(f"synth_kind_of_{tag}", tag, "active") for _, tag in self.tags]
        rules += [
            ("synth_chain_c", "synth_chain_b", "active"),
            ("synth_chain_b", "synth_chain_a", "active"),
            ("synth_chain_a", self.chain_target, "active"),
        ]
        rules += [
            ("synth_cycle_a", "synth_cycle_b", "active"),
            ("synth_cycle_b", "synth_cycle_c", "active"),
            ("synth_cycle_c", "synth_cycle_a", "active"),
            ("synth_cycle_b", self.cycle_target, "active"),
        ]
        return rules + [("synth_inactive_implication", self.tags[-1][1], "deleted")]

    def category_of(self, name: str) -> int:
        return 5 if name in self.species else 7 if name.endswith("_res") else 0

    def draw(self, labels: list[int], rating: str, size: tuple[int, int], rng: random.Random):
        """A PIL image showing the motif of each label index on the rating's background."""
        from PIL import Image, ImageDraw

        w, h = size
        base = _BACKGROUNDS[rating]
        image = Image.new("RGB", size, tuple(c + rng.randint(-14, 14) for c in base))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            gray = rng.randint(90, 170)
            draw.line([(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(2)], fill=(gray,) * 3)
        cell_w, cell_h = w / self.grid, h / self.grid
        for index in labels:
            head, _ = self.tags[index]
            row, col = divmod(index, self.grid)
            cx = (col + 0.5 + rng.uniform(-0.1, 0.1)) * cell_w
            cy = (row + 0.5 + rng.uniform(-0.1, 0.1)) * cell_h
            r = 0.38 * min(cell_w, cell_h) * rng.uniform(0.85, 1.05)
            hue = (index * 0.618034) % 1.0
            color = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.6))
            _shape(draw, self.heads.index(head) % 5, cx, cy, r, color)
        return image


def _shape(draw, kind: int, cx: float, cy: float, r: float, color: tuple) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == 0:
        draw.ellipse(box, fill=color, outline=(0, 0, 0))
    elif kind == 1:
        draw.rectangle(box, fill=color, outline=(0, 0, 0))
    elif kind == 2:
        draw.polygon(
            [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color, outline=(0, 0, 0)
        )
    elif kind == 3:
        draw.polygon(
            [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color, outline=(0, 0, 0)
        )
    else:
        t = r / 3
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=color)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=color)


def _post(
    i: int,
    rng: random.Random,
    world: _World,
    history: list[dict],
    site: Path | None,
    sides: tuple[int, int],
) -> tuple[dict, dict]:
    """One posts row (plus bookkeeping keys) and the head labels it was drawn with."""
    kind = _FIRST_KINDS[i] if i < len(_FIRST_KINDS) else _kind(rng)
    previous = [p for p in history if p["kind"] == "normal"]
    if kind == "duplicate" and not previous:
        kind = "normal"
    created = datetime(2020, 1, 1) + timedelta(minutes=37 * i, microseconds=rng.randrange(10**6))
    rating = rng.choices("sqe", weights=(2, 1, 1))[0]
    labels: list[int] = []
    if kind in ("normal", "deleted", "pending", "flagged", "webm", "swf"):
        labels = sorted(rng.sample(range(len(world.tags)), min(len(world.tags), rng.randint(1, 4))))
    tags = [world.express(world.tags[j][1], rng) for j in labels]
    tags += rng.sample(NOISE_TAGS, rng.randint(1, 3))
    ext = {"webm": "webm", "swf": "swf"}.get(kind, "jpg" if i % 3 == 2 else "png")
    w, h = rng.randint(*sides), rng.randint(*sides)
    md5, size, stored = f"{rng.getrandbits(128):032x}", rng.randint(10**4, 10**6), 0
    if kind == "duplicate":
        original = rng.choice(previous)
        labels, rating, ext = original["labels"], original["rating"], original["file_ext"]
        tags, md5, size = original["tag_string"].split(), original["md5"], original["file_size"]
        w, h = original["image_width"], original["image_height"]
    elif site is not None and ext in ("png", "jpg") and kind != "deleted":
        image = world.draw(labels, rating, (w, h), rng)
        data = _encode(image, ext)
        md5, size, stored = hashlib.md5(data).hexdigest(), len(data), 1
        _store(site / "data" / md5[0:2] / md5[2:4] / f"{md5}.{ext}", data)
        if w >= 140:
            _store(
                site / "data" / "sample" / md5[0:2] / md5[2:4] / f"{md5}.jpg", _encode(image, "jpg")
            )
    parents = [p["id"] for p in history if p["kind"] != "duplicate"]
    up, down = rng.randint(0, 60), rng.randint(0, 10)
    stamp = "%Y-%m-%d %H:%M:%S" if i % 7 == 0 else "%Y-%m-%d %H:%M:%S.%f"
    row = {
        "id": 1000 + 2 * i,
        "uploader_id": rng.randint(1, 900000),
        "created_at": created.strftime(stamp),
        "md5": md5,
        "source": rng.choice(("", f"https://example.com/art/{i}\nhttps://example.net/{i}")),
        "rating": rating,
        "image_width": w,
        "image_height": h,
        "tag_string": " ".join(sorted(set(tags))),
        "locked_tags": "",
        "fav_count": rng.randint(0, 400),
        "file_ext": ext,
        "parent_id": rng.choice(parents) if parents and rng.random() < 0.2 else "",
        "change_seq": 5000 + 3 * i,
        "approver_id": rng.choice(("", str(rng.randint(1, 999)))),
        "file_size": size,
        "comment_count": rng.randint(0, 30),
        "description": rng.choice(_DESCRIPTIONS),
        "duration": f"{rng.uniform(2, 60):.3f}" if ext == "webm" else "",
        "updated_at": (created + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "is_deleted": "t" if kind == "deleted" else "f",
        "is_pending": "t" if kind == "pending" else "f",
        "is_flagged": "t" if kind == "flagged" else "f",
        "score": up - down,
        "up_score": up,
        "down_score": -down,
        "is_rating_locked": "f",
        "is_status_locked": "f",
        "is_note_locked": "f",
        "kind": kind,
        "labels": labels,
        "stored": stored,
    }
    per_head = {head: [] for head in world.heads}
    for j in labels:
        head, tag = world.tags[j]
        per_head[head].append(tag)
    return row, per_head


def _kind(rng: random.Random) -> str:
    r = rng.random()
    for kind, odds in _KIND_ODDS:
        if r < odds:
            return kind
        r -= odds
    return "normal"


def _encode(image, ext: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG" if ext == "png" else "JPEG", quality=90)
    return buffer.getvalue()


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextmanager
def _csv_file(path: Path) -> Iterator:
    """A csv.writer over a plain or gzipped file; gzip without a timestamp, reproducibly."""
    with path.open("wb") as raw:
        binary = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else raw
        with binary, io.TextIOWrapper(binary, encoding="utf-8", newline="") as text:
            yield csv.writer(text, lineterminator="\n")


def _write_relations(path: Path, rules: list[tuple[str, str, str]]) -> None:
    with _csv_file(path) as writer:
        writer.writerow(RELATION_HEADER)
        for number, (antecedent, consequent, status) in enumerate(rules, start=1):
            writer.writerow(
                [
                    number,
                    antecedent,
                    consequent,
                    f"2019-06-{1 + number % 28:02d} 10:00:00.5",
                    status,
                ]
            )
