"""The tagging API: load a model once, then tag or embed any number of image files.

from furrytag_cli import Tagger
tagger = Tagger("efficientnet_v2_b3_300_2c")
for item in tagger.tag(["art/"]):
    print(item.path, item.tagging.tags if item.ok else item.reason)
"""

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from furrytag_cli.core.console import notice
from furrytag_cli.core.errors import BundleError, ImageError
from furrytag_cli.core.machine import may_have_gpu
from furrytag_cli.core.progress import Progress
from furrytag_cli.engines.base import Scores
from furrytag_cli.engines.choose import load_engine, own_engine
from furrytag_cli.model.bundle import Bundle
from furrytag_cli.model.loading import load_bundle
from furrytag_cli.model.preprocess import preprocess_array
from furrytag_cli.store.registry import load_registry
from furrytag_cli.tagging.decode import MAX_PIXELS
from furrytag_cli.tagging.discovery import discover
from furrytag_cli.tagging.predict import Predictor, Tagging, TagOptions
from furrytag_cli.tagging.stream import image_batches

DEFAULT_BATCH_SIZE = 32


@dataclass
class Item:
    """The outcome for one input file: a ``tagging``, or the ``reason`` it failed."""

    index: int
    path: Path
    tagging: Tagging | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.tagging is not None


@dataclass
class Scored:
    """The model's raw outcome for one input file: row ``row`` of ``scores``, or a ``reason``."""

    index: int
    path: Path
    scores: Scores | None = None
    row: int = 0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.scores is not None


def resolve_bundle(
    model: str | Path | None,
    *,
    home: Path | None = None,
    offline: bool = False,
    progress: bool = False,
    normalized: bool | None = None,
) -> Bundle:
    """A bundle from a path (folder or .zip), ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``,
    or a model name (fetched when not cached).

    A name is a registry model, or one installed with ``furrytag download``.
    ``normalized`` says how a legacy SavedModel was trained; by default it comes from the
    registry, or from what ``download`` recorded.
    """
    from furrytag_cli.store import hub
    from furrytag_cli.store import install as store
    from furrytag_cli.store.layout import read_manifest

    registry = load_registry()
    if model is not None and hub.is_hub(str(model)):
        root = hub.fetch(str(model), offline=offline, home=home)
        return load_bundle(root, home=home, normalized=normalized)
    if model is not None and Path(model).exists():
        return load_bundle(Path(model), home=home, normalized=normalized)
    if model is not None and _looks_like_a_path(str(model)):
        raise BundleError(
            f"model {model} does not exist: give a bundle folder or .zip, a "
            "SavedModel folder, hf://OWNER/REPO, or a model name (furrytag models lists them)"
        )
    name = str(model) if model is not None else registry.default
    entry = registry.models.get(name)
    if normalized is None and entry is not None and entry.format == "legacy":
        normalized = entry.normalized
    root = store.ensure_model(
        entry or name,
        home=home,
        offline=offline,
        progress=progress,
        verify=install_check(normalized),
    )
    if normalized is None:
        normalized = (read_manifest(name, home) or {}).get("normalized")
    return load_bundle(root, normalized=normalized)


def _looks_like_a_path(model: str) -> bool:
    return (
        os.sep in model or "/" in model or model.startswith(".") or model.lower().endswith(".zip")
    )


def install_check(normalized: bool | None):
    """The check a model passes before it is installed: it loads, with the expected heads,
    in the engine that runs its own model file; a legacy SavedModel must be known or
    ``normalized`` given, so that ``tag`` never refuses what was installed."""

    def check(root: Path) -> None:
        bundle = load_bundle(root, normalized=normalized)
        load_engine(bundle, engine=own_engine(bundle))

    return check


class Tagger:
    """A loaded model plus the options that turn its scores into tags.

    ``engine`` is "auto" (LiteRT on a CPU, Keras on a GPU), "keras", "lite" or "onnx";
    ``normalized`` says how a legacy SavedModel of unknown name was trained;
    ``quantize`` ("none", "dynamic", "float16") applies to the lite engine only;
    ``notify`` hears of a first conversion and of a fallback to keras (None: silence);
    ``home`` is the cache home (the ``--cache-dir`` value): models by name, unpacked
    zips and LiteRT conversions of cached models live there.
    """

    def __init__(
        self,
        model: str | Path | Bundle | None = None,
        *,
        options: TagOptions = TagOptions(),
        batch_size: int = DEFAULT_BATCH_SIZE,
        embeddings: bool = False,
        device: str = "auto",
        engine: str = "auto",
        quantize: str = "none",
        notify: Callable[[str], None] | None = notice,
        home: Path | None = None,
        offline: bool = False,
        progress: bool = False,
        max_pixels: int = MAX_PIXELS,
        normalized: bool | None = None,
    ):
        self.bundle = (
            model
            if isinstance(model, Bundle)
            else resolve_bundle(
                model, home=home, offline=offline, progress=progress, normalized=normalized
            )
        )
        if engine != "keras" and (device == "cpu" or (device == "auto" and not may_have_gpu())):
            # LiteRT runs the model on the CPU: TensorFlow is not even imported.
            self.device = "cpu"
        else:
            from furrytag_cli.core.tfruntime import configure_device

            self.device = configure_device(device)
        self.engine = load_engine(
            self.bundle,
            embeddings=embeddings,
            engine=engine,
            device=self.device,
            quantize=quantize,
            notify=notify,
            home=home,
        )
        # A model on a GPU leaves the CPU to tf.data's decoding, which runs ahead of it;
        # a model on the CPU takes turns with decoding that needs no TensorFlow.
        self.overlap = self.engine.device == "gpu"
        self.predictor = Predictor(self.bundle, options)
        self.batch_size = batch_size
        self.max_pixels = max_pixels

    @property
    def model_id(self) -> str:
        """Identifies the model and its weights (name@content hash)."""
        return self.bundle.model_id

    def scores(self, images: Sequence[np.ndarray]) -> Scores:
        """Scores for already decoded uint8 RGB images (each H×W×3), preprocessed per the bundle."""
        spec = self.bundle.preprocess
        return self.engine(np.stack([preprocess_array(np.asarray(i), spec) for i in images]))

    def score_batches(self, paths: Sequence[Path]) -> Iterator[list[Scored]]:
        """Score ``paths`` (files) in order; yield the outcomes of each batch as it finishes.

        Every path gets exactly one outcome, in input order: its row of a batch's scores,
        or the reason it could not be read.
        """
        paths = list(paths)
        if not self.overlap:
            yield from self._score_on_cpu(paths)
            return
        from furrytag_cli.tagging.pipeline import inference_dataset

        rejected: dict[int, str] = {}
        dataset = inference_dataset(
            paths,
            self.bundle.preprocess,
            batch_size=self.batch_size,
            rejected=rejected,
            max_pixels=self.max_pixels,
            overlap=self.overlap,
        )
        expected = 0
        for indices, images in dataset:
            scores = self.engine(images)
            batch = []
            for row, index in enumerate(indices.numpy().tolist()):
                batch.extend(self._gap(expected, index, paths, rejected))
                batch.append(Scored(index, paths[index], scores=scores, row=row))
                expected = index + 1
            yield batch
        tail = self._gap(expected, len(paths), paths, rejected)
        if tail:
            yield tail

    def _score_on_cpu(self, paths: list[Path]) -> Iterator[list[Scored]]:
        # An engine converting in the background plans for the length of the run.
        expect = getattr(self.engine, "expect", None)
        if expect is not None:
            expect(len(paths))
        for batch in image_batches(
            paths,
            self.bundle.preprocess,
            batch_size=self.batch_size,
            max_pixels=self.max_pixels,
        ):
            outcomes = [Scored(i, paths[i], reason=reason) for i, reason in batch.failed]
            if batch.images is not None:
                scores = self.engine(batch.images)
                outcomes += [
                    Scored(i, paths[i], scores=scores, row=row)
                    for row, i in enumerate(batch.indices)
                ]
            yield sorted(outcomes, key=lambda s: s.index)
        if expect is not None:
            self.engine.finish()

    def tag_batches(self, paths: Sequence[Path]) -> Iterator[list[Item]]:
        """Tag ``paths`` (files) in order; yield the items of each batch as it finishes."""
        for batch in self.score_batches(paths):
            yield [
                Item(s.index, s.path, tagging=self.predictor.predict(s.scores, s.row))
                if s.ok
                else Item(s.index, s.path, reason=s.reason)
                for s in batch
            ]

    def tag(
        self, inputs: Iterable[str | Path], *, recursive: bool = True, progress: bool = False
    ) -> Iterator[Item]:
        """Tag files and folders (expanded like the CLI does); yield one item per file.

        ``progress`` shows a bar on stderr: tqdm in a notebook, rich on a terminal, a
        line now and then in a log.
        """
        found = discover([str(p) for p in inputs], recursive=recursive)
        for path_text, reason in found.problems:
            yield Item(-1, Path(path_text), reason=reason)
        with Progress(len(found.files), "Tagging", "img", enabled=progress, failures=True) as bar:
            for items in self.tag_batches(found.files):
                failed = sum(not item.ok for item in items)
                bar.set(bar.completed + len(items), failed=bar.failed + failed)
                yield from items

    def embed(self, inputs: Iterable[str | Path]) -> Iterator[tuple[Path, np.ndarray]]:
        """The feature vector of each image that could be decoded (needs ``embeddings=True``)."""
        if not self.engine.embeddings:
            raise ValueError("create the Tagger with embeddings=True to call embed()")
        for item in self.tag(inputs):
            if item.ok:
                yield item.path, item.tagging.embedding

    def _gap(
        self, start: int, stop: int, paths: Sequence[Path], rejected: dict[int, str]
    ) -> list[Scored]:
        """Outcomes for the inputs the pipeline skipped between ``start`` and ``stop``."""
        from furrytag_cli.tagging.pipeline import fallback_input

        outcomes = []
        for index in range(start, stop):
            if index in rejected:
                outcomes.append(Scored(index, paths[index], reason=rejected.pop(index)))
                continue
            # TensorFlow could not decode it; Pillow either reads it or tells why.
            try:
                image = fallback_input(paths[index], self.bundle.preprocess)
            except ImageError as exc:
                outcomes.append(Scored(index, paths[index], reason=str(exc)))
                continue
            outcomes.append(Scored(index, paths[index], scores=self.engine(image[None]), row=0))
        return outcomes
