"""Terminal tables: one evaluation, and several models side by side."""

import pytest
from rich.console import Console

from furrytag_cli.core.errors import ConfigError
from furrytag_cli.evaluation.metrics import evaluate_scores
from furrytag_cli.evaluation.tables import comparison_table, print_evaluation


def _text(renderable=None, evaluation=None):
    console = Console(record=True, width=160, color_system=None)
    if evaluation is not None:
        print_evaluation(evaluation, console)
    else:
        console.print(renderable)
    return console.export_text()


def test_evaluation_tables_show_every_group_and_the_rating(make_scoreset):
    evaluation = evaluate_scores(make_scoreset(), {"0.5": 0.5, "0.3": 0.3})
    text = _text(evaluation=evaluation)
    overall = evaluation.settings["0.3"].overall
    needles = (
        "0.5",
        "0.3",
        "frequent tags",
        "rare tags",
        "explicit",
        "best",
        f"{overall.micro.f1:.3f}",
    )
    assert all(needle in text for needle in needles)
    assert all(f" {head} " in text for head in ("a", "b", "c"))
    assert f"accuracy {evaluation.rating.accuracy:.3f}" in text


def test_comparison_table_bolds_the_best_model(make_scoreset):
    good = evaluate_scores(make_scoreset(seed=1), {"0.5": 0.5})
    weak = evaluate_scores(make_scoreset(seed=1, rating=False), {"0.5": 0.5, "0.9": 0.9})
    table = comparison_table({"good": good, "weak[1]": weak})
    text = _text(table)
    assert "good" in text and "weak[1]" in text and "thresholds: 0.5" in text
    rating_column = next(c for c in table.columns if c.header == "rating acc")
    cells = list(rating_column.cells)
    assert cells[0].startswith("[bold]") and cells[1] == "-"


def test_comparison_needs_a_shared_setting(make_scoreset):
    a = evaluate_scores(make_scoreset(), {"0.5": 0.5})
    b = evaluate_scores(make_scoreset(), {"tuned": 0.4})
    with pytest.raises(ConfigError, match="model 'b' was not evaluated at threshold setting '0.5'"):
        comparison_table({"a": a, "b": b})
    with pytest.raises(ConfigError, match="at least one"):
        comparison_table({})
