"""The ``evaluate --report DIR`` folder: metrics.json, per_tag.csv and PNG plots.

Plots are drawn with matplotlib's Agg canvas on standalone figures (no pyplot, no
display, no global backend switch); matplotlib is imported only when plotting.
"""

import csv
import itertools
import json
from collections.abc import Callable
from dataclasses import astuple, fields
from pathlib import Path

import numpy as np

from furrytag_cli.core.errors import FurrytagError, OutputError
from furrytag_cli.evaluation.metrics import Evaluation, RatingMetrics, TagRow
from furrytag_cli.evaluation.scoreset import ScoreSet
from furrytag_cli.evaluation.sweeps import counts_at

CURVE_POINTS = 400


def write_report(directory: Path, evaluation: Evaluation, data: ScoreSet) -> list[Path]:
    """Write the metrics and plots of ``evaluation`` (computed on ``data``) into ``directory``.

    Returns the files written. The rating plot is left out when there is no rating.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create report folder {directory}: {exc.strerror or exc}; choose a writable folder"
        ) from None
    writers: list[tuple[str, Callable[[Path], None]]] = [
        ("metrics.json", lambda p: write_metrics_json(p, evaluation)),
        ("per_tag.csv", lambda p: write_per_tag_csv(p, evaluation)),
        ("pr_curves.png", lambda p: plot_pr_curves(p, data, evaluation)),
        ("f1_vs_threshold.png", lambda p: plot_f1_vs_threshold(p, data, evaluation)),
        ("tag_f1_vs_support.png", lambda p: plot_tag_f1_vs_support(p, evaluation)),
    ]
    if evaluation.rating is not None:
        writers.append(
            ("rating_confusion.png", lambda p: plot_rating_confusion(p, evaluation.rating))
        )
    written = []
    for name, write in writers:
        path = directory / name
        try:
            write(path)
        except OSError as exc:
            raise OutputError(
                f"cannot write {path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        written.append(path)
    return written


def write_metrics_json(path: Path, evaluation: Evaluation) -> None:
    """All summary metrics (every setting, head, slice; the rating) as JSON."""
    text = json.dumps(evaluation.to_dict(), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def write_per_tag_csv(path: Path, evaluation: Evaluation) -> None:
    """One row per threshold setting and tag: support, threshold, P, R, F1, MCC, AP."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", *(f.name for f in fields(TagRow))])
        for name, metrics in evaluation.settings.items():
            writer.writerows([name, *astuple(row)] for row in metrics.rows)


def _figure(width: float = 6.4, height: float = 4.8):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise FurrytagError(
            "plots need matplotlib, which is not installed; run `pip install matplotlib`"
        ) from None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _groups(data: ScoreSet) -> list[tuple[str, tuple[str, ...] | None]]:
    """(label, heads) for every head and, last, all heads together."""
    return [(h, (h,)) for h in data.heads] + [("all", None)]


def _rank_thresholds(s: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """Scores at log-spaced ranks from the top, so the high-precision end is detailed."""
    descending = np.sort(s)[::-1]
    ranks = np.unique(np.geomspace(1, len(s), points).astype(np.int64)) - 1
    return np.unique(np.concatenate([descending[ranks], [descending[-1] - 1.0]]))


def plot_pr_curves(path: Path, data: ScoreSet, evaluation: Evaluation) -> None:
    """Micro precision–recall curve of each head and of all tags; mAP in the legend."""
    first = next(iter(evaluation.settings.values()))
    figure = _figure()
    axes = figure.add_subplot()
    for label, heads in _groups(data):
        y, s = data.pooled(heads)
        tp, predicted = counts_at(y, s, _rank_thresholds(s))
        keep = predicted > 0
        positives = max(int(y.sum()), 1)
        group = first.heads[label] if heads else first.overall
        axes.plot(
            tp[keep] / positives,
            tp[keep] / predicted[keep],
            label=f"{label} (mAP {group.mean_ap:.2f})",
            linewidth=2 if heads is None else 1,
        )
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Precision–recall (micro, per head)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)


def plot_f1_vs_threshold(path: Path, data: ScoreSet, evaluation: Evaluation) -> None:
    """Micro F1 against a single threshold for each head and all tags; the best point
    of each curve dotted, each setting's global threshold a grey vertical line."""
    figure = _figure()
    axes = figure.add_subplot()
    for label, heads in _groups(data):
        y, s = data.pooled(heads)
        grid = np.linspace(s.min(), s.max(), 201)
        tp, predicted = counts_at(y, s, grid)
        denominator = predicted + y.sum()
        f1 = np.divide(2 * tp, denominator, out=np.zeros(len(grid)), where=denominator > 0)
        (line,) = axes.plot(grid, f1, label=label, linewidth=2 if heads is None else 1)
        best = int(np.argmax(f1))
        axes.plot(grid[best], f1[best], "o", color=line.get_color())
    styles = itertools.cycle(["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))])
    for (name, metrics), style in zip(evaluation.settings.items(), styles):
        default = metrics.thresholds.default
        axes.axvline(
            default,
            linestyle=style,
            color="grey",
            linewidth=1,
            label=f"{name}: global {default:.3f}",
        )
    axes.set(
        xlabel="threshold (tag predicted when score > threshold)",
        ylabel="micro F1",
        ylim=(0, 1.02),
        title="F1 vs threshold",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)


def plot_rating_confusion(path: Path, rating: RatingMetrics) -> None:
    """The rating confusion matrix (rows true, columns predicted) with counts."""
    matrix = np.array(rating.confusion)
    figure = _figure(5.2, 4.8)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        axes.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ticks = range(len(rating.labels))
    axes.set_xticks(ticks, rating.labels)
    axes.set_yticks(ticks, rating.labels)
    axes.set_title(
        f"Rating: accuracy {rating.accuracy:.3f} at cuts {rating.cuts[0]:.3f}, {rating.cuts[1]:.3f}\n"
        f"best {rating.best_accuracy:.3f} at {rating.best_cuts[0]:.3f}, {rating.best_cuts[1]:.3f}",
        fontsize="medium",
    )
    axes.set(xlabel="predicted", ylabel="true")
    figure.savefig(path, dpi=100)


def plot_tag_f1_vs_support(path: Path, evaluation: Evaluation) -> None:
    """Per-tag F1 against support (log scale), one panel per setting, a colour per head."""
    settings = list(evaluation.settings.items())
    figure = _figure(4.8 * len(settings), 4.4)
    panels = figure.subplots(1, len(settings), squeeze=False, sharey=True)[0]
    for axes, (name, metrics) in zip(panels, settings):
        for head in metrics.heads:
            rows = [r for r in metrics.rows if r.head == head and r.support > 0]
            axes.scatter([r.support for r in rows], [r.f1 for r in rows], s=12, label=head)
        axes.set_xscale("log")
        axes.set(xlabel="support (positives)", ylabel="F1", ylim=(-0.02, 1.02), title=name)
        axes.grid(alpha=0.3)
    panels[0].legend(fontsize="small")
    figure.savefig(path, dpi=100)
