"""Scoring a model on labelled images: a packed dataset split, or a user's labels file.

Both paths stream batches through the model and keep only scores and labels (N × 228
floats), never images. The result is a ``ScoreSet``, which ``metrics`` turns into
numbers and ``thresholds`` tunes on. A labels file is CSV (``path,tags[,rating]``
header) or JSONL (``{"path", "tags", "rating"}`` per line); paths are relative to the
file; tags are e621 names (spaces or underscores), separated by commas or whitespace
(a list in JSONL); rating is s/q/e or safe/questionable/explicit.
"""

import csv
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.tuning import best_f1_threshold, break_even_threshold, tune_thresholds
from furrytag_cli.model.categories import RATING_LABELS, CategorySet
from furrytag_cli.model.thresholds import Thresholds

OnBatch = Callable[[list], None]
_RATING_TARGETS = {"s": 0.0, "q": 0.5, "e": 1.0}


@dataclass(frozen=True)
class LabelledImages:
    """Images with known tags: per head an (N, T) 0/1 matrix; rating targets or None."""

    source: Path
    paths: tuple[Path, ...]
    labels: dict[str, np.ndarray]
    rating: np.ndarray | None
    unknown_tags: Counter


def read_labels(path: Path, categories: CategorySet) -> LabelledImages:
    """Read a CSV or JSONL labels file (see the module docstring for the format)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc}") from None
    rows = (
        _jsonl_rows(text, path)
        if path.suffix.lower() in (".jsonl", ".ndjson")
        else _csv_rows(text, path)
    )
    if not rows:
        raise DatasetError(f"labels file {path} lists no images; give one row per image")
    return labelled_images(path, [(path.parent / p, t, r, n) for p, t, r, n in rows], categories)


def labelled_images(
    source: Path,
    rows: Sequence[tuple[Path, Sequence[str], float | None, object]],
    categories: CategorySet,
) -> LabelledImages:
    """Label matrices from ``(image, tag names, rating or None, where)`` rows; tags the
    model does not have are counted in ``unknown_tags``."""
    path = source
    index = categories.index()
    labels = {
        h: np.zeros((len(rows), len(categories.tags(h))), dtype=bool) for h in categories.head_names
    }
    unknown: Counter = Counter()
    with_rating = [r for _, _, r, _ in rows if r is not None]
    if with_rating and len(with_rating) != len(rows):
        line = next(n for _, _, r, n in rows if r is None)
        raise DatasetError(
            f"{path}:{line}: no rating, but other rows have one; give every row a rating "
            "(s, q or e) or none"
        )
    for i, (_, tags, _, _) in enumerate(rows):
        for tag in tags:
            if tag in index:
                head, position = index[tag]
                labels[head][i, position] = True
            else:
                unknown[tag] += 1
    paths = tuple(p for p, _, _, _ in rows)
    rating = np.array([r for _, _, r, _ in rows], dtype=np.float64) if with_rating else None
    return LabelledImages(path, paths, labels, rating, unknown)


def _normalize_tags(value, where: str) -> list[str]:
    if isinstance(value, str):
        parts = value.split(",") if "," in value else value.split()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise DatasetError(
            f"{where}: tags must be a string or a list of strings; received {value!r}"
        )
    tags = (p.strip().replace("\\(", "(").replace("\\)", ")") for p in parts)
    return [t.lower().replace(" ", "_") for t in tags if t]


def _rating(value, where: str) -> float | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    key = text[:1] if text in RATING_LABELS or text in _RATING_TARGETS else None
    if key is None:
        raise DatasetError(
            f"{where}: rating must be s, q, e (or safe, questionable, explicit); received {value!r}"
        )
    return _RATING_TARGETS[key]


def _csv_rows(text: str, path: Path) -> list[tuple[str, list[str], float | None, int]]:
    reader = csv.DictReader(text.splitlines())
    fields = reader.fieldnames or []
    if "path" not in fields or "tags" not in fields:
        raise DatasetError(
            f"labels file {path} needs a header with columns path and tags (and optionally "
            f"rating); found {fields or 'no header'}"
        )
    rows = []
    for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        if not row.get("path"):
            raise DatasetError(f"{where}: empty path")
        rows.append(
            (
                row["path"],
                _normalize_tags(row.get("tags") or "", where),
                _rating(row.get("rating"), where),
                line,
            )
        )
    return rows


def _jsonl_rows(text: str, path: Path) -> list[tuple[str, list[str], float | None, int]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{line}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
            raise DatasetError(f'{where}: each line needs an object with a "path" string')
        rows.append(
            (
                row["path"],
                _normalize_tags(row.get("tags", []), where),
                _rating(row.get("rating"), where),
                line,
            )
        )
    return rows


def score_labelled(
    tagger, labelled: LabelledImages, *, on_batch: OnBatch | None = None
) -> tuple[ScoreSet, list[tuple[Path, str]]]:
    """Score the images of a labels file; unreadable images are left out and returned."""
    heads = tagger.bundle.categories.head_names
    kept: list[int] = []
    parts: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    rating_parts: list[np.ndarray] = []
    failed = []
    for batch in tagger.score_batches(labelled.paths):
        for outcome in batch:
            if not outcome.ok:
                failed.append((outcome.path, outcome.reason))
                continue
            kept.append(outcome.index)
            for head in heads:
                parts[head].append(outcome.scores.heads[head][outcome.row])
            rating_parts.append(outcome.scores.rating[outcome.row])
        if on_batch is not None:
            on_batch(batch)
    if not kept:
        raise DatasetError(
            f"none of the {len(labelled.paths)} images in {labelled.source} could be read; "
            "check the paths (they are relative to the labels file)"
        )
    rows = np.array(kept)
    return ScoreSet(
        tags={h: tagger.bundle.categories.tags(h) for h in heads},
        y_true={h: labelled.labels[h][rows] for h in heads},
        scores={h: np.stack(parts[h]) for h in heads},
        rating_true=labelled.rating[rows] if labelled.rating is not None else None,
        rating_score=np.array(rating_parts) if labelled.rating is not None else None,
        meta={"model": tagger.model_id, "data": str(labelled.source)},
    ), failed


def score_split(
    tagger, data_dir: Path, split: str, *, on_batch: Callable[[int], None] | None = None
) -> ScoreSet:
    """Score one split of a packed dataset with the bundle's own preprocessing."""
    from furrytag_cli.core.tfruntime import tensorflow
    from furrytag_cli.dataset.records import read_split
    from furrytag_cli.model.preprocess import preprocess_image

    tf = tensorflow()
    categories = tagger.bundle.categories
    spec = tagger.bundle.preprocess
    dataset = (
        read_split(data_dir, split, categories)
        .map(
            lambda image, labels, rating: (preprocess_image(image, spec), labels, rating),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(tagger.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    heads = categories.head_names
    y_parts: dict[str, list] = {h: [] for h in heads}
    s_parts: dict[str, list] = {h: [] for h in heads}
    r_true, r_score = [], []
    for images, labels, rating in dataset:
        scores = tagger.engine(images)
        for head in heads:
            y_parts[head].append(labels[head].numpy() > 0.5)
            s_parts[head].append(scores.heads[head])
        r_true.append(rating.numpy())
        r_score.append(scores.rating)
        if on_batch is not None:
            on_batch(len(scores))
    return ScoreSet(
        tags={h: categories.tags(h) for h in heads},
        y_true={h: np.concatenate(y_parts[h]) for h in heads},
        scores={h: np.concatenate(s_parts[h]) for h in heads},
        rating_true=np.concatenate(r_true).astype(np.float64),
        rating_score=np.concatenate(r_score),
        meta={"model": tagger.model_id, "data": f"{Path(data_dir).resolve()}:{split}"},
    )


def cached_scores(
    path: Path | None, meta: dict[str, str], compute: Callable[[], ScoreSet]
) -> ScoreSet:
    """Scores from the ``.npz`` cache at ``path`` when it holds this model and data, else computed.

    A cache written for another model or data is an error rather than silently replaced,
    since it may be someone's only copy of a long run.
    """
    if path is not None and path.exists():
        cached = ScoreSet.load(path)
        if {k: cached.meta.get(k) for k in meta} != meta:
            raise ConfigError(
                f"{path} holds the scores of {cached.meta.get('model')} on "
                f"{cached.meta.get('data')}, not of {meta['model']} on {meta['data']}; "
                "pass another --scores file, or delete this one to recompute"
            )
        return cached
    scores = compute()
    if path is not None:
        scores.save(path)
    return scores


def threshold_settings(
    threshold: float,
    bundle_thresholds: dict | None,
    tuning: ScoreSet | None,
    *,
    min_support: int = 10,
    shrinkage: float = 10.0,
) -> tuple[dict[str, float | Thresholds], Thresholds | None]:
    """The named threshold settings to evaluate at, and the tuned per-tag thresholds.

    Always the fixed ``threshold``; the bundle's shipped thresholds when it has some;
    with ``tuning`` data: the global P=R and best-F1 thresholds, per-head and per-tag
    best-F1 thresholds (the last is what ``--write-thresholds`` stores).
    """
    settings: dict[str, float | Thresholds] = {f"fixed {threshold:g}": threshold}
    if bundle_thresholds:
        settings["shipped"] = Thresholds.from_dict(bundle_thresholds, where="bundle thresholds")
    if tuning is None:
        return settings, None
    tuned = tune_thresholds(tuning, min_support=min_support, shrinkage=shrinkage)
    settings["global P=R"] = break_even_threshold(tuning)
    settings["global best F1"] = best_f1_threshold(tuning)
    settings["per head"] = Thresholds(default=tuned.default, per_head=tuned.per_head)
    settings["per tag"] = tuned
    return settings, tuned


def split_names(data_dir: Path) -> Sequence[str]:
    """The splits of a packed dataset that hold examples."""
    from furrytag_cli.dataset.records import read_info, records_dir

    info = read_info(records_dir(data_dir))
    return [s for s, v in info.splits.items() if v["examples"]]


def split_size(data_dir: Path, split: str) -> int:
    from furrytag_cli.dataset.records import read_info, records_dir

    return int((read_info(records_dir(data_dir)).splits.get(split) or {}).get("examples", 0))
