"""Terminal tables of evaluation results (rich): one model, or several side by side."""

from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.evaluation.metrics import Evaluation, GroupMetrics, RatingMetrics


def _group_cells(group: GroupMetrics) -> list[str]:
    micro = group.micro
    return [
        f"{group.scored_tags}/{group.tags}",
        str(group.support),
        *(f"{v:.3f}" for v in (micro.precision, micro.recall, micro.f1, micro.mcc)),
        f"{group.macro.f1:.3f}",
        f"{group.mean_ap:.3f}",
    ]


def evaluation_table(evaluation: Evaluation) -> Table:
    """Tag metrics per threshold setting: all tags, each head, frequent and rare tags."""
    table = Table(
        title=f"Tag metrics ({evaluation.images} images)",
        caption="P, R, F1, MCC: micro. Tags: with positives / all.",
    )
    for column in ("setting", "group", "tags", "positives"):
        table.add_column(column, no_wrap=True)
    for column in ("P", "R", "F1", "MCC", "macro F1", "mAP"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, metrics in evaluation.settings.items():
        groups = [
            ("all", metrics.overall),
            *metrics.heads.items(),
            *((f"{s} tags", g) for s, g in metrics.slices.items()),
        ]
        for i, (label, group) in enumerate(groups):
            table.add_row(
                name if i == 0 else "",
                label,
                *_group_cells(group),
                style="bold" if i == 0 else None,
            )
        table.add_section()
    return table


def rating_table(rating: RatingMetrics) -> Table:
    """The rating confusion matrix, with accuracy at the cuts and at the best cuts."""
    table = Table(
        title="Rating (rows true, columns predicted)",
        caption=(
            f"accuracy {rating.accuracy:.3f} at cuts {rating.cuts[0]:.3f}, {rating.cuts[1]:.3f}\n"
            f"best {rating.best_accuracy:.3f} at {rating.best_cuts[0]:.3f}, {rating.best_cuts[1]:.3f}"
        ),
    )
    table.add_column("true \\ predicted", no_wrap=True)
    for label in rating.labels:
        table.add_column(label, justify="right")
    for label, row in zip(rating.labels, rating.confusion):
        table.add_row(label, *(str(v) for v in row))
    return table


def print_evaluation(evaluation: Evaluation, console: Console | None = None) -> None:
    """Print the tag table and, when the data had ratings, the rating table."""
    console = console or Console()
    console.print(evaluation_table(evaluation))
    if evaluation.rating is not None:
        console.print(rating_table(evaluation.rating))


_COMPARED = (
    ("P", lambda m, e: m.overall.micro.precision),
    ("R", lambda m, e: m.overall.micro.recall),
    ("F1", lambda m, e: m.overall.micro.f1),
    ("MCC", lambda m, e: m.overall.micro.mcc),
    ("macro F1", lambda m, e: m.overall.macro.f1),
    ("mAP", lambda m, e: m.overall.mean_ap),
    ("rare F1", lambda m, e: m.slices["rare"].macro.f1),
    ("rating acc", lambda m, e: e.rating.accuracy if e.rating else None),
    ("best-cut acc", lambda m, e: e.rating.best_accuracy if e.rating else None),
)


def comparison_table(evaluations: Mapping[str, Evaluation], setting: str | None = None) -> Table:
    """Models side by side at one threshold setting (default: the first model's first).

    Micro P/R/F1/MCC, macro F1, mAP, macro F1 of rare tags, rating accuracy at the
    model's cuts and at the best cuts; the best value of each column in bold.
    """
    if not evaluations:
        raise ConfigError("give at least one evaluation to compare; received none")
    setting = setting or next(iter(next(iter(evaluations.values())).settings))
    for model, evaluation in evaluations.items():
        if setting not in evaluation.settings:
            raise ConfigError(
                f"model {model!r} was not evaluated at threshold setting {setting!r}; its "
                f"settings are {', '.join(evaluation.settings)}; pick one all models share"
            )
    values = {
        model: [get(e.settings[setting], e) for _, get in _COMPARED]
        for model, e in evaluations.items()
    }
    best = [
        max((row[i] for row in values.values() if row[i] is not None), default=None)
        for i in range(len(_COMPARED))
    ]
    table = Table(title=f"Models compared (thresholds: {setting})")
    table.add_column("model", no_wrap=True)
    table.add_column("images", justify="right")
    for name, _ in _COMPARED:
        table.add_column(name, justify="right", no_wrap=True)
    for model, row in values.items():
        cells = [
            "-" if v is None else (f"[bold]{v:.3f}[/bold]" if v == best[i] else f"{v:.3f}")
            for i, v in enumerate(row)
        ]
        table.add_row(escape(model), str(evaluations[model].images), *cells)
    return table
