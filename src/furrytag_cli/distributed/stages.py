"""The two stages a Ray run streams images through.

``decode_block`` (Ray tasks on CPUs): files → model inputs, by the decoder ``furrytag tag``
uses for a model on a CPU (``tagging.stream``: header check, libjpeg or Pillow decoding,
numpy preprocessing; no TensorFlow), so every image becomes exactly the input ``furrytag
tag`` gives a model on a CPU. ``ModelWorker`` (long-lived Ray actors, one model each, on a
GPU when given one): model inputs → the records ``furrytag tag --all-scores`` writes,
through the same engine and predictor.

A block's rows are ``path``, ``location``, ``size``, ``mtime``; the decoded block adds
``image`` (float32 S×S×3; zeros for a failure) and ``reason`` ("" when decoded).
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import BundleError
from furrytag_cli.model.preprocess import PreprocessSpec
from furrytag_cli.tagging.decode import MAX_PIXELS
from furrytag_cli.tagging.predict import TagOptions
from furrytag_cli.tagging.stream import image_batches

_filesystems: dict[str, object] = {}


def decode_block(
    batch: dict[str, np.ndarray], *, spec: PreprocessSpec, max_pixels: int = MAX_PIXELS
) -> dict[str, np.ndarray]:
    """Decode and preprocess a block of images; a file that fails gets its reason."""
    count = len(batch["path"])
    images = np.zeros((count, spec.size, spec.size, 3), np.float32)
    reasons = [""] * count
    with tempfile.TemporaryDirectory(prefix="furrytag-") as scratch:
        files: list[Path | None] = []
        for i, location in enumerate(batch["location"]):
            try:
                files.append(_local_file(bytes(location), Path(scratch), i))
            except OSError as exc:
                files.append(None)
                reasons[i] = f"cannot read: {exc.strerror or exc}"
        readable = [i for i, f in enumerate(files) if f is not None]
        if readable:
            for decoded in image_batches(
                [files[i] for i in readable],
                spec,
                batch_size=len(readable),
                max_pixels=max_pixels,
            ):
                for j, reason in decoded.failed:
                    reasons[readable[j]] = reason
                for row, j in enumerate(decoded.indices):
                    images[readable[j]] = decoded.images[row]
    return {
        "path": batch["path"],
        "size": batch["size"],
        "mtime": batch["mtime"],
        "image": images,
        "reason": np.array(reasons, dtype=object),
    }


def _local_file(location: bytes, scratch: Path, index: int) -> Path:
    """A local path holding the file at ``location``: the file itself, or a copy of an
    object-store URI's bytes in ``scratch``."""
    from furrytag_cli.distributed.sources import is_uri

    text = location.decode("utf-8", "surrogateescape")
    if not is_uri(text):
        return Path(os.fsdecode(location))
    from pyarrow import fs as pafs

    # s3://bucket/key → bucket/key, file:///a/b → /a/b: the path on that file system.
    scheme, _, path = text.partition("://")
    key = f"{scheme}://{path.split('/', 1)[0]}"
    if key not in _filesystems:
        _filesystems[key] = pafs.FileSystem.from_uri(text)[0]
    filesystem = _filesystems[key]
    copy = scratch / f"{index}{Path(path).suffix}"
    with filesystem.open_input_stream(path) as source:
        copy.write_bytes(source.read())
    return copy


class ModelWorker:
    """One model, loaded once, that turns decoded blocks into records.

    ``model`` is what ``furrytag tag --model`` takes: a registry name (fetched into this
    node's cache when missing) or a bundle path every node sees. The weights must be the
    driver's (``model_id``), or the worker refuses to start.
    """

    def __init__(
        self,
        model: str | None,
        model_id: str,
        options: TagOptions,
        *,
        engine: str,
        device: str,
        quantize: str,
        home: Path | None,
        offline: bool,
    ):
        from furrytag_cli.tagging.tagger import Tagger

        self.tagger = Tagger(
            model,
            options=options,
            device=device,
            engine=engine,
            quantize=quantize,
            notify=None,
            home=home,
            offline=offline,
        )
        if self.tagger.model_id != model_id:
            raise BundleError(
                f"a worker loaded {self.tagger.model_id} but the run uses {model_id}; give "
                "--model a bundle path every node sees, or the same registry name everywhere"
            )
        self.model_id = model_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from furrytag_cli.tagging.sinks import Result

        reasons = batch["reason"]
        ok = [i for i, reason in enumerate(reasons) if not reason]
        records = [""] * len(reasons)
        if ok:
            scores = self.tagger.engine(batch["image"][ok])
            for row, i in enumerate(ok):
                path = str(batch["path"][i])
                tagging = self.tagger.predictor.predict(scores, row)
                size, mtime = int(batch["size"][i]), float(batch["mtime"][i])
                record = Result(Path(path), tagging, size, mtime, self.model_id).record()
                # URIs keep their "//" (a Path would fold it).
                record["path"] = path
                records[i] = json.dumps(record, ensure_ascii=False)
        return {
            "path": batch["path"],
            "record": np.array(records, dtype=object),
            "reason": reasons,
        }
