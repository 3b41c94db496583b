"""One ``furrytag evaluate`` run: for each model, score (or load cached scores), tune,
measure; then write the reports and thresholds asked for.

Thresholds are tuned on one set of images (a dataset's ``val`` split, or a labels file)
and applied unchanged to the evaluated one; tuning on the evaluated images themselves is
allowed but flagged, since the tuned rows are then optimistic.
"""

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from furrytag_cli.captions.files import CaptionFiles
from furrytag_cli.core.console import notice
from furrytag_cli.core.errors import ConfigError, DatasetError, FurrytagError, UsageError
from furrytag_cli.core.progress import Progress
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
from furrytag_cli.model.thresholds import Thresholds, save_thresholds
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


@dataclass(frozen=True)
class Outputs:
    """What an evaluation writes besides its metrics: ``report`` (metrics.json, per_tag.csv
    and plots; a folder per model when there are several), ``save_thresholds`` (the tuned
    thresholds as YAML; ``<stem>.<model><suffix>`` per model when there are several) and
    ``write_thresholds`` (the tuned thresholds into each native bundle's metadata)."""

    report: Path | None = None
    save_thresholds: Path | None = None
    write_thresholds: bool = False

    def check(self, request: "EvalRequest") -> None:
        """Refuse, before anything is scored, outputs that could not be written afterwards."""
        _check_writable(self.report, "--report", folder=True)
        _check_writable(self.save_thresholds, "--save-thresholds", folder=False)
        if (self.write_thresholds or self.save_thresholds) and request.tune_on is None:
            raise UsageError("tuning thresholds needs --tune-on SPLIT (or a labels file)")


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


@dataclass
class EvalRun:
    """The outcome of ``run_evaluation``: a report per model, under a distinct label, and a
    line for each output file written."""

    reports: dict[str, ModelReport]
    written: list[str] = field(default_factory=list)


def run_evaluation(
    models: Sequence[str | Path | None],
    request: EvalRequest,
    *,
    outputs: Outputs = Outputs(),
    home: Path | None = None,
    offline: bool = False,
    normalized: bool | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = notice,
) -> EvalRun:
    """Evaluate each model (a name, a bundle path, or None for the registry's default) on
    the request's images, then write ``outputs``.

    Models are labelled by name, or ``name@fingerprint`` where two share a name; the same
    model twice is an error. ``home`` is the model cache (the ``--cache-dir`` value);
    ``normalized`` says how a legacy SavedModel was trained (default: as known);
    ``progress`` shows downloads and scoring passes; ``notify`` hears of conversions.
    """
    from furrytag_cli.tagging.tagger import resolve_bundle

    outputs.check(request)
    bundles = [
        resolve_bundle(model, home=home, offline=offline, progress=progress, normalized=normalized)
        for model in models
    ]
    reports = {
        label: evaluate_model(
            bundle, request, progress=progress, label=label, notify=notify, home=home
        )
        for label, bundle in zip(model_labels(bundles, models), bundles)
    }
    return EvalRun(reports, _write_outputs(reports, outputs, home))


def model_labels(bundles: Sequence[Bundle], given: Sequence) -> list[str]:
    """A distinct label per model: its name, or name@fingerprint where two share a name."""
    names = [bundle.name for bundle in bundles]
    labels = [
        name if names.count(name) == 1 else f"{name}@{bundle.fingerprint()[:8]}"
        for name, bundle in zip(names, bundles)
    ]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise FurrytagError(
                f"--model {given[i]} is the same model as --model "
                f"{given[labels.index(label)]}; give each model once"
            )
    return labels


def evaluate_model(
    bundle: Bundle,
    request: EvalRequest,
    *,
    progress: bool = False,
    label: str | None = None,
    notify: Callable[[str], None] | None = notice,
    home: Path | None = None,
) -> ModelReport:
    """Score ``bundle`` on the request's images (cached scores reused) and measure it.

    ``progress`` shows a bar for each scoring pass. ``label`` names the model in the
    scores cache (default: the bundle's name); ``notify`` hears of the engine's first
    conversion (None: silence); ``home`` is the cache home (the ``--cache-dir`` value)
    conversions of cached models go to.
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
            with Progress(source.size(), f"Scoring {source.name}", "img", enabled=progress) as bar:
                if source.labelled is None:
                    return score_split(tagger, source.data, source.split, on_batch=bar.advance)
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
                result, bad = score_labelled(tagger, labelled, on_batch=bar.batch)
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


def _write_outputs(
    reports: dict[str, ModelReport], outputs: Outputs, home: Path | None
) -> list[str]:
    from furrytag_cli.evaluation.report import write_report

    several = len(reports) > 1
    written = []
    for name, result in reports.items():
        if outputs.report is not None:
            folder = outputs.report / name if several else outputs.report
            files = write_report(folder, result.evaluation, result.data)
            written.append(f"Report for {name}: {len(files)} files in {folder}")
        if outputs.save_thresholds is not None:
            path = outputs.save_thresholds
            target = path.with_name(f"{path.stem}.{name}{path.suffix}") if several else path
            # The file names the model: tag and retag refuse it for another one.
            save_thresholds(dataclasses.replace(result.tuned, model=result.bundle.model_id), target)
            written.append(f"Saved tuned thresholds of {name} to {target}")
        if outputs.write_thresholds:
            stored = write_thresholds(result, home)
            written.append(
                f"Stored tuned thresholds in {stored}; `furrytag tag` uses them by default"
            )
    return written


def _check_writable(path: Path | None, option: str, *, folder: bool) -> None:
    if path is None:
        return
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if folder else "a folder"
        raise FurrytagError(
            f"{option} {path} is {kind}; give {'a folder' if folder else 'a file name'}"
        )
    # A file is replaced by a rename, so only the folder it goes in must be writable.
    candidates = (path, *path.parents) if folder else path.parents
    existing = next(p for p in candidates if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise FurrytagError(f"{option} {path}: cannot write in {existing}")
