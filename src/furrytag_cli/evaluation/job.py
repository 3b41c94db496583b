"""One ``furrytag evaluate`` run for one model: score (or load cached scores), tune, measure.

Thresholds are tuned on one set of images (a dataset's ``val`` split, or a labels file)
and applied unchanged to the evaluated one; tuning on the evaluated images themselves is
allowed but flagged, since the tuned rows are then optimistic.
"""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.captions.files import CaptionFiles
from furrytag_cli.core.console import notice
from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.layout import SPLITS
from furrytag_cli.evaluation.caption_labels import read_caption_labels
from furrytag_cli.evaluation.metrics import Evaluation, evaluate_scores
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.scoring import (
    cached_scores,
    read_labels,
    score_labelled,
    score_split,
    split_names,
    split_size,
    threshold_settings,
)
from furrytag_cli.model.bundle import Bundle, write_metadata
from furrytag_cli.model.thresholds import Thresholds
from furrytag_cli.store import layout as cache


@dataclass(frozen=True)
class Source:
    """Labelled images: a split of a packed dataset, a labels file, or a folder of
    reviewed captions."""

    data: Path | None = None
    split: str | None = None
    labels: Path | None = None
    captions: Path | None = None
    caption_files: CaptionFiles = CaptionFiles()

    @property
    def name(self) -> str:
        if self.captions is not None:
            return self.captions.resolve().name
        return self.split if self.labels is None else self.labels.stem

    @property
    def labelled(self) -> Path | None:
        """The labels file or captions folder (None for a dataset split)."""
        return self.labels if self.labels is not None else self.captions

    def size(self) -> int | None:
        return split_size(self.data, self.split) if self.labelled is None else None


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate on, and how."""

    source: Source
    tune_on: Source | None = None
    threshold: float | None = None
    rating_cuts: tuple[float, float] | None = None
    min_support: int = 10
    shrinkage: float = 10.0
    scores_dir: Path | None = None
    batch_size: int = 32
    device: str = "auto"

    def __post_init__(self) -> None:
        # Checked when the request is made, before any model loads or image is scored.
        checks = [
            (self.batch_size >= 1, f"--batch-size must be at least 1; received {self.batch_size}"),
            (
                self.threshold is None or 0 <= self.threshold <= 1,
                f"--threshold must be from 0 to 1; received {self.threshold}",
            ),
            (
                self.min_support >= 1,
                f"--min-support must be at least 1; received {self.min_support}",
            ),
            (
                0 <= self.shrinkage < math.inf,
                f"--shrinkage must be 0 or more; received {self.shrinkage}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class ModelReport:
    """The outcome for one model."""

    bundle: Bundle
    evaluation: Evaluation
    data: ScoreSet
    tuned: Thresholds | None
    failed: list[tuple[Path, str]]
    tuned_on_evaluated: bool
    notes: list[str]


def resolve_sources(
    data: Path | None,
    split: str,
    labels: Path | None,
    tune_on: str,
    captions: Path | None = None,
    caption_files: CaptionFiles = CaptionFiles(),
) -> tuple[Source, Source | None]:
    """The evaluated source and the tuning source from the CLI's options.

    Reviewed captions are tuned on themselves unless ``tune_on`` is none or a labels file.
    """
    if [data, labels, captions].count(None) != 2:
        raise ConfigError(
            "give one of --data DATA (a packed dataset), --labels FILE or "
            "--labels-from-captions FOLDER"
        )
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}; received {split!r}")
    if captions is not None:
        source = Source(captions=captions, caption_files=caption_files)
        if tune_on == "none":
            return source, None
        return source, source if tune_on == "val" else Source(labels=Path(tune_on))
    if labels is not None:
        source = Source(labels=labels)
        if tune_on == "none":
            return source, None
        if not Path(tune_on).is_file():
            problem = "does not exist" if not Path(tune_on).exists() else "is not a file"
            raise ConfigError(
                f"--tune-on {tune_on} {problem}; with --labels, --tune-on takes another labels "
                "file (or none)"
            )
        return source, Source(labels=Path(tune_on))
    source = Source(data=data, split=split)
    available = split_names(data)
    if split not in available:
        raise DatasetError(
            f"{data} has no examples in split {split!r} (packed splits: "
            f"{', '.join(available) or 'none'}); pack it with `furrytag dataset pack --data {data}`"
        )
    if tune_on == "none":
        return source, None
    if tune_on not in SPLITS:
        raise ConfigError(
            f"--tune-on must be one of {', '.join(SPLITS)} or none; received {tune_on!r}"
        )
    if tune_on not in available:
        raise DatasetError(
            f"{data} has no examples in split {tune_on!r} to tune thresholds on; pack it, "
            "or pass --tune-on none"
        )
    return source, Source(data=data, split=tune_on)


def evaluate_model(
    bundle: Bundle,
    request: EvalRequest,
    *,
    progress: Callable[[str, int | None], Callable[[list | int], None]] | None = None,
    label: str | None = None,
    notify: Callable[[str], None] | None = notice,
    home: Path | None = None,
) -> ModelReport:
    """Score ``bundle`` on the request's images (cached scores reused) and measure it.

    ``progress(label, total)`` returns the callback each scoring pass reports batches to.
    ``label`` names the model in the scores cache (default: the bundle's name);
    ``notify`` hears of the engine's first conversion (None: silence); ``home`` is the
    cache home (the ``--cache-dir`` value) conversions of cached models go to.
    """
    tagger = None
    model_id = bundle.model_id
    failed: list[tuple[Path, str]] = []
    notes: list[str] = []

    def scores_of(source: Source) -> ScoreSet:
        nonlocal tagger
        data = (
            str(source.labelled)
            if source.labelled is not None
            else f"{Path(source.data).resolve()}:{source.split}"
        )
        path = None
        if request.scores_dir is not None:
            path = request.scores_dir / f"{label or bundle.name}.{source.name}.npz"

        def compute() -> ScoreSet:
            nonlocal tagger
            from furrytag_cli.tagging.tagger import Tagger

            if tagger is None:
                tagger = Tagger(
                    bundle,
                    batch_size=request.batch_size,
                    device=request.device,
                    notify=notify,
                    home=home,
                )
            report = progress(f"Scoring {source.name}", source.size()) if progress else None
            if source.labelled is None:
                return score_split(tagger, source.data, source.split, on_batch=report)
            if source.captions is not None:
                labelled = read_caption_labels(
                    source.captions, bundle.categories, source.caption_files
                )
            else:
                labelled = read_labels(source.labels, bundle.categories)
            if labelled.unknown_tags:
                common = ", ".join(t for t, _ in labelled.unknown_tags.most_common(8))
                notes.append(
                    f"{len(labelled.unknown_tags)} tag(s) in {source.labelled} are not "
                    f"among the model's tags and were ignored: {common}"
                )
            result, bad = score_labelled(tagger, labelled, on_batch=report)
            failed.extend(bad)
            return result

        if path is not None and path.exists():
            notes.append(f"Using the cached scores of {source.name} in {path}")
        return cached_scores(path, {"model": model_id, "data": data}, compute)

    evaluated = scores_of(request.source)
    tuning = scores_of(request.tune_on) if request.tune_on is not None else None
    settings, tuned = threshold_settings(
        request.threshold if request.threshold is not None else bundle.threshold,
        bundle.thresholds,
        tuning,
        min_support=request.min_support,
        shrinkage=request.shrinkage,
    )
    evaluation = evaluate_scores(
        evaluated, settings, rating_cuts=request.rating_cuts or bundle.rating.cuts
    )
    return ModelReport(
        bundle,
        evaluation,
        evaluated,
        tuned,
        failed,
        tuned_on_evaluated=request.tune_on == request.source,
        notes=notes,
    )


def write_thresholds(report: ModelReport, home: Path | None = None) -> Path:
    """Store the tuned thresholds (and their test metrics) in a native bundle's metadata."""
    bundle = report.bundle
    if report.tuned is None:
        raise ConfigError("--write-thresholds needs tuned thresholds; drop --tune-on none")
    if bundle.kind != "native":
        raise ConfigError(
            f"{bundle.name} is a legacy SavedModel, which has no metadata file to store "
            "thresholds in; save them with --save-thresholds FILE instead and tag with "
            "--thresholds FILE"
        )
    if cache.in_installed_model(bundle.path, home):
        raise ConfigError(
            f"{bundle.path} is a cached download, whose files are checked against the hash "
            "recorded at install, so furrytag does not change them; save the thresholds with "
            "--save-thresholds FILE and tag with --thresholds FILE, or evaluate a copy of the bundle"
        )
    tuned_metrics = report.evaluation.settings["per tag"].overall.micro
    metrics = dict(bundle.metrics)
    metrics["tuned_thresholds"] = {
        "precision": float(tuned_metrics.precision),
        "recall": float(tuned_metrics.recall),
        "f1": float(tuned_metrics.f1),
        "images": int(report.evaluation.images),
    }
    write_metadata(dataclasses.replace(bundle, thresholds=report.tuned.to_dict(), metrics=metrics))
    return bundle.path
