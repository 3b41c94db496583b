"""The page: ``index.html`` with its script and styles beside it, and the data as script files.

Browsers refuse ``fetch()`` of ``file://`` URLs, so the data are JavaScript files the page
loads one after another with ``<script>`` elements: ``data/meta.js`` (vocabulary,
thresholds, failures) and ``data/chunk-NNNNN.js`` (``CHUNK`` images each). The page
builds every element from these data with ``textContent`` and DOM properties, never by
parsing HTML, so a path or tag can hold any character.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from furrytag_cli import __version__
from furrytag_cli.core.atomic import write_text
from furrytag_cli.core.errors import OutputError
from furrytag_cli.gallery.results import Item, Results
from furrytag_cli.gallery.thumbs import Thumb
from furrytag_cli.tagging.discovery import display_path

CHUNK = 5000
ASSETS = Path(__file__).with_name("assets")
PAGE_FILES = ("index.html", "gallery.js", "gallery.css")
_STATUS = {"ok": 0, "missing": 1, "unreadable": 2}
_RATINGS = {"safe": 0, "questionable": 1, "explicit": 2}


def write_page(
    out: Path,
    results: Results,
    thumbs: Sequence[Thumb],
    *,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    thresholds_from: str | None = None,
    rating_cuts: Sequence[float] | None = None,
) -> Path:
    """Write the page and its data into ``out``; return the path of ``index.html``."""
    heads = list(results.vocabulary)
    vocab = [(h, tag) for h in heads for tag in results.vocabulary[h]]
    position = {key: i for i, key in enumerate(vocab)}
    data = out / "data"
    try:
        for name in PAGE_FILES:
            shutil.copyfile(ASSETS / name, out / name)
        data.mkdir(exist_ok=True)
        for old in data.glob("chunk-*.js"):
            old.unlink()
        has_scores = results.has_scores
        scored = np.array([position[key] for key in results.scored], dtype=np.int64)
        pairs = list(zip(results.items, thumbs))
        chunks = range(0, len(pairs), CHUNK)
        for number, start in enumerate(chunks):  # a chunk's rows at a time: memory stays flat
            rows = [
                _row(item, thumb, out, position, scored if has_scores else None)
                for item, thumb in pairs[start : start + CHUNK]
            ]
            _write_js(data / f"chunk-{number:05d}.js", "addChunk", rows)
        meta = {
            # The review is the gallery folder's: rebuilt from new results, it stays.
            "id": hashlib.sha256(os.fsencode(out.resolve())).hexdigest()[:16],
            "source": display_path(results.source),
            "model": results.model,
            "base": display_path(results.base.resolve()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "version": __version__,
            "total": len(pairs),
            "chunks": len(chunks),
            "heads": heads,
            "tags": [tag for _, tag in vocab],
            "tagHeads": [heads.index(h) for h, _ in vocab],
            "hasScores": has_scores,
            "hasRating": any(item.rating is not None for item in results.items),
            "thresholds": _threshold_row(vocab, thresholds),
            "thresholdsFrom": thresholds_from,
            "ratingCuts": list(rating_cuts) if rating_cuts is not None else None,
            "failures": [list(f) for f in results.failures],
        }
        _write_js(data / "meta.js", "setMeta", meta)
    except OSError as exc:
        raise OutputError(f"cannot write the gallery in {out}: {exc.strerror or exc}") from None
    return out / "index.html"


def _row(item: Item, thumb: Thumb, out: Path, position: dict, scored: np.ndarray | None) -> list:
    kept = [(position[(h, t)], s) for h, pairs in item.tags.items() for t, s in pairs]
    scores = None
    if scored is not None:
        # Milli-units, -1 where a tag has no score; tags outside the model's stay -1.
        values = np.rint(np.nan_to_num(item.scores, nan=-0.001) * 1000).astype(np.int32)
        row = np.full(len(position), -1, dtype=np.int32)
        row[scored] = values
        scores = row.tolist()
    return [
        item.path,
        _url(item.file, out) if thumb.status != "missing" else None,
        thumb.name,
        _STATUS[thumb.status],
        [i for i, _ in kept],
        [_milli(s) if s is not None else -1 for _, s in kept],
        _RATINGS.get(item.rating, -1) if item.rating is not None else -1,
        _milli(item.rating_score) if item.rating_score is not None else -1,
        scores,
        thumb.reason or item.note,
    ]


def _threshold_row(vocab, thresholds) -> list | None:
    if thresholds is None:
        return None
    return [_milli(thresholds[h][t]) if t in thresholds.get(h, {}) else -1 for h, t in vocab]


def _milli(value: float) -> int:
    return int(round(float(value) * 1000))


def _url(file: Path, out: Path) -> str:
    """The image's URL relative to the page (it keeps working when both move together)."""
    relative = os.path.relpath(os.path.abspath(file), os.path.abspath(out))
    return quote(os.fsencode(relative).replace(os.sep.encode(), b"/"), safe="/")


def _write_js(path: Path, call: str, value) -> None:
    # ASCII-only JSON is a valid JavaScript literal whatever the paths hold.
    text = f"FT.{call}({json.dumps(value, ensure_ascii=True, separators=(',', ':'))});\n"
    write_text(path, text, encoding="ascii")
